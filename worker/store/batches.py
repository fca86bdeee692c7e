"""The read side of batches, in one place for the CLI, the REST API and the dashboard:
``BatchSummary`` (a batch and where its distinct requests stand), one batch's progress,
the list of batches, and the per-row report (CSV through ``worker.store.csvreport``)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select

from worker.decisions.outcomes import ATTENTION_STATES, State
from worker.store.csvreport import write_csv
from worker.store.models import Batch, BatchItem, RevocationRequest, utcnow
from worker.store.queries import MAX_LIMIT
from worker.store.records import Store

REPORT_COLUMNS = (
    "line", "request_id", "seat_id", "subscription_id", "order_id", "email", "member_id",
    "customer_id", "external_id", "outcome", "outcome_detail", "attempts", "http_status",
    "error", "seat_status", "seat_revoked_at", "seat_email_seen", "requested_seat_id",
    "guarded", "end_state_verified", "reason", "idempotency_key", "finished_at",
)


@dataclass(frozen=True)
class BatchSummary:
    """A batch and its counts per state over its distinct requests (rows of the file that
    named the same request count once): the one summary every view of a batch shows."""

    batch: Batch
    counts: dict[str, int] = field(default_factory=dict)  # by state name, sorted
    # Seconds since the batch was made, up to its last outcome once done; measured for one
    # batch (``batch_progress``), not in lists (``list_batches``).
    elapsed_s: float | None = None

    @property
    def batch_id(self) -> str:
        return self.batch.id

    @property
    def name(self) -> str | None:
        return self.batch.name

    @property
    def created_at(self) -> datetime:
        return self.batch.created_at

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def finished(self) -> int:
        return sum(n for state, n in self.counts.items() if State(state).is_terminal)

    @property
    def done(self) -> bool:
        return all(State(state).is_terminal for state in self.counts)

    @property
    def succeeded(self) -> int:
        """Requests whose person no longer holds the seat through us (``State.is_success``)."""
        return sum(n for state, n in self.counts.items() if State(state).is_success)

    @property
    def attention(self) -> int:
        """Requests an operator must act on (failed or needs_review)."""
        return sum(n for state, n in self.counts.items() if State(state) in ATTENTION_STATES)

    def summary(self) -> dict[str, Any]:
        """The JSON of one batch's progress: ``seat-revoker batch --json`` and ``status``."""
        return {
            "batch_id": self.batch_id,
            "name": self.name,
            "total": self.total,
            "counts": self.counts,
            "done": self.done,
            "succeeded": self.succeeded,
            "needs_attention": self.attention,
            "elapsed_s": round(self.elapsed_s or 0.0, 3),
        }

    def listing(self) -> dict[str, Any]:
        """The JSON line of a batch in a list: ``seat-revoker batches --json``."""
        return {
            "batch_id": self.batch_id, "name": self.name, "source": self.batch.source,
            "requested_by": self.batch.requested_by,
            "created_at": self.created_at.isoformat(), "total": self.total,
            "finished": self.finished, "done": self.done, "succeeded": self.succeeded,
            "needs_attention": self.attention, "counts": self.counts,
        }


def get_batch(store: Store, batch_id: str) -> Batch | None:
    """The batch row itself (no counts): whether it exists, its name and source."""
    with store.session() as session:
        return session.get(Batch, batch_id)


def batch_progress(store: Store, batch_id: str) -> BatchSummary | None:
    """One batch's summary with its elapsed time; ``None`` for an unknown batch."""
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
    done = all(State(state).is_terminal for state in counts)
    last = max((finished for _, _, finished in rows if finished is not None), default=None)
    end = last if done and last is not None else utcnow()
    return BatchSummary(batch, dict(sorted(counts.items())),
                        elapsed_s=max(0.0, (end - batch.created_at).total_seconds()))


def counts_by_batch(store: Store, batch_ids: Sequence[str]) -> dict[str, dict[str, int]]:
    """``{batch_id: {state: n}}`` over each batch's distinct requests, in one query."""
    if not batch_ids:
        return {}
    model = RevocationRequest
    members = (
        select(BatchItem.batch_id, BatchItem.request_id)
        .where(BatchItem.batch_id.in_(list(batch_ids)))
        .distinct()
        .subquery()
    )
    query = (
        select(members.c.batch_id, model.state, func.count())
        .join(model, model.id == members.c.request_id)
        .group_by(members.c.batch_id, model.state)
    )
    out: dict[str, dict[str, int]] = {batch_id: {} for batch_id in batch_ids}
    with store.session() as session:
        for batch_id, state, n in session.execute(query):
            if batch_id is not None:
                out[batch_id][state] = n
    return {batch_id: dict(sorted(counts.items())) for batch_id, counts in out.items()}


def list_batches(
    store: Store, *, limit: int = 20, offset: int = 0
) -> tuple[list[BatchSummary], int]:
    """Batches newest first with their per-state counts, and the number of batches."""
    limit = max(1, min(limit, MAX_LIMIT))
    query = select(Batch).order_by(Batch.created_at.desc(), Batch.id.desc())
    with store.session() as session:
        batches = list(session.scalars(query.offset(max(offset, 0)).limit(limit)))
        total = session.scalar(select(func.count()).select_from(Batch)) or 0
    counts = counts_by_batch(store, [b.id for b in batches])
    return [BatchSummary(b, counts.get(b.id, {})) for b in batches], total


# -- the per-row report -----------------------------------------------------------------------


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


def report_csv(rows: Iterable[dict[str, Any]]) -> Iterator[str]:
    """The batch report as CSV text (``worker.store.csvreport``): behind
    ``seat-revoker report --format csv``, ``/v1/batches/{id}/report.csv`` and the
    dashboard's download."""
    return write_csv(REPORT_COLUMNS, rows)
