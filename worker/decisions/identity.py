"""Who a seat shows as its holder, and whether that is the person named (pure functions).

Which fields of a seat name its holder depends on the organization
(polarsource/polar ``server/polar/customer_seat/service.py``, ``models/customer_seat.py``;
``../shared/docs/polar-seat-api.md``):

* member model on: ``customer_id`` is the **billing customer**, the same on every seat of
  the subscription/order; the holder is the member (``member_id``, ``member.email``,
  ``member.external_id``, ``email``).
* member model off (legacy): ``customer_id`` is the holder's own customer; seats assigned
  before March 2026 have no member and ``email: null`` — the address is only in
  ``customer_email`` and the external id only on the customer (read through the API).
* ``customer_email`` is ``email``, else ``member.email``, else the seat customer's email.

So a ``customer_id`` (and a ``customer_email`` that may be the customer's) tells who holds a
seat only when it is not the billing customer. The mode is read from what Polar returns:
the billing customer is the member's ``customer_id`` or, when no seat has a member, the
subscription's or order's own customer (``IdentityContext``). Nothing here does I/O;
``worker.decisions.occupant`` turns these judgements into a request's verdict.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Protocol

from worker.polar.seats import CustomerSeat, Member


class NamedPerson(Protocol):
    """What a stored request (``worker.store.models.RevocationRequest``) names: its
    ``occupant_*`` columns. Structural, so these rules need not import the store."""

    occupant_email: str | None
    occupant_member_id: str | None
    occupant_customer_id: str | None
    occupant_external_id: str | None


@dataclass(frozen=True)
class Occupant:
    """A person as a job names them; any subset of the fields."""

    email: str | None = None
    member_id: str | None = None
    customer_id: str | None = None
    external_id: str | None = None

    @property
    def is_named(self) -> bool:
        return any((self.email, self.member_id, self.customer_id, self.external_id))

    @classmethod
    def named_by(cls, record: NamedPerson) -> Occupant:
        """The person a stored request names (its ``occupant_*`` columns)."""
        return cls(record.occupant_email, record.occupant_member_id,
                   record.occupant_customer_id, record.occupant_external_id)

    def as_dict(self) -> dict[str, str]:
        return {key: value for key, value in asdict(self).items() if value}


@dataclass(frozen=True)
class IdentityContext:
    """What is known beyond the seat bodies, read from Polar when the bodies cannot tell.

    ``billing_customer_id``: the subscription's or order's own customer. ``external_customer``:
    the id of the customer whose ``external_id`` the job names, once looked up
    (``EXTERNAL_UNKNOWN`` until then, ``None`` if Polar has no such customer).
    """

    billing_customer_id: str | None = None
    external_customer: str | None = field(default="?")

    @property
    def external_resolved(self) -> bool:
        return self.external_customer != EXTERNAL_UNKNOWN


EXTERNAL_UNKNOWN = "?"


def billing_customer_of(seats: Iterable[CustomerSeat]) -> str | None:
    """The billing customer as the seat bodies show it: a member's ``customer_id``.

    Members always belong to the billing customer (in legacy organizations too, since
    March 2026), so one seat with a member is enough.
    """
    for seat in seats:
        if seat.member is not None and seat.member.customer_id:
            return seat.member.customer_id
    return None


def holder_customer(seat: CustomerSeat, billing: str | None) -> str | None:
    """The holder's own customer id, or ``None`` when the seat's customer is the billing
    customer (it identifies nobody) or cannot be told apart from it."""
    if not seat.customer_id or billing is None or seat.customer_id == billing:
        return None
    return seat.customer_id


def needs_billing_lookup(seats: Sequence[CustomerSeat], wanted: Occupant) -> bool:
    """Whether deciding needs the subscription's/order's customer read from Polar: some
    active seat has a customer but no member to tell whose it is, and the job names the
    person by something the customer decides (email via ``customer_email``, customer id,
    external id)."""
    if billing_customer_of(seats) is not None:
        return False
    if not (wanted.email or wanted.customer_id or wanted.external_id):
        return False
    return any(seat.status != "revoked" and seat.customer_id and seat.member is None
               for seat in seats)


def needs_external_lookup(
    seats: Sequence[CustomerSeat], wanted: Occupant, context: IdentityContext
) -> bool:
    """Whether the external id named must be resolved to a customer: some active seat
    shows no member external id but has a holder customer of its own (legacy)."""
    if not wanted.external_id or context.external_resolved:
        return False
    billing = context.billing_customer_id or billing_customer_of(seats)
    return any(
        seat.status != "revoked"
        and not (seat.member and seat.member.external_id)
        and holder_customer(seat, billing) is not None
        for seat in seats
    )


class Match(StrEnum):
    HOLDS = "holds"  # what the seat shows agrees with the person named
    OTHER = "other"  # what the seat shows disagrees: someone else holds it
    CONFLICT = "conflict"  # some named fields agree, others disagree
    UNKNOWN = "unknown"  # the seat shows none of the fields named


@dataclass(frozen=True)
class Judgement:
    match: Match
    agree: tuple[str, ...] = ()
    disagree: tuple[str, ...] = ()
    unknown: tuple[str, ...] = ()


def judge_holder(
    seat: CustomerSeat, wanted: Occupant, context: IdentityContext
) -> Judgement:
    """Is this seat held by the person named? Field by field, for both organization modes."""
    billing = context.billing_customer_id or billing_customer_of([seat])
    own_customer = holder_customer(seat, billing)
    member = seat.member
    checks: dict[str, bool | None] = {}
    if wanted.email:
        shown = {address.casefold() for address in addresses_shown(seat, own_customer)}
        checks["email"] = (wanted.email.casefold() in shown) if shown else None
    if wanted.member_id:
        member_id = seat.member_id or (member.id if member else None)
        checks["member_id"] = (member_id == wanted.member_id) if member_id else None
    if wanted.customer_id:
        checks["customer_id"] = (
            (own_customer == wanted.customer_id) if own_customer is not None else None
        )
    if wanted.external_id:
        checks["external_id"] = _external_check(wanted.external_id, member, own_customer,
                                                context)
    agree = tuple(name for name, ok in checks.items() if ok is True)
    disagree = tuple(name for name, ok in checks.items() if ok is False)
    unknown = tuple(name for name, ok in checks.items() if ok is None)
    if agree and disagree:
        match = Match.CONFLICT
    elif agree:
        match = Match.HOLDS
    elif disagree:
        match = Match.OTHER
    else:
        match = Match.UNKNOWN
    return Judgement(match, agree, disagree, unknown)



def _external_check(
    external_id: str, member: Member | None, own_customer: str | None, context: IdentityContext
) -> bool | None:
    if member is not None and member.external_id:
        return bool(member.external_id == external_id)
    if own_customer is None or not context.external_resolved:
        return None
    return own_customer == context.external_customer


def addresses_shown(seat: CustomerSeat, own_customer: str | None) -> set[str]:
    """The addresses a seat shows for its holder (see ``judge_holder``)."""
    member = seat.member
    addresses = [seat.email, member.email if member else None]
    if own_customer is not None or member is not None:
        # Falls back to the customer's address: the holder's only when the seat's customer
        # is the holder's own (with a member it equals member.email anyway).
        addresses.append(seat.customer_email)
    return {address for address in addresses if address}


def occupant_of(seat: CustomerSeat, billing: str | None = None) -> Occupant:
    """The person a seat shows (for the record and the logs)."""
    member = seat.member
    return Occupant(
        email=seat.email or (member.email if member else None) or seat.customer_email,
        member_id=seat.member_id or (member.id if member else None),
        customer_id=holder_customer(seat, billing or billing_customer_of([seat])),
        external_id=member.external_id if member else None,
    )


def occupant_dict(seat: CustomerSeat) -> dict[str, str]:
    return occupant_of(seat).as_dict()
