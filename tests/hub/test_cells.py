"""The one CSV cell rule, shared by the file source and the SQL inputs and tables."""

import pytest

from edgestream_hub.cells import convert_cell


@pytest.mark.parametrize("cell,value", [
    ("", None), ("42", 42), ("-7", -7), ("2.5", 2.5), ("1e3", 1000.0), ("TRUE", True), ("false", False),
    ("nan", "nan"), ("inf", "inf"), ("-Infinity", "-Infinity"), ("kitchen", "kitchen"), (" 3 ", 3),
])
def test_cells_are_typed_the_same_everywhere(cell, value):
    got = convert_cell(cell)
    assert got == value and type(got) is type(value)
