"""SCIM users to person offboardings (pure): which address names the person, and what is
recorded when a user is deactivated or deleted. The ``/scim/v2`` routes record and send it.

Keyed by the user and how many times it was deactivated, so a provider's replay collapses
to the first request and a later deactivation is a new one.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from worker.decisions.outcomes import State
from worker.intake.requests import PersonInput
from worker.store.models import ScimTenant, ScimUser


def offboarding_key(tenant: ScimTenant, user: ScimUser) -> str:
    """The idempotency key of this user's next offboarding."""
    return f"scim:{tenant.id}:{user.id}:{user.deactivations + 1}"


def person_email(model: Any) -> str | None:
    """The address that names the person in Polar's seats: the primary work email, any
    work email, the primary email, the first one, else a userName that is an address."""
    emails = list(model.emails or [])

    def kind(email: Any) -> str:
        return str(getattr(email.type, "value", email.type) or "")

    for pick in (lambda e: kind(e) == "work" and e.primary, lambda e: kind(e) == "work",
                 lambda e: e.primary, lambda e: True):
        for email in emails:
            if email.value and pick(email):
                return str(email.value)
    name = str(model.user_name or "")
    return name if "@" in name.strip("@") else None


def offboarding(tenant: ScimTenant, user: ScimUser, email: str, reason: str) -> PersonInput:
    """Every seat ``email`` holds in the tenant's customer."""
    return PersonInput(
        email=email,
        customer_id=tenant.customer_id,
        customer_external_id=tenant.customer_external_id,
        key=offboarding_key(tenant, user),
        requested_by=f"scim:{tenant.id}",
        reason=f"{reason} ({user.user_name})",
    )


def unidentifiable_row(tenant: ScimTenant, user: ScimUser, reason: str,
                       now: datetime) -> dict[str, Any]:
    """A user with no address was deactivated: nothing can find their seats, so this is
    recorded as a person request that needs review (listed by ``seat-revoker failed``),
    never as done."""
    return {
        "id": str(uuid.uuid4()), "idempotency_key": offboarding_key(tenant, user),
        "kind": "person", "seat_id": None, "mode": "organization",
        "scope_customer_id": tenant.customer_id,
        "scope_external_customer_id": tenant.customer_external_id,
        "scope_all_customers": False,
        "state": State.NEEDS_REVIEW.value, "finished_at": now,
        "requested_by": f"scim:{tenant.id}", "reason": f"{reason} ({user.user_name})",
        "outcome_detail": (f"SCIM user {user.id} ({user.user_name}) has no email address, "
                           "the only thing that can find their seats: offboard them with "
                           "`seat-revoker offboard --email …`. Nothing was revoked; this "
                           "request stays needs_review (a retry cannot find them either)"),
        "sent_at": None,
    }
