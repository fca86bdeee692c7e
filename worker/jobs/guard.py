"""The occupant guard: read who holds a seat, then judge it (``worker.decisions.occupant``).

Reads go through the shared seat lists (``worker.jobs.seatlists``), plus the identity
lookups the seat bodies cannot answer (a billing customer, the customer behind an external
id) only when the decision needs them. What a verdict means for the request is a
``Finished`` outcome: the guard never dresses a verdict up as an HTTP error.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from pydantic import SecretStr

from worker.decisions.identity import (
    IdentityContext,
    Occupant,
    billing_customer_of,
    needs_billing_lookup,
    needs_external_lookup,
    occupant_dict,
)
from worker.decisions.occupant import Decision, SeatIndex, Verdict, decide, locate_in
from worker.decisions.outcomes import State
from worker.jobs.outcome import Finished
from worker.polar.client import Mode
from worker.polar.seats import CustomerSeat, SeatContainer, container_of, container_of_snapshot
from worker.store.models import RevocationRequest


class GuardStore(Protocol):
    def get(self, request_id: str) -> RevocationRequest | None: ...

    def last_revocation_of_seat(
        self, seat_id: str, *, excluding: str
    ) -> RevocationRequest | None: ...

    def last_snapshot_of_seat(self, seat_id: str) -> dict[str, Any] | None: ...


class SeatListReader(Protocol):
    """``worker.jobs.seatlists.SeatLists``: seat lists and identity reads, shared per batch."""

    def read(self, container: SeatContainer, *, mode: Mode, portal_token: SecretStr | None,
             share_in: str | None) -> list[CustomerSeat]: ...

    def index_of(self, seats: list[CustomerSeat], billing: str | None) -> SeatIndex: ...

    def billing_customer(self, container: SeatContainer, *, share_in: str | None
                         ) -> str | None: ...

    def customer_by_external_id(self, external_id: str, *, share_in: str | None,
                                after: float | None = None) -> str | None: ...


@dataclass(frozen=True)
class Access:
    """How this request talks to Polar: as the organization, or as a customer session."""

    mode: Mode
    portal_token: SecretStr | None = None


VERDICT_STATES = {
    Verdict.REVOKED_BY_US: State.REVOKED,
    Verdict.ALREADY_REVOKED: State.ALREADY_REVOKED,
    Verdict.MISMATCH: State.OCCUPANT_MISMATCH,
    Verdict.NO_ACTIVE_SEAT: State.NO_ACTIVE_SEAT,
    Verdict.REVIEW: State.NEEDS_REVIEW,
    Verdict.NOT_FOUND: State.NEEDS_REVIEW,
}


def finished(decision: Decision) -> Finished:
    """The terminal outcome of a verdict that is not a DELETE."""
    seat = decision.seat
    seen = occupant_dict(seat) if seat is not None and seat.status != "revoked" else None
    return Finished(VERDICT_STATES[decision.verdict], decision.why, seat, seen,
                    decision.verified)


class Guard:
    def __init__(self, seat_lists: SeatListReader, store: GuardStore, *,
                 skew: timedelta) -> None:
        self.seat_lists = seat_lists
        self.store = store
        self.skew = skew

    def container(self, record: RevocationRequest) -> SeatContainer | None:
        """The subscription/order whose seat list tells who holds the seat, if it can be read.

        A seat id alone is guarded through the subscription/order of an earlier snapshot of
        that seat (the producer refuses one with none unless the request opts out of the
        guard): a seat this system revoked before and that is held again was reassigned and
        must not be revoked on a seat id alone.
        """
        container = container_of(record)
        if container is not None or record.seat_id is None:
            return container
        return container_of_snapshot(self.store, record.seat_id)

    def share_key(self, record: RevocationRequest) -> str | None:
        """Under which key this request may share Polar reads: its batch, or for a seat of a
        person request the key its parent's discovery read under (its batch, else itself)."""
        if record.batch_id or not record.parent_id:
            return record.batch_id
        parent = self.store.get(record.parent_id)
        return (parent.batch_id or parent.id) if parent is not None else None

    def locate(self, record: RevocationRequest, container: SeatContainer,
               access: Access) -> Decision:
        """The seat the person named holds in ``container`` (a request without a seat id)."""
        wanted = Occupant.named_by(record)
        seats = self.seat_lists.read(container, mode=access.mode,
                                     portal_token=access.portal_token,
                                     share_in=self.share_key(record))
        context = self._context(record, container, seats, wanted)
        return locate_in(self.seat_lists.index_of(seats, context.billing_customer_id), wanted,
                         context)

    def judge(
        self, record: RevocationRequest, container: SeatContainer, seat_id: str,
        access: Access, *, first_delete_at: datetime | None, share_in: str | None,
    ) -> Decision:
        """Whether ``seat_id`` may be revoked for this request, from a fresh (or, with
        ``share_in``, the batch's shared) read of its seat list."""
        wanted = Occupant.named_by(record)
        seats = self.seat_lists.read(container, mode=access.mode,
                                     portal_token=access.portal_token, share_in=share_in)
        context = self._context(record, container, seats, wanted)
        decision = decide(
            seats, seat_id, wanted, context,
            first_delete_at=first_delete_at, skew=self.skew,
            reassigned_after_ours=self._revoked_here_before(record, wanted),
            index=self.seat_lists.index_of(seats, context.billing_customer_id),
        )
        return replace(decision, billing_customer_id=context.billing_customer_id,
                       active_seats=sum(seat.status != "revoked" for seat in seats))

    def _context(
        self, record: RevocationRequest, container: SeatContainer,
        seats: list[CustomerSeat], wanted: Occupant,
    ) -> IdentityContext:
        """What the seat bodies cannot show, read from Polar only when the decision needs
        it (cached per batch like the seat lists)."""
        context = IdentityContext(billing_customer_id=billing_customer_of(seats))
        if needs_billing_lookup(seats, wanted):
            context = replace(context, billing_customer_id=self.seat_lists.billing_customer(
                container, share_in=self.share_key(record)))
        if wanted.external_id and needs_external_lookup(seats, wanted, context):
            context = replace(context, external_customer=self.seat_lists
                              .customer_by_external_id(wanted.external_id,
                                                       share_in=self.share_key(record)))
        return context

    def _revoked_here_before(self, record: RevocationRequest, wanted: Occupant) -> bool:
        if wanted.is_named or record.seat_id is None:
            return False
        return self.store.last_revocation_of_seat(record.seat_id, excluding=record.id) is not None
