"""The proof for auditors of a person offboarding: every seat found, when it was revoked,
by which request, on whose instruction, and the verification reads (CSV and JSON)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from worker.store.csvreport import write_csv
from worker.store.models import RevocationRequest
from worker.store.records import Store

COLUMNS = (
    "person_request_id", "person", "scope", "person_outcome", "person_verified",
    "person_verified_at", "requested_by", "reason", "seat_id", "subscription_id", "order_id",
    "seat_request_id", "seat_outcome", "revoked_at", "seat_verified", "seat_verified_at",
    "occupant_seen", "detail",
)


def person_label(record: RevocationRequest) -> str:
    parts = [record.occupant_email, record.occupant_external_id and
             f"external_id={record.occupant_external_id}",
             record.occupant_member_id and f"member_id={record.occupant_member_id}"]
    return " ".join(p for p in parts if p)


def scope_label(record: RevocationRequest) -> str:
    if record.scope_customer_id:
        return f"customer {record.scope_customer_id}"
    if record.scope_external_customer_id:
        return f"customer external_id={record.scope_external_customer_id}"
    return "all customers"


def person_report(store: Store, parent: RevocationRequest) -> dict[str, Any]:
    """One person request with its seats (JSON-ready)."""
    children = store.children_of(parent.id)
    found = parent.discovered or {}
    return {
        "request_id": parent.id,
        "person": person_label(parent),
        "scope": scope_label(parent),
        "state": parent.state,
        "detail": parent.outcome_detail,
        "requested_by": parent.requested_by,
        "reason": parent.reason,
        "created_at": _iso(parent.created_at),
        "finished_at": _iso(parent.finished_at),
        "verified": parent.end_state_verified,
        "verified_at": _iso(parent.verified_at),
        "reads": found.get("reads", []),
        "seats": [_seat(child) for child in children],
    }


def _seat(child: RevocationRequest) -> dict[str, Any]:
    snapshot = child.seat_snapshot or {}
    return {
        "seat_id": child.seat_id,
        "requested_seat_id": child.requested_seat_id,
        "subscription_id": child.subscription_id,
        "order_id": child.order_id,
        "request_id": child.id,
        "state": child.state,
        "revoked_at": snapshot.get("revoked_at"),
        "verified": child.end_state_verified,
        "verified_at": _iso(child.verified_at),
        "occupant_seen": child.occupant_seen,
        "detail": child.outcome_detail or child.last_error,
    }


def report_rows(reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Flat rows, one per seat (one with empty seat columns for a person with none)."""
    rows: list[dict[str, Any]] = []
    for rep in reports:
        head = {
            "person_request_id": rep["request_id"], "person": rep["person"],
            "scope": rep["scope"], "person_outcome": rep["state"],
            "person_verified": rep["verified"], "person_verified_at": rep["verified_at"],
            "requested_by": rep["requested_by"], "reason": rep["reason"],
        }
        for seat in rep["seats"] or [None]:
            row = dict.fromkeys(COLUMNS, None) | head
            if seat is None:
                row["detail"] = rep["detail"]
            else:
                row |= {"seat_id": seat["seat_id"], "subscription_id": seat["subscription_id"],
                        "order_id": seat["order_id"], "seat_request_id": seat["request_id"],
                        "seat_outcome": seat["state"], "revoked_at": seat["revoked_at"],
                        "seat_verified": seat["verified"],
                        "seat_verified_at": seat["verified_at"],
                        "occupant_seen": _occupant(seat["occupant_seen"]),
                        "detail": seat["detail"]}
            rows.append(row)
    return rows


def report_csv(rows: list[dict[str, Any]]) -> Iterator[str]:
    """The person report as CSV text, by the one report writer (``worker.store.csvreport``:
    a cell a spreadsheet would run as a formula is prefixed with ``'``)."""
    return write_csv(COLUMNS, rows)


def _occupant(seen: dict[str, Any] | None) -> str | None:
    if not seen:
        return None
    return " ".join(f"{k}={v}" for k, v in sorted(seen.items()))


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None
