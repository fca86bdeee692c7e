"""The person report's flat rows and CSV: one row per seat, a person with no seat still has
a row, and spreadsheet formulas are neutralised."""

from __future__ import annotations

import csv
import io
from typing import Any

from worker.store.personreport import COLUMNS, report_csv, report_rows


def report(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "request_id": "p1", "person": "jane@acme.com", "scope": "customer c1",
        "state": "revoked", "detail": "2 seat(s) revoked", "requested_by": "scim:t1",
        "reason": "=HYPERLINK(\"x\")", "verified": True, "verified_at": "2026-12-01T00:00:00",
        "reads": [], "seats": [
            {"seat_id": "s1", "subscription_id": "sub1", "order_id": None, "request_id": "c1",
             "state": "revoked", "revoked_at": "2026-12-01T00:00:00Z", "verified": True,
             "verified_at": "2026-12-01T00:00:00", "occupant_seen": {"email": "jane@acme.com"},
             "detail": "revoked"},
            {"seat_id": "s2", "subscription_id": None, "order_id": "o1", "request_id": "c2",
             "state": "already_revoked", "revoked_at": None, "verified": True,
             "verified_at": None, "occupant_seen": None, "detail": None},
        ],
    }
    return base | overrides


def test_one_row_per_seat_with_the_persons_proof() -> None:
    rows = report_rows([report()])
    assert [r["seat_id"] for r in rows] == ["s1", "s2"]
    assert all(r["person_outcome"] == "revoked" and r["requested_by"] == "scim:t1"
               for r in rows)
    assert rows[0]["occupant_seen"] == "email=jane@acme.com"


def test_a_person_without_seats_keeps_a_row() -> None:
    (row,) = report_rows([report(seats=[], state="no_active_seat", detail="none held")])
    assert row["seat_id"] is None and row["detail"] == "none held"


def test_csv_has_the_columns_and_neutralises_formulas() -> None:
    text = "".join(report_csv(report_rows([report()])))
    parsed = list(csv.DictReader(io.StringIO(text)))
    assert tuple(parsed[0]) == COLUMNS
    assert parsed[0]["reason"].startswith("'=")
