"""The one CSV rule (rows and cells), shared by the file source and the SQL inputs and tables."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
from hypothesis import given, settings, strategies as st

from edgestream_hub.cells import CsvRows, convert_cell


@pytest.mark.parametrize("cell,value", [
    ("", None), ("42", 42), ("-7", -7), ("2.5", 2.5), ("1e3", 1000.0), ("TRUE", True), ("false", False),
    ("nan", "nan"), ("inf", "inf"), ("-Infinity", "-Infinity"), ("kitchen", "kitchen"), (" 3 ", 3),
    ("1_000", "1_000"), ("+5", "+5"), ("007", "007"), (".5", ".5"), ("5.", "5."), ("0x1F", "0x1F"),
    ("1e999", "1e999"), ("\u0663", "\u0663"), ("\uff11", "\uff11"), ("1" * 5000, "1" * 5000), ("-0", 0),
])
def test_cells_are_typed_the_same_everywhere(cell, value):
    got = convert_cell(cell)
    assert got == value and type(got) is type(value)


_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?")


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(max_size=8), st.from_regex(_NUMBER, fullmatch=True),
                 st.text("0123456789_+-.eE \u0663\uff11", max_size=8)))
def test_a_cell_is_a_number_exactly_when_it_is_a_json_number(cell):
    got = convert_cell(cell)
    if isinstance(got, (int, float)) and not isinstance(got, bool):
        assert _NUMBER.fullmatch(cell.strip(" \t\r\n"))
        assert got == json.loads(cell) and type(got) is type(json.loads(cell))
    elif _NUMBER.fullmatch(cell.strip(" \t\r\n")) and cell.strip(" \t\r\n") == cell.strip():
        assert got == cell  # a JSON number that is not finite (or too long to convert) stays text
        assert len(cell) > 4300 or "e" in cell.lower()


_field = st.text(st.sampled_from('ab,"\n 1'), max_size=6)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 4).flatmap(lambda n: st.lists(st.lists(_field, min_size=n, max_size=n), min_size=1,
                                                     max_size=6)))
def test_rows_read_back_what_a_csv_writer_wrote_one_line_at_a_time(table):
    header = [f"c{i}" for i in range(len(table[0]))]
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows([header, *table])
    rows = CsvRows(convert=False)
    got = [r for n, line in enumerate(buf.getvalue().split("\n")[:-1], 1) if (r := rows.feed(line, n)) is not None]
    rows.finish()
    assert got == [dict(zip(header, row)) for row in table]


def test_refusals_say_why_and_reading_goes_on():
    rows = CsvRows(max_record=20)
    feed = iter(["a,b", "1", "1,2,3", '2,"never', "closes and goes on for ever", "3,4", '5,"open'])
    assert rows.feed(next(feed), 1) is None
    with pytest.raises(ValueError, match="1 columns, the header has 2"):
        rows.feed(next(feed), 2)
    with pytest.raises(ValueError, match="3 columns, the header has 2"):
        rows.feed(next(feed), 3)
    assert rows.feed(next(feed), 4) is None and rows.holding and rows.start == 4
    with pytest.raises(ValueError, match="a quoted cell is still open after 20 characters"):
        rows.feed(next(feed), 5)
    assert rows.feed(next(feed), 6) == {"a": 3, "b": 4}
    assert rows.feed(next(feed), 7) is None
    with pytest.raises(ValueError, match="not closed at the end of the input"):
        rows.finish()


CSV = '\ufeffid,v\n1,1_000\n2,"multi\nline"\n3,"a ""quoted"" word"\n4,2.5\n'
WANT = [{"id": 1, "v": "1_000"}, {"id": 2, "v": "multi\nline"}, {"id": 3, "v": 'a "quoted" word'}, {"id": 4, "v": 2.5}]


def test_the_file_source_and_edgestream_sql_read_a_csv_alike(hub):
    from hubtest import read_once

    from edgestream_hub.sql.tables import iter_records

    (hub.tmp / "in.csv").write_text(CSV)
    bad: list = []
    assert list(iter_records(hub.tmp / "in.csv", lambda raw, why: bad.append(why))) == WANT and not bad
    assert read_once(hub, "in.csv", CSV) == (WANT, [])


def test_sql_inputs_refuse_a_row_that_does_not_fit_the_header(tmp_path):
    from edgestream_hub.sql.tables import iter_records

    f = tmp_path / "in.csv"
    f.write_text('id,v\n1,2\n2\n3,4,5\n4,"open\n')
    bad: list = []
    assert list(iter_records(f, lambda raw, why: bad.append(why))) == [{"id": 1, "v": 2}]
    assert bad == [f"{f}:3: 1 columns, the header has 2", f"{f}:4: 3 columns, the header has 2",
                   f"{f}:5: a quoted cell is not closed at the end of the input"]
