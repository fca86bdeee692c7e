"""Idempotency keys reused for something else: a submitted request whose key names a stored
request about another seat or person is refused, never collapsed into it.

Deduplicating by key is how a resubmission is made safe; deduplicating a *different*
request by a reused key would silently drop it. ``key_conflicts`` finds those before
anything is recorded (CLI ``revoke``/``batch``, REST, events); ``identity_differences``
says field by field what differs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select

from worker.intake.requests import PersonInput, RevocationInput
from worker.store.models import RevocationRequest
from worker.store.records import Store

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
