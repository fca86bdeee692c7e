"""The one CSV report writer: every cell a spreadsheet would run as a formula is text, for
the batch report and the person report alike."""

from __future__ import annotations

import csv
import io

import pytest

from worker.store import batches, personreport
from worker.store.csvreport import csv_cell, write_csv


@pytest.mark.parametrize("value", ["=1+1", "+1", "-1", "@SUM(A1)", "\t=1", "\r=1"])
def test_a_formula_cell_becomes_text(value: str) -> None:
    assert csv_cell(value) == "'" + value


@pytest.mark.parametrize("value", ["jane@acme.com", "a=b", "", 3, None, True])
def test_other_cells_stay_as_they_are(value: object) -> None:
    assert csv_cell(value) == value


def test_rows_stream_one_chunk_each_after_the_header() -> None:
    chunks = list(write_csv(("a", "b"), [{"a": "=x", "b": 1}, {"a": "y", "b": None}]))
    assert chunks[0] == "a,b\r\n'=x,1\r\n" and chunks[1] == "y,\r\n" and chunks[-1] == ""
    assert "".join(write_csv(("a",), [])) == "a\r\n"


def test_both_reports_write_through_it() -> None:
    row = dict.fromkeys(batches.REPORT_COLUMNS, "-1") | {"line": 1}
    (parsed,) = csv.DictReader(io.StringIO("".join(batches.report_csv([row]))))
    assert parsed["reason"] == "'-1" and parsed["line"] == "1"
    person = dict.fromkeys(personreport.COLUMNS, "@x")
    (parsed,) = csv.DictReader(io.StringIO("".join(personreport.report_csv([person]))))
    assert set(parsed.values()) == {"'@x"}
