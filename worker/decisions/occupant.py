"""Whether to revoke a seat, from its subscription's/order's seat list (pure functions).

Polar reuses a revoked seat row, with the same id, for the next person assigned to the same
subscription or order, so the only protection against revoking that new person is to read
the seat list and compare its occupant with the person named before deleting. Who a seat
shows as its holder, field by field, is ``worker.decisions.identity``; this module indexes
a list by those fields and decides one request's ``Verdict``. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from worker.decisions.identity import (
    IdentityContext,
    Judgement,
    Match,
    Occupant,
    addresses_shown,
    holder_customer,
    judge_holder,
)
from worker.polar.seats import CustomerSeat


class SeatIndex:
    """The active seats of one list by every field a person can be named by.

    Deciding for one person then looks only at the seats that could be theirs — those
    that show a named field with the person's value, or cannot show it — instead of
    judging every seat of the list (a 10,000-seat subscription made a batch quadratic).
    A seat left out is one that shows every named field with another value: ``OTHER`` for
    ``judge_holder`` (a property test checks the two agree). Built for one billing
    customer, as ``judge_holder`` reads the seats with ``IdentityContext.billing_customer_id``.
    """

    def __init__(self, seats: Sequence[CustomerSeat], billing: str | None) -> None:
        self.seats = list(seats)
        self.billing = billing
        self.by_id = {seat.id: seat for seat in self.seats}
        self._position = {seat.id: i for i, seat in enumerate(self.seats)}
        self._hits: dict[tuple[str, str], list[CustomerSeat]] = {}
        self._blind: dict[str, list[CustomerSeat]] = {}
        for seat in self.seats:
            if seat.status != "revoked":
                self._add(seat)

    def _add(self, seat: CustomerSeat) -> None:
        member = seat.member
        own = holder_customer(seat, self.billing or (member.customer_id if member else None))
        for address in addresses_shown(seat, own):
            self._key("email", address.casefold(), seat)
        if not addresses_shown(seat, own):
            self._blind.setdefault("email", []).append(seat)
        member_id = seat.member_id or (member.id if member else None)
        if member_id:
            self._key("member_id", member_id, seat)
        else:
            self._blind_in("member_id", seat)
        if own:
            self._key("customer_id", own, seat)
        else:
            self._blind_in("customer_id", seat)
        if member is not None and member.external_id:
            self._key("external_id", member.external_id, seat)
        elif own is not None:
            self._key("external_customer", own, seat)  # decided by the customer read
            self._blind_in("external_unresolved", seat)
        else:
            self._blind_in("external_id", seat)

    def _key(self, field_name: str, value: str, seat: CustomerSeat) -> None:
        self._hits.setdefault((field_name, value), []).append(seat)

    def _blind_in(self, field_name: str, seat: CustomerSeat) -> None:
        self._blind.setdefault(field_name, []).append(seat)

    def candidates(
        self, wanted: Occupant, context: IdentityContext, *, excluding: str | None = None
    ) -> list[CustomerSeat]:
        """Active seats that may be the person's (in list order)."""
        found: dict[str, CustomerSeat] = {}

        def take(seats: Iterable[CustomerSeat]) -> None:
            found.update((seat.id, seat) for seat in seats)

        for field_name, value in (("email", wanted.email and wanted.email.casefold()),
                                  ("member_id", wanted.member_id),
                                  ("customer_id", wanted.customer_id)):
            if value:
                take(self._hits.get((field_name, value), ()))
                take(self._blind.get(field_name, ()))
        if wanted.external_id:
            take(self._hits.get(("external_id", wanted.external_id), ()))
            take(self._blind.get("external_id", ()))
            if not context.external_resolved:
                take(self._blind.get("external_unresolved", ()))
            elif context.external_customer is not None:
                take(self._hits.get(("external_customer", context.external_customer), ()))
        found.pop(excluding or "", None)
        return sorted(found.values(), key=lambda seat: self._position[seat.id])


class Verdict(StrEnum):
    PROCEED = "proceed"  # held by the person named (or, naming nobody, by anyone): DELETE
    REVOKED_BY_US = "revoked_by_us"  # revoked by this job's own earlier DELETE
    ALREADY_REVOKED = "already_revoked"  # revoked before this job touched it
    MISMATCH = "occupant_mismatch"  # held by someone else; the person holds no seat there
    NO_ACTIVE_SEAT = "no_active_seat"  # the person holds no active seat there
    REVIEW = "needs_review"  # cannot be decided: nothing is deleted
    NOT_FOUND = "not_found"  # no seat with this id in the subscription/order


@dataclass(frozen=True)
class Decision:
    """What to do, on which seat, and whether the end state is proven by the list."""

    verdict: Verdict
    why: str
    seat: CustomerSeat | None = None  # the seat to DELETE, or the one judged
    # For a finished verdict: the list shows the person holds no active seat there
    # (None when nobody is named, so there is nobody to check for).
    verified: bool | None = None
    # The Polar customer the seat list belongs to (its billing customer, when known) and
    # its seats not revoked: what the circuit breaker counts against.
    billing_customer_id: str | None = None
    active_seats: int | None = None


def decide(
    seats: Sequence[CustomerSeat],
    seat_id: str | None,
    wanted: Occupant,
    context: IdentityContext,
    *,
    first_delete_at: datetime | None,
    skew: timedelta,
    reassigned_after_ours: bool = False,
    index: SeatIndex | None = None,
) -> Decision:
    """The decision for one request from its subscription's/order's seat list.

    ``seat_id`` is the seat the producer named (``None``: find the person's seat). The goal
    is that the person named holds no active seat there: a stale seat id (now someone
    else's) gives way to the seat the person holds, and "someone else's" counts as done
    only when the list proves the person holds none. ``reassigned_after_ours``: this
    system revoked this seat before, so an active occupant now is a newcomer. ``index``:
    the list's ``SeatIndex`` when the caller keeps one (built here otherwise).
    """
    if index is None or index.billing != context.billing_customer_id:
        index = SeatIndex(seats, context.billing_customer_id)
    named = index.by_id.get(seat_id) if seat_id is not None else None
    if seat_id is not None and named is None:
        return Decision(Verdict.NOT_FOUND, f"seat {seat_id} is not in the given "
                        "subscription/order: check both ids")
    if not wanted.is_named:
        assert named is not None
        return _decide_anonymous(named, first_delete_at, skew, reassigned_after_ours)
    if named is not None and named.status != "revoked":
        judgement = judge_holder(named, wanted, context)
        if judgement.match is Match.HOLDS:
            return _confirm_only_seat(index, named, wanted, context)
        if judgement.match is not Match.OTHER:
            return Decision(Verdict.REVIEW, _review_text(named, judgement), named)
    found = locate_in(index, wanted, context)
    if found.verdict is not Verdict.NO_ACTIVE_SEAT:
        return found
    if named is None:
        return found
    if named.status == "revoked":
        if revoked_by_this_job(named, first_delete_at, skew):
            return Decision(Verdict.REVOKED_BY_US, "revoked by this job's earlier DELETE",
                            named, verified=True)
        return Decision(Verdict.ALREADY_REVOKED, "seat was already revoked; the person "
                        "holds no other active seat there", named, verified=True)
    return Decision(Verdict.MISMATCH, "seat is held by someone else now; the person holds "
                    "no active seat in this subscription/order", named, verified=True)


def _decide_anonymous(
    seat: CustomerSeat, first_delete_at: datetime | None, skew: timedelta, reassigned: bool
) -> Decision:
    if seat.status == "revoked":
        if revoked_by_this_job(seat, first_delete_at, skew):
            return Decision(Verdict.REVOKED_BY_US, "revoked by this job's earlier DELETE", seat)
        return Decision(Verdict.ALREADY_REVOKED, "seat was already revoked", seat)
    if reassigned:
        return Decision(Verdict.MISMATCH, "seat was reassigned after this system revoked "
                        "it; name the occupant to revoke", seat)
    return Decision(Verdict.PROCEED, "the job names a seat, not a person", seat)


def _confirm_only_seat(
    index: SeatIndex, seat: CustomerSeat, wanted: Occupant, context: IdentityContext,
) -> Decision:
    """The named seat is the person's: make sure no other active seat is (or may be)."""
    rest = _judge_all(index.candidates(wanted, context, excluding=seat.id), wanted, context)
    if rest.verdict is Verdict.NO_ACTIVE_SEAT:
        return Decision(Verdict.PROCEED, "seat is held by the person named", seat,
                        verified=True)
    if rest.verdict is Verdict.PROCEED and rest.seat is not None:
        return Decision(Verdict.REVIEW, f"the person named holds seats {seat.id} and "
                        f"{rest.seat.id} in this subscription/order: check the fields "
                        "that name them and revoke each by seat id", seat)
    return Decision(Verdict.REVIEW, rest.why, seat)


def locate(
    seats: Sequence[CustomerSeat], wanted: Occupant, context: IdentityContext
) -> Decision:
    """The one active seat the person holds, ``NO_ACTIVE_SEAT``, or ``REVIEW`` when several
    match, the fields contradict each other, or a seat cannot be judged."""
    return locate_in(SeatIndex(seats, context.billing_customer_id), wanted, context)


def locate_in(index: SeatIndex, wanted: Occupant, context: IdentityContext) -> Decision:
    """``locate`` over an indexed list: only the seats that may be the person's are judged."""
    return _judge_all(index.candidates(wanted, context), wanted, context)


def _judge_all(
    seats: Sequence[CustomerSeat], wanted: Occupant, context: IdentityContext
) -> Decision:
    holds: list[CustomerSeat] = []
    for seat in seats:
        if seat.status == "revoked":
            continue
        judgement = judge_holder(seat, wanted, context)
        if judgement.match is Match.HOLDS:
            holds.append(seat)
        elif judgement.match is not Match.OTHER:
            return Decision(Verdict.REVIEW, _review_text(seat, judgement), seat)
    if len(holds) > 1:
        ids = ", ".join(seat.id for seat in holds)
        return Decision(Verdict.REVIEW, f"{len(holds)} active seats match the person named "
                        f"({ids}): name them by member id, or revoke each by seat id")
    if holds:
        return Decision(Verdict.PROCEED, "seat is held by the person named", holds[0],
                        verified=True)
    return Decision(Verdict.NO_ACTIVE_SEAT, "the person holds no active seat there",
                    verified=True)


def _review_text(seat: CustomerSeat, judgement: Judgement) -> str:
    if judgement.match is Match.CONFLICT:
        return (f"seat {seat.id}: {', '.join(judgement.agree)} match the person named but "
                f"{', '.join(judgement.disagree)} differ — check which fields of the request "
                "are right, fix them and retry")
    hints = []
    if "customer_id" in judgement.unknown:
        hints.append("a customer_id names the purchaser (billing customer) in organizations "
                     "with the member model and identifies nobody: name the person by "
                     "email, member id or external id")
    if "external_id" in judgement.unknown:
        hints.append("the external id is neither on the seat's member nor resolvable to the "
                     "seat's customer")
    if "email" in judgement.unknown or "member_id" in judgement.unknown:
        hints.append("the seat shows no address or member to compare with")
    return (f"cannot tell whether the person named holds seat {seat.id} "
            f"({', '.join(judgement.unknown)} not shown): " + "; ".join(hints))


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


# ``worker.intake`` (requests, dryrun) still imports the identity rules from here.
__all__ = [
    "Decision", "SeatIndex", "Verdict", "decide", "find_seat", "locate", "locate_in",
    "revoked_by_this_job",
]
