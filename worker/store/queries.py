"""Read-side queries over the record store, for the HTTP API and the dashboard.

Lists are newest first. Two ways to page: ``offset`` (simple, for small tables and page
numbers) or an opaque ``cursor`` (keyset on ``(created_at, id)``: stable while new rows
arrive, and cheap however deep one pages). Nothing here writes.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
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
from worker.intake.requests import PersonInput, RevocationInput
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


@dataclass(frozen=True)
class BatchSummary:
    batch: Batch
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def finished(self) -> int:
        return sum(n for state, n in self.counts.items() if State(state).is_terminal)

    @property
    def succeeded(self) -> int:
        """Requests whose person no longer holds the seat through us (``State.is_success``)."""
        return sum(n for state, n in self.counts.items() if State(state).is_success)

    @property
    def attention(self) -> int:
        """Requests an operator must act on (failed or needs_review)."""
        return sum(n for state, n in self.counts.items() if State(state) in ATTENTION_STATES)

    @property
    def total(self) -> int:
        """Distinct requests (rows that named the same request count once)."""
        return sum(self.counts.values())

    @property
    def done(self) -> bool:
        return all(State(state).is_terminal for state in self.counts)


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
    return out


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


def get_batch(store: Store, batch_id: str) -> BatchSummary | None:
    with store.session() as session:
        batch = session.get(Batch, batch_id)
    if batch is None:
        return None
    return BatchSummary(batch, counts_by_batch(store, [batch_id])[batch_id])


def in_flight_count(store: Store) -> int:
    states = [s.value for s in STATE_GROUPS["in_flight"]]
    query = select(func.count()).select_from(RevocationRequest)
    with store.session() as session:
        return session.scalar(query.where(RevocationRequest.state.in_(states))) or 0


def last_change(store: Store) -> datetime | None:
    """When any request last changed (the dashboard reloads when this moves)."""
    with store.session() as session:
        return session.scalar(select(func.max(RevocationRequest.updated_at)))


# -- idempotency keys reused for something else ---------------------------------------------

# What a request is about, as the producer stores it: RevocationInput field → record column.
IDENTITY_COLUMNS = {
    "seat_id": "seat_id",
    "subscription_id": "subscription_id",
    "order_id": "order_id",
    "email": "occupant_email",
    "member_id": "occupant_member_id",
    "customer_id": "occupant_customer_id",
    "external_id": "occupant_external_id",
    "mode": "mode",
}


@dataclass(frozen=True)
class KeyConflict:
    """A submitted request whose idempotency key names a stored request about something
    else: deduplicating it would silently drop it."""

    index: int  # position in the submitted sequence
    key: str
    request_id: str  # the stored request holding the key
    fields: tuple[tuple[str, object, object], ...]  # (field, stored, submitted)

    def describe(self) -> str:
        changes = "; ".join(
            f"{name} {_shown(stored)} there, {_shown(submitted)} here"
            for name, stored, submitted in self.fields
        )
        return (f"idempotency key {_clip(repr(self.key), 60)} already belongs to request "
                f"{self.request_id} about something else ({changes}); use a new key for a "
                "new request")


PERSON_COLUMNS = {
    "email": "occupant_email",
    "member_id": "occupant_member_id",
    "external_id": "occupant_external_id",
    "customer_id": "scope_customer_id",
    "customer_external_id": "scope_external_customer_id",
    "all_customers": "scope_all_customers",
}


def person_differences(
    request: PersonInput, record: RevocationRequest
) -> tuple[tuple[str, object, object], ...]:
    """How a person request differs from the stored record its key names (empty: the
    same request)."""
    if record.kind != "person":
        return (("kind", record.kind, "person"),)
    out: list[tuple[str, object, object]] = []
    for name, column in PERSON_COLUMNS.items():
        submitted, stored = getattr(request, name), getattr(record, column)
        same = ((submitted or "").casefold() == (stored or "").casefold() if name == "email"
                else bool(submitted) == bool(stored) if name == "all_customers"
                else submitted == stored)
        if not same:
            out.append((name, stored, submitted))
    return tuple(out)


def identity_differences(
    request: RevocationInput | PersonInput, record: RevocationRequest
) -> tuple[tuple[str, object, object], ...]:
    """How ``request`` differs from the stored ``record`` its key names, field by field
    (empty: the same request, an honest resubmission).

    Only what the producer stores from the request is compared, allowing for what the
    system itself fills in later: a seat the worker resolved or switched to (the seat named
    must be the stored one or the one it replaced), and the subscription/order the producer
    found for a bare seat id (compared only when the request names one).
    """
    if isinstance(request, PersonInput):
        return person_differences(request, record)
    if record.kind == "person":
        return (("kind", "person", "seat"),)
    out: list[tuple[str, object, object]] = []
    for name, column in IDENTITY_COLUMNS.items():
        submitted = getattr(request, name)
        stored = getattr(record, column)
        if name == "seat_id":
            if submitted is not None and submitted not in (stored, record.requested_seat_id):
                out.append((name, record.requested_seat_id or stored, submitted))
            continue
        if name in ("subscription_id", "order_id") and not (
            request.subscription_id or request.order_id
        ):
            continue
        if name == "email":
            same = (submitted or "").casefold() == (stored or "").casefold()
        else:
            same = submitted == stored
        if not same:
            out.append((name, stored, submitted))
    return tuple(out)


def key_conflicts(store: Store, requests: Sequence[RevocationInput | PersonInput]
                  ) -> list[KeyConflict]:
    """Requests whose idempotency key is stored for a different request, in order."""
    keys = [request.idempotency_key() for request in requests]
    found: dict[str, RevocationRequest] = {}
    unique = list(dict.fromkeys(keys))
    with store.session() as session:
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            query = select(RevocationRequest).where(RevocationRequest.idempotency_key.in_(chunk))
            for record in session.scalars(query):
                found[record.idempotency_key] = record
    conflicts = []
    for index, (request, key) in enumerate(zip(requests, keys, strict=True)):
        stored = found.get(key)
        if stored is None:
            continue
        differences = identity_differences(request, stored)
        if differences:
            conflicts.append(KeyConflict(index, key, stored.id, differences))
    return conflicts


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _shown(value: object) -> str:
    return "empty" if value is None else _clip(repr(value), 60)


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
