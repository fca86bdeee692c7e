"""Seat rows of the sandbox and the shapes Polar has given them over time.

Sources (polarsource/polar): server/polar/models/customer_seat.py (columns,
`customer_email`), server/polar/customer_seat/schemas.py (`CustomerSeat`, `SeatsList`),
server/polar/customer_seat/service.py (`assign_seat`, `_resolve_member_model_target`,
`_resolve_legacy_target`, `revoke_seat`). Shapes by `SeatVariant` (see `place_holder`):

| variant                | customer_id          | member (under billing customer) | email  |
|------------------------|----------------------|---------------------------------|--------|
| current, member model  | billing customer     | holder (email, external id)     | holder |
| current, legacy org    | holder's own customer| holder's email, no external id  | holder |
| legacy_before_2026_03  | holder's own customer| none                            | null   |
| member_before_2026_01  | billing customer     | holder                          | null   |
| member_2025_12         | holder's own customer| holder                          | null   |
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from worker.sandbox.errors import SandboxError
from worker.sandbox.people import Customer, Directory, Member, MemberRole, iso

__all__ = [
    "INVITATION_TTL",
    "Holder",
    "Seat",
    "SeatSpec",
    "SeatStatus",
    "SeatVariant",
    "SeatsList",
    "place_holder",
]

INVITATION_TTL = timedelta(days=1)  # customer_seat/service.py assign_seat


class SeatStatus(StrEnum):
    """Lifecycle of a seat row."""

    PENDING = "pending"  # assigned, invitation not yet claimed
    CLAIMED = "claimed"  # occupied
    REVOKED = "revoked"  # free; the row is reused by the next assignment


class SeatVariant(StrEnum):
    """Which shape a seat is stored with (see the module docstring)."""

    CURRENT = "current"  # what Polar does today, by the organization's member model
    LEGACY_BEFORE_2026_03 = "legacy_before_2026_03"
    MEMBER_BEFORE_2026_01 = "member_before_2026_01"
    MEMBER_2025_12 = "member_2025_12"


@dataclass(slots=True)
class SeatSpec:
    """One seat as `/_sandbox/seats` and `/_sandbox/assign` describe it.

    `email`, `external_id`, `name`, `role` describe the holder; `member_id` names an existing
    member of the billing customer or the id to give a new one; `customer_id` names the
    holder's own customer (legacy and `member_2025_12` shapes only).
    """

    status: SeatStatus = SeatStatus.CLAIMED
    id: str | None = None
    subscription_id: str | None = None
    order_id: str | None = None
    email: str | None = None
    customer_id: str | None = None
    member_id: str | None = None
    external_id: str | None = None
    name: str | None = None
    role: MemberRole | None = None
    variant: SeatVariant = SeatVariant.CURRENT
    revoked_at: datetime | None = None


@dataclass(slots=True)
class Holder:
    """What a seat row stores about its occupant."""

    customer: Customer
    member: Member | None
    email: str | None


@dataclass(slots=True)
class Seat:
    """One seat row; `customer` and `member` are the rows its ids point at."""

    id: str
    created_at: datetime
    modified_at: datetime
    status: SeatStatus
    subscription_id: str | None = None
    order_id: str | None = None
    customer: Customer | None = None
    member: Member | None = None
    email: str | None = None
    invitation_token: str | None = None
    invitation_token_expires_at: datetime | None = None
    claimed_at: datetime | None = None
    revoked_at: datetime | None = None
    seat_metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def customer_id(self) -> str | None:
        return None if self.customer is None else self.customer.id

    @property
    def member_id(self) -> str | None:
        return None if self.member is None else self.member.id

    @property
    def customer_email(self) -> str | None:
        """`email`, else the member's, else the customer's (models/customer_seat.py)."""
        if self.email:
            return self.email
        if self.member is not None and self.member.email:
            return self.member.email
        return None if self.customer is None else self.customer.email

    def to_json(self) -> dict[str, Any]:
        """The CustomerSeat body: every field present, the empty ones null."""
        return {
            "created_at": iso(self.created_at),
            "modified_at": iso(self.modified_at),
            "id": self.id,
            "subscription_id": self.subscription_id,
            "order_id": self.order_id,
            "status": self.status.value,
            "customer_id": self.customer_id,
            "member_id": self.member_id,
            "member": None if self.member is None else self.member.to_json(),
            "email": self.email,
            "customer_email": self.customer_email,
            "invitation_token_expires_at": iso(self.invitation_token_expires_at),
            "claimed_at": iso(self.claimed_at),
            "revoked_at": iso(self.revoked_at),
            "seat_metadata": self.seat_metadata,
        }

    def snapshot(self) -> Seat:
        """A copy that later changes to the stored rows do not reach."""
        return replace(
            self,
            customer=None if self.customer is None else replace(self.customer),
            member=None if self.member is None else replace(self.member),
            seat_metadata=dict(self.seat_metadata),
        )

    def occupy(self, holder: Holder, status: SeatStatus, now: datetime) -> None:
        """Give the row to `holder` (assign_seat: pending with an invitation, or claimed)."""
        self.status = status
        self.customer, self.member, self.email = holder.customer, holder.member, holder.email
        pending = status is SeatStatus.PENDING
        self.invitation_token = secrets.token_urlsafe(32) if pending else None
        self.invitation_token_expires_at = now + INVITATION_TTL if pending else None
        self.claimed_at = None if pending else now
        self.revoked_at = None
        self.seat_metadata = {}
        self.modified_at = now

    def vacate(self, now: datetime) -> None:
        """Revoke (revoke_seat): clears customer, member, email and the invitation token;
        `claimed_at`, `invitation_token_expires_at` and `seat_metadata` stay."""
        self.status = SeatStatus.REVOKED
        self.revoked_at = self.modified_at = now
        self.customer = self.member = self.email = self.invitation_token = None


@dataclass(slots=True)
class SeatsList:
    """Body of the list endpoints."""

    seats: list[Seat]
    available_seats: int
    total_seats: int

    def to_json(self) -> dict[str, Any]:
        return {
            "seats": [s.to_json() for s in self.seats],
            "available_seats": self.available_seats,
            "total_seats": self.total_seats,
        }


def place_holder(
    people: Directory,
    now: datetime,
    billing: Customer,
    spec: SeatSpec,
    member_model_enabled: bool,
) -> Holder:
    """Find or create the customer and member a seat of `billing`'s container stores for
    the person in `spec`, in the shape its variant (and the organization's mode) gives."""
    variant = spec.variant
    if variant is SeatVariant.CURRENT and member_model_enabled:
        return _member_model(people, now, billing, spec)
    if variant is SeatVariant.CURRENT:
        return _legacy(people, now, billing, spec)
    if variant is SeatVariant.LEGACY_BEFORE_2026_03:
        if spec.member_id is not None or spec.role is not None:
            raise SandboxError.bad_request(f"{variant} seats have no member")
        return Holder(_own_customer(people, now, spec), None, None)
    if variant is SeatVariant.MEMBER_BEFORE_2026_01:
        holder = _member_model(people, now, billing, spec)
        return replace(holder, email=None)
    own = _own_customer(people, now, spec)
    member = _member(people, now, billing, replace(spec, email=spec.email or own.email))
    return Holder(own, member, None)


def _member_model(people: Directory, now: datetime, billing: Customer, spec: SeatSpec) -> Holder:
    if spec.customer_id is not None:
        raise SandboxError.bad_request(
            "customer_id names the holder's own customer, which member-model seats do not "
            "have: use member_id/email/external_id, variant 'member_2025_12', or "
            "member_model_enabled=false"
        )
    member = _member(people, now, billing, spec)
    return Holder(billing, member, member.email)


def _legacy(people: Directory, now: datetime, billing: Customer, spec: SeatSpec) -> Holder:
    """Since March 2026: the holder's own customer plus a member (by email, without
    external id) under the billing customer."""
    own = _own_customer(people, now, spec)
    if own.email is None:
        return Holder(own, None, None)
    member = people.seat_member(
        now, billing, member_id=spec.member_id, email=own.email, external_id=None, name=None,
        role=spec.role,
    )
    return Holder(own, member, own.email)


def _own_customer(people: Directory, now: datetime, spec: SeatSpec) -> Customer:
    email = spec.email
    if email is None and spec.customer_id is None:
        email = people.unused_email("holder", "customers.test")
    return people.holder_customer(
        now, customer_id=spec.customer_id, email=email, external_id=spec.external_id,
        name=spec.name,
    )


def _member(people: Directory, now: datetime, billing: Customer, spec: SeatSpec) -> Member:
    return people.seat_member(
        now, billing, member_id=spec.member_id, email=spec.email,
        external_id=spec.external_id, name=spec.name, role=spec.role,
    )
