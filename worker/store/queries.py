"""Read-side queries over requests, for the HTTP API, the dashboard and the CLI (batches:
``worker.store.batches``; idempotency keys reused: ``worker.intake.conflicts``).

Lists are newest first. Two ways to page: ``offset`` (simple, for small tables and page
numbers) or an opaque ``cursor`` (keyset on ``(created_at, id)``: stable while new rows
arrive, and cheap however deep one pages). Nothing here writes.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, and_, func, or_, select

from worker.decisions.outcomes import (
    ATTENTION_STATES,
    IN_FLIGHT_STATES,
    SUCCESS_STATES,
    TERMINAL_STATES,
    State,
)
from worker.store.models import Batch, BatchItem, RevocationRequest
from worker.store.records import Store

MAX_LIMIT = 500

# Group names accepted wherever a state is, expanding to several states.
STATE_GROUPS: dict[str, frozenset[State]] = {
    "in_flight": IN_FLIGHT_STATES | {State.SCHEDULED},
    "terminal": TERMINAL_STATES,
    "success": SUCCESS_STATES,
    "attention": ATTENTION_STATES,  # failed or needs_review: an operator must act
}


class InvalidCursor(ValueError):
    """The cursor was not produced by this API (or was tampered with)."""


@dataclass(frozen=True)
class RequestFilter:
    """Conditions ANDed together; ``states`` are ORed (names of ``State`` or a group)."""

    states: Sequence[str] = ()
    batch_id: str | None = None
    seat_id: str | None = None
    email: str | None = None  # exact, case-insensitive
    created_from: datetime | None = None  # inclusive
    created_to: datetime | None = None  # exclusive
    # Partial search (``worker.store.lookup``): an id or seat-id prefix, or part of an email
    # (``@acme.com`` finds a domain); see ``text_condition``.
    text: str | None = None
    seat_prefix: str | None = None  # the start of the seat id (or the seat asked for)
    email_contains: str | None = None  # part of the email, case-insensitive
    # Where the request came from: one of SOURCES (``source_condition``).
    source: str | None = None

    def state_values(self) -> list[str]:
        values: set[str] = set()
        for name in self.states:
            if name in STATE_GROUPS:
                values.update(s.value for s in STATE_GROUPS[name])
            else:
                values.add(State(name).value)  # ValueError for an unknown state
        return sorted(values)


@dataclass(frozen=True)
class Page:
    items: list[RevocationRequest]
    total: int
    next_cursor: str | None = None
    next_offset: int | None = None


def encode_cursor(record: RevocationRequest) -> str:
    raw = json.dumps([record.created_at.isoformat(), record.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        stamp, request_id = json.loads(raw)
        when = datetime.fromisoformat(stamp)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise InvalidCursor("cursor is not valid") from None
    if when.tzinfo is None or not isinstance(request_id, str):
        raise InvalidCursor("cursor is not valid")
    return when, request_id


def _filtered(query: Select[Any], where: RequestFilter) -> Select[Any]:
    model = RevocationRequest
    if where.states:
        query = query.where(model.state.in_(where.state_values()))
    if where.batch_id:  # membership is batch_items: a request may serve several batches
        members = select(BatchItem.request_id).where(BatchItem.batch_id == where.batch_id)
        query = query.where(model.id.in_(members))
    if where.seat_id:
        query = query.where(model.seat_id == where.seat_id)
    if where.email:
        query = query.where(func.lower(model.occupant_email) == where.email.strip().lower())
    if where.created_from:
        query = query.where(model.created_at >= where.created_from)
    if where.created_to:
        query = query.where(model.created_at < where.created_to)
    if where.seat_prefix or where.email_contains:
        from worker.store.lookup import email_condition, seat_condition

        if where.seat_prefix:
            query = query.where(seat_condition(where.seat_prefix))
        if where.email_contains:
            query = query.where(email_condition(where.email_contains))
    if where.text:
        from worker.store.lookup import text_condition

        query = query.where(text_condition(where.text))
    if where.source:
        from worker.store.lookup import source_condition

        query = query.where(source_condition(where.source))
    return query


def list_requests(
    store: Store,
    where: RequestFilter | None = None,
    *,
    limit: int = 50,
    cursor: str | None = None,
    offset: int | None = None,
) -> Page:
    """One page of requests matching ``where``, newest first.

    Give ``cursor`` (from a previous page's ``next_cursor``) or ``offset``, not both.
    ``total`` counts every match, independent of the page.
    """
    if cursor is not None and offset is not None:
        raise ValueError("give cursor or offset, not both")
    where = where or RequestFilter()
    limit = max(1, min(limit, MAX_LIMIT))
    model = RevocationRequest
    query = _filtered(select(model), where).order_by(model.created_at.desc(), model.id.desc())
    if cursor is not None:
        when, last_id = decode_cursor(cursor)
        query = query.where(
            or_(model.created_at < when, and_(model.created_at == when, model.id < last_id))
        )
    elif offset:
        query = query.offset(offset)
    count = _filtered(select(func.count()).select_from(model), where)
    with store.session() as session:
        rows = list(session.scalars(query.limit(limit + 1)))
        total = session.scalar(count) or 0
    more = len(rows) > limit
    items = rows[:limit]
    return Page(
        items=items,
        total=total,
        next_cursor=encode_cursor(items[-1]) if more and offset is None else None,
        next_offset=(offset or 0) + limit if more and cursor is None else None,
    )


def in_flight_count(store: Store) -> int:
    states = [s.value for s in STATE_GROUPS["in_flight"]]
    query = select(func.count()).select_from(RevocationRequest)
    with store.session() as session:
        return session.scalar(query.where(RevocationRequest.state.in_(states))) or 0


def last_change(store: Store) -> datetime | None:
    """When any request last changed (the dashboard reloads when this moves)."""
    with store.session() as session:
        return session.scalar(select(func.max(RevocationRequest.updated_at)))


# -- dashboard drill-down ---------------------------------------------------------------------


def batches_of_request(store: Store, request_id: str) -> list[Batch]:
    """The batches a request serves (rows of several batches may name one request)."""
    query = (select(Batch).join(BatchItem, BatchItem.batch_id == Batch.id)
             .where(BatchItem.request_id == request_id).distinct()
             .order_by(Batch.created_at))
    with store.session() as session:
        return list(session.scalars(query))


def batch_lines(store: Store, batch_id: str, request_id: str) -> list[int]:
    """The lines of ``batch_id``'s file that name ``request_id``."""
    query = (select(BatchItem.line).where(BatchItem.batch_id == batch_id,
                                          BatchItem.request_id == request_id)
             .order_by(BatchItem.line))
    with store.session() as session:
        return list(session.scalars(query))


def scheduled_requests(
    store: Store, *, limit: int = 50, offset: int = 0
) -> tuple[list[RevocationRequest], int]:
    """Scheduled requests, soonest ``effective_at`` first, and how many there are."""
    model = RevocationRequest
    where = model.state == State.SCHEDULED.value
    query = (select(model).where(where)
             .order_by(model.effective_at.asc(), model.id).offset(max(offset, 0))
             .limit(max(1, min(limit, MAX_LIMIT))))
    with store.session() as session:
        items = list(session.scalars(query))
        total = session.scalar(select(func.count()).select_from(model).where(where)) or 0
    return items, total


def oldest_change_by_state(store: Store, states: Sequence[State]) -> dict[str, datetime]:
    """{state: the oldest ``updated_at`` among requests in it} (a request's last change is
    when it entered its state): how long the oldest queued/retrying one has waited."""
    model = RevocationRequest
    query = (select(model.state, func.min(model.updated_at))
             .where(model.state.in_([s.value for s in states])).group_by(model.state))
    out: dict[str, datetime] = {}
    with store.session() as session:
        for state, oldest in session.execute(query):
            if oldest is not None:
                out[state] = oldest if oldest.tzinfo else oldest.replace(tzinfo=UTC)
    return out
