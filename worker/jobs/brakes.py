"""The breaker's gate in the revocation seam: which customer a seat belongs to, whether an
operator released the request, and the fleet-wide reservation (``worker.jobs.breaker``).

``SeatRevocation`` asks ``admit`` once per request, after the guard said the seat may go
and before its first DELETE; a hold comes back as ``Held`` and the request is stored
``held`` with the scope it hit.
"""

from __future__ import annotations

from typing import Protocol

from worker.decisions.breaker import Check
from worker.decisions.occupant import Decision
from worker.jobs.breaker import Breaker
from worker.jobs.runtime import Runtime
from worker.jobs.seatlists import SeatLists
from worker.polar.seats import SeatContainer
from worker.store.models import RevocationRequest
from worker.store.reader import RecordReader


class Held(Exception):
    """The breaker holds this revocation (raised before any DELETE)."""

    def __init__(self, check: Check) -> None:
        super().__init__(check.describe())
        self.check = check


class Brakes(Protocol):
    def admit(self, record: RevocationRequest, container: SeatContainer | None,
              decision: Decision | None) -> Check: ...


def released(store: RecordReader, record: RevocationRequest) -> bool:
    """An operator released it at the breaker (it was held: ``held_scope`` stays), or it is
    a row of a batch a second identity approved: it goes, and counts."""
    if record.held_scope is not None:
        return True
    return bool(record.batch_id) and store.batch_approval(str(record.batch_id)) == "approved"


class RedisBrakes:
    def __init__(self, breaker: Breaker, store: RecordReader, seat_lists: SeatLists) -> None:
        self.breaker = breaker
        self.store = store
        self.seat_lists = seat_lists

    @classmethod
    def of(cls, rt: Runtime) -> RedisBrakes:
        return cls(Breaker.from_settings(rt.settings, rt.redis), rt.store, rt.seat_lists)

    def admit(self, record: RevocationRequest, container: SeatContainer | None,
              decision: Decision | None) -> Check:
        customer = self._customer(container, decision)
        if customer is not None and container is not None and decision is not None \
                and decision.active_seats is not None:
            self.breaker.observe(customer, container.cache_name, decision.active_seats)
        return self.breaker.reserve(record.id, customer, forced=released(self.store, record))

    def _customer(self, container: SeatContainer | None,
                  decision: Decision | None) -> str | None:
        """The Polar customer the seat belongs to: the billing customer of its
        subscription/order (read once per container, through the rate limiter, when the
        seat bodies do not show it). None for a seat id with no known container."""
        if decision is not None and decision.billing_customer_id:
            return decision.billing_customer_id
        if container is None or not self.breaker.enabled:
            return None
        owner = self.breaker.owner(container.cache_name)
        if owner is None:
            owner = self.seat_lists.billing_customer(container, share_in=None)
            if owner is not None:
                self.breaker.remember_owner(container.cache_name, owner)
        return owner
