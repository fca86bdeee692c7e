"""Read side of batches: progress, counts and the per-row report, all from the store."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from worker.decisions.outcomes import ATTENTION_STATES, State
from worker.store.models import Batch, BatchItem, RevocationRequest, utcnow
from worker.store.records import Store

REPORT_COLUMNS = (
    "line", "request_id", "seat_id", "subscription_id", "order_id", "email", "member_id",
    "customer_id", "external_id", "outcome", "outcome_detail", "attempts", "http_status",
    "error", "seat_status", "seat_revoked_at", "seat_email_seen", "requested_seat_id",
    "guarded", "end_state_verified", "reason", "idempotency_key", "finished_at",
)


@dataclass(frozen=True)
class BatchProgress:
    batch_id: str
    name: str | None
    total: int
    counts: dict[str, int]
    done: bool
    elapsed_s: float
    created_at: datetime

    @property
    def finished(self) -> int:
        return sum(n for state, n in self.counts.items() if State(state).is_terminal)

    @property
    def succeeded(self) -> int:
        """Rows whose person no longer holds the seat through us (``State.is_success``)."""
        return sum(n for state, n in self.counts.items() if State(state).is_success)

    @property
    def needs_review(self) -> int:
        return self.counts.get(State.NEEDS_REVIEW.value, 0)

    @property
    def attention(self) -> int:
        """Rows an operator must act on (failed or needs_review)."""
        return sum(n for state, n in self.counts.items() if State(state) in ATTENTION_STATES)

    def summary(self) -> dict[str, Any]:
        """The JSON summary ``seat-revoker batch --json`` and ``status`` print."""
        return {
            "batch_id": self.batch_id,
            "name": self.name,
            "total": self.total,
            "counts": self.counts,
            "done": self.done,
            "succeeded": self.succeeded,
            "needs_attention": self.attention,
            "elapsed_s": round(self.elapsed_s, 3),
        }


def get_batch(store: Store, batch_id: str) -> Batch | None:
    with store.session() as session:
        return session.get(Batch, batch_id)


def batch_progress(store: Store, batch_id: str) -> BatchProgress | None:
    """Counts per state over the batch's distinct requests; ``None`` for an unknown batch."""
    with store.session() as session:
        batch = session.get(Batch, batch_id)
        if batch is None:
            return None
        members = select(BatchItem.request_id).where(BatchItem.batch_id == batch_id).distinct()
        rows = session.execute(
            select(RevocationRequest.state, func.count(), func.max(RevocationRequest.finished_at))
            .where(RevocationRequest.id.in_(members))
            .group_by(RevocationRequest.state)
        ).all()
    counts = {state: count for state, count, _ in rows}
    total = sum(counts.values())
    done = all(State(state).is_terminal for state in counts)
    last = max((finished for _, _, finished in rows if finished is not None), default=None)
    end = last if done and last is not None else utcnow()
    return BatchProgress(
        batch_id=batch.id,
        name=batch.name,
        total=total,
        counts=dict(sorted(counts.items())),
        done=done,
        elapsed_s=max(0.0, (end - batch.created_at).total_seconds()),
        created_at=batch.created_at,
    )


def report_rows(store: Store, batch_id: str) -> list[dict[str, Any]]:
    """One row per batch line: what was asked, the outcome and what Polar showed."""
    with store.session() as session:
        pairs = session.execute(
            select(BatchItem.line, RevocationRequest)
            .join(RevocationRequest, RevocationRequest.id == BatchItem.request_id)
            .where(BatchItem.batch_id == batch_id)
            .order_by(BatchItem.line)
        ).all()
    return [_report_row(line, record) for line, record in pairs]


def _report_row(line: int, record: RevocationRequest) -> dict[str, Any]:
    snapshot = record.seat_snapshot or {}
    seen = record.occupant_seen or {}
    return {
        "line": line,
        "request_id": record.id,
        "seat_id": record.seat_id,
        "subscription_id": record.subscription_id,
        "order_id": record.order_id,
        "email": record.occupant_email,
        "member_id": record.occupant_member_id,
        "customer_id": record.occupant_customer_id,
        "external_id": record.occupant_external_id,
        "outcome": record.state,
        "outcome_detail": record.outcome_detail,
        "attempts": record.attempts,
        "http_status": record.last_http_status,
        "error": record.last_error,
        "seat_status": snapshot.get("status"),
        "seat_revoked_at": snapshot.get("revoked_at"),
        "seat_email_seen": seen.get("email"),
        "requested_seat_id": record.requested_seat_id,
        "guarded": record.guarded is not False,
        "end_state_verified": record.end_state_verified,
        "reason": record.reason,
        "idempotency_key": record.idempotency_key,
        "finished_at": record.finished_at.isoformat() if record.finished_at else None,
    }


# A cell starting with one of these is a formula to Excel, LibreOffice and Google Sheets
# (CSV injection): ``=HYPERLINK(…)`` in a reason or a Polar error must stay text.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: Any) -> Any:
    """``value`` for a report cell: text a spreadsheet would run as a formula is prefixed
    with ``'`` (shown as text, the formula never evaluated); other values as they are."""
    if isinstance(value, str) and value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def report_csv(rows: Iterable[dict[str, Any]]) -> Iterator[str]:
    """The batch report as CSV text, one chunk per row (the header first): the one writer
    behind ``seat-revoker report --format csv`` and ``/v1/batches/{id}/report.csv``."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(REPORT_COLUMNS), extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({name: csv_cell(value) for name, value in row.items()})
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()


def list_batches(store: Store, limit: int = 50) -> list[Batch]:
    with store.session() as session:
        return list(
            session.scalars(select(Batch).order_by(Batch.created_at.desc()).limit(limit))
        )
