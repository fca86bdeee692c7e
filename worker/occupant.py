"""Who holds a seat, and whether it is the person being offboarded (pure functions).

Polar reuses a revoked seat row, with the same id, for the next person assigned to the same
subscription or order. The only protection against revoking that new person is to read the
seat list and compare its occupant with the person named by the job before deleting.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from worker.polar import CustomerSeat


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
    def named_by(cls, record: Any) -> Occupant:
        """The person a stored request names (its ``occupant_*`` columns)."""
        return cls(record.occupant_email, record.occupant_member_id,
                   record.occupant_customer_id, record.occupant_external_id)

    def as_dict(self) -> dict[str, str]:
        return {key: value for key, value in asdict(self).items() if value}


def occupant_of(seat: CustomerSeat) -> Occupant:
    """The person a seat shows, merging the flat fields and the newer ``member`` object."""
    member = seat.member
    return Occupant(
        email=seat.email or (member.email if member else None),
        member_id=seat.member_id or (member.id if member else None),
        customer_id=seat.customer_id or (member.customer_id if member else None),
        external_id=member.external_id if member else None,
    )


def mismatched_fields(seen: Occupant, wanted: Occupant) -> list[str]:
    """Fields named by ``wanted`` that the seat does not confirm (missing counts as no)."""
    wrong = []
    if wanted.email and (seen.email or "").casefold() != wanted.email.casefold():
        wrong.append("email")
    for field in ("member_id", "customer_id", "external_id"):
        expected = getattr(wanted, field)
        if expected and getattr(seen, field) != expected:
            wrong.append(field)
    return wrong


class Verdict(StrEnum):
    PROCEED = "proceed"  # held by the person named: DELETE it
    REVOKED_BY_US = "revoked_by_us"  # revoked by this job's own earlier DELETE
    ALREADY_REVOKED = "already_revoked"  # revoked before this job touched it
    MISMATCH = "occupant_mismatch"  # held by someone else: never DELETE
    NOT_FOUND = "not_found"  # no seat with this id in the subscription/order


def judge_seat(
    seat: CustomerSeat | None,
    wanted: Occupant,
    *,
    first_delete_at: datetime | None,
    skew: timedelta,
) -> tuple[Verdict, str]:
    """What to do with a seat read from its subscription/order list, and why."""
    if seat is None:
        return Verdict.NOT_FOUND, "seat is not in the given subscription/order"
    if seat.status == "revoked":
        if revoked_by_this_job(seat, first_delete_at, skew):
            return Verdict.REVOKED_BY_US, "revoked by this job's earlier DELETE"
        return Verdict.ALREADY_REVOKED, "seat was already revoked"
    if not wanted.is_named:
        return Verdict.MISMATCH, "seat is held and the job names nobody to compare with"
    wrong = mismatched_fields(occupant_of(seat), wanted)
    if wrong:
        return Verdict.MISMATCH, "seat is held by someone else (" + ", ".join(wrong) + " differ)"
    return Verdict.PROCEED, "seat is held by the person named"


def revoked_by_this_job(
    seat: CustomerSeat, first_delete_at: datetime | None, skew: timedelta
) -> bool:
    """A revoked seat whose ``revoked_at`` is not older than this job's first DELETE."""
    if first_delete_at is None:
        return False
    if seat.revoked_at is None:
        return True
    return seat.revoked_at >= first_delete_at - skew


def find_seat(seats: Iterable[CustomerSeat], seat_id: str) -> CustomerSeat | None:
    return next((seat for seat in seats if seat.id == seat_id), None)


def find_seat_of(seats: Iterable[CustomerSeat], wanted: Occupant) -> CustomerSeat | None:
    """The active (pending or claimed) seat held by ``wanted``, if any."""
    if not wanted.is_named:
        return None
    for seat in seats:
        if seat.status != "revoked" and not mismatched_fields(occupant_of(seat), wanted):
            return seat
    return None


def occupant_dict(seat: CustomerSeat) -> dict[str, Any]:
    return occupant_of(seat).as_dict()
