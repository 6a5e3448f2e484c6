"""The examples in the SQL modules' docstrings run and hold."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import edgestream_hub.sql as sql

MODULES = [m.name for m in pkgutil.iter_modules(sql.__path__)]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(f"edgestream_hub.sql.{name}"))
    assert result.failed == 0
