"""The store row of a validated request (pure): what ``Producer`` records."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from config.settings import Priority
from worker.decisions.outcomes import State
from worker.intake.requests import PersonInput, RevocationInput
from worker.store.models import utcnow


def _lifecycle(request: RevocationInput | PersonInput, batch: dict[str, Any] | None,
               queued_lease: timedelta, default_priority: Priority) -> dict[str, Any]:
    """The columns every request starts with: identity, state (scheduled or queued, with
    its lease), who asked and why, its batch and lane; not yet sent."""
    now = utcnow()
    scheduled = request.effective_at is not None and request.effective_at > now
    return {
        "id": str(uuid.uuid4()),
        "idempotency_key": request.idempotency_key(),
        "state": (State.SCHEDULED if scheduled else State.QUEUED).value,
        "effective_at": request.effective_at,
        "lease_expires_at": None if scheduled else now + queued_lease,
        "requested_by": request.requested_by,
        "reason": request.reason,
        "batch_id": batch["id"] if batch else None,
        "priority": request.priority or default_priority,
        "sent_at": None,
    }


def seat_row(
    request: RevocationInput,
    token_ref: str | None,
    batch: dict[str, Any] | None,
    queued_lease: timedelta,
    default_priority: Priority,
) -> dict[str, Any]:
    return {
        **_lifecycle(request, batch, queued_lease, default_priority),
        "seat_id": request.seat_id,
        "mode": request.mode,
        "subscription_id": request.subscription_id,
        "order_id": request.order_id,
        "occupant_email": request.email,
        "occupant_member_id": request.member_id,
        "occupant_customer_id": request.customer_id,
        "occupant_external_id": request.external_id,
        "portal_token_ref": token_ref if request.mode == "customer_portal" else None,
    }


# Columns a person row sets that a seat row leaves to their defaults.
_ROW_DEFAULTS: dict[str, Any] = {"kind": "seat", "scope_customer_id": None,
                                 "scope_external_customer_id": None,
                                 "scope_all_customers": False}


def same_shape(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Seat and person rows with the same keys, so a mixed batch stays one executemany."""
    if all(row.get("kind", "seat") == "seat" for row in rows):
        return rows
    return [{**_ROW_DEFAULTS, **row} for row in rows]


def person_row(
    request: PersonInput, batch: dict[str, Any] | None, queued_lease: timedelta,
    default_priority: Priority,
) -> dict[str, Any]:
    """A person request: no seat, no subscription/order; the worker finds them."""
    return {
        **_lifecycle(request, batch, queued_lease, default_priority),
        "kind": "person",
        "seat_id": None,
        "mode": "organization",
        "subscription_id": None,
        "order_id": None,
        "occupant_email": request.email,
        "occupant_member_id": request.member_id,
        "occupant_customer_id": None,
        "occupant_external_id": request.external_id,
        "scope_customer_id": request.customer_id,
        "scope_external_customer_id": request.customer_external_id,
        "scope_all_customers": request.all_customers,
        "portal_token_ref": None,
    }
