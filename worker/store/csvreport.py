"""The one CSV writer behind every report (a batch's rows, a person's seats), for the CLI
(``seat-revoker report``), the REST API and the dashboard alike: the same bytes each way.

A cell starting with ``=``, ``+``, ``-`` or ``@`` (or a tab or carriage return, which
spreadsheets skip before such a sign) is a formula to Excel, LibreOffice and Google Sheets
(CSV injection): ``=HYPERLINK(…)`` in a reason or a Polar error must stay text, so such a
cell is prefixed with ``'`` (shown as text, the formula never evaluated).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """``value`` for a report cell: text a spreadsheet would run as a formula is prefixed
    with ``'``; other values as they are."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def write_csv(columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> Iterator[str]:
    """``rows`` as CSV text under a header of ``columns``, one chunk per row (the header
    first), so a large report streams; keys not in ``columns`` are left out."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({name: csv_cell(value) for name, value in row.items()})
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()
