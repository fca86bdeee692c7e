"""Subscriptions, orders and their seat rows, seeded and assigned like Polar.

Polar keeps a revoked seat row and hands it (same id) to the next person assigned in the
same subscription or order (customer_seat/service.py `assign_seat`); a row is never
deleted. Seeding is all or nothing: on an error every row, container, customer and member
the call created is undone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from worker.sandbox.config import ContainerKind
from worker.sandbox.errors import SandboxError
from worker.sandbox.people import Customer, Directory, iso, new_id
from worker.sandbox.seats import Holder, Seat, SeatSpec, SeatStatus, place_holder


def canonical(value: str) -> str:
    """A UUID in Polar's canonical form (raises ``ValueError`` for anything else)."""
    return str(uuid.UUID(value))


def maybe_canonical(value: str | None) -> str | None:
    return None if value is None else canonical(value)


def container_key(subscription_id: str | None, order_id: str | None
                  ) -> tuple[ContainerKind, str]:
    if subscription_id is not None:
        return ("subscription", canonical(subscription_id))
    if order_id is not None:
        return ("order", canonical(order_id))
    raise SandboxError.bad_request("Either subscription_id or order_id is required")


def page_of(items: list[dict[str, Any]], page: int, limit: int) -> dict[str, Any]:
    """Polar's `ListResource` (server/polar/kit/pagination.py)."""
    start = (page - 1) * limit
    return {
        "items": items[start : start + limit],
        "pagination": {"total_count": len(items), "max_page": -(-len(items) // limit)},
    }


@dataclass(slots=True)
class Container:
    """A subscription or an order: its billing customer and its seat rows, in order."""

    kind: ContainerKind
    id: str
    billing: Customer
    created_at: datetime
    seat_ids: list[str] = field(default_factory=list)

    @property
    def not_found(self) -> SandboxError:
        return SandboxError.not_found(f"{self.kind.capitalize()} not found")


class SeatRows:
    """Every container and seat row (not thread-safe: the state's lock guards it)."""

    def __init__(self, people: Directory) -> None:
        self._people = people
        self._seats: dict[str, Seat] = {}
        self._containers: dict[tuple[str, str], Container] = {}

    # -- seeding and assignment ------------------------------------------------------------

    def create(self, specs: Sequence[SeatSpec], owner: str | None, now: datetime, *,
               member_model: bool) -> list[Seat]:
        """Create seat rows; seats naming no subscription/order share a new subscription.
        New subscriptions/orders get ``owner`` (created if unknown) or a new customer as
        their billing customer."""
        with self._atomic():
            new_ids = [maybe_canonical(spec.id) for spec in specs]
            self._check_new_ids(new_ids)
            batch_subscription = new_id()
            created: list[Seat] = []
            for spec, seat_id in zip(specs, new_ids, strict=True):
                if spec.subscription_id is None and spec.order_id is None:
                    spec = dataclasses.replace(spec, subscription_id=batch_subscription)
                container = self._container_for_seeding(spec, owner, now)
                seat = self._add_row(container, seat_id, now)
                if spec.status is SeatStatus.REVOKED:
                    seat.revoked_at = spec.revoked_at or now
                else:
                    seat.occupy(self._holder(container, spec, now, member_model),
                                spec.status, now)
                created.append(seat.snapshot())
            return created

    def assign(self, spec: SeatSpec, now: datetime, *, member_model: bool) -> Seat:
        """Assign like Polar: reuse a revoked row of the container (same id) or add a row
        (customer_seat/service.py `assign_seat`)."""
        if spec.status is SeatStatus.REVOKED:
            raise SandboxError.bad_request("An assigned seat is pending or claimed")
        with self._atomic():
            container = self.container(spec.subscription_id, spec.order_id)
            holder = self._holder(container, spec, now, member_model)
            self._check_not_seated(container, holder)
            seat = self._free_row(container) or self._add_row(container, None, now)
            seat.occupy(holder, spec.status, now)
            return seat.snapshot()


    @contextlib.contextmanager
    def _atomic(self) -> Iterator[None]:
        """All or nothing: on an error, undo every row, container, customer and member the
        block created (with the lock held)."""
        undo: list[Callable[[], None]] = []
        self._people.undo = undo
        try:
            yield
        except BaseException:
            for action in reversed(undo):
                action()
            raise
        finally:
            self._people.undo = None

    def _free_row(self, container: Container) -> Seat | None:
        """A revoked row of the container (Polar takes any one; here the first)."""
        rows = (self._seats[i] for i in container.seat_ids)
        return next((s for s in rows if s.status is SeatStatus.REVOKED), None)

    def _check_new_ids(self, new_ids: list[str | None]) -> None:
        given = [i for i in new_ids if i]
        clash = [i for i in given if i in self._seats]
        if clash or len(set(given)) != len(given):
            raise SandboxError(409, "Conflict", f"seat id already exists: {clash[:3]}")

    def _container_for_seeding(
        self, spec: SeatSpec, owner: str | None, now: datetime
    ) -> Container:
        kind, container_id = container_key(spec.subscription_id, spec.order_id)
        container = self._containers.get((kind, container_id))
        if container is None:
            billing = self._people.billing_customer(now, owner)
            container = Container(kind, container_id, billing, now)
            self._containers[(kind, container_id)] = container
            self._remember(lambda: self._drop_container(container))
        elif owner is not None and container.billing.id != owner:
            raise SandboxError(
                409, "Conflict", f"{kind} {container_id} is billed to {container.billing.id}"
            )
        return container

    def _add_row(self, container: Container, seat_id: str | None, now: datetime) -> Seat:
        seat = Seat(seat_id or new_id(), now, now, SeatStatus.REVOKED)
        seat.subscription_id = container.id if container.kind == "subscription" else None
        seat.order_id = container.id if container.kind == "order" else None
        container.seat_ids.append(seat.id)
        self._seats[seat.id] = seat
        self._remember(lambda: self._drop_row(container, seat))
        return seat

    def _drop_row(self, container: Container, seat: Seat) -> None:
        # Undone newest first, so the row is the container's last one.
        if container.seat_ids[-1] == seat.id:
            container.seat_ids.pop()
        else:
            container.seat_ids.remove(seat.id)
        del self._seats[seat.id]

    def _drop_container(self, container: Container) -> None:
        del self._containers[(container.kind, container.id)]

    def _remember(self, action: Callable[[], None]) -> None:
        if self._people.undo is not None:
            self._people.undo.append(action)

    def _holder(self, container: Container, spec: SeatSpec, now: datetime,
                member_model: bool) -> Holder:
        spec = dataclasses.replace(
            spec, customer_id=maybe_canonical(spec.customer_id),
            member_id=maybe_canonical(spec.member_id),
        )
        return place_holder(
            self._people, now, container.billing, spec, member_model
        )

    def _check_not_seated(self, container: Container, holder: Holder) -> None:
        """SeatAlreadyAssigned: the member (or a legacy holder's customer) already has an
        occupied seat of this container."""
        own_customer = holder.customer is not container.billing
        for seat_id in container.seat_ids:
            seat = self._seats[seat_id]
            if seat.status is SeatStatus.REVOKED:
                continue
            same_member = holder.member is not None and seat.member_id == holder.member.id
            same_customer = own_customer and seat.customer_id == holder.customer.id
            if same_member or same_customer:
                who = holder.email or holder.customer.email or holder.customer.id
                raise SandboxError(
                    400, "SeatAlreadyAssigned", f"Seat already assigned to customer {who}"
                )


    # -- lookups ---------------------------------------------------------------------------

    def get(self, seat_id: str) -> Seat | None:
        """The stored row (callers hand out ``snapshot()`` copies)."""
        return self._seats.get(seat_id)

    def all(self) -> list[Seat]:
        return [seat.snapshot() for seat in self._seats.values()]

    def rows_of(self, container: Container) -> list[Seat]:
        return [self._seats[i].snapshot() for i in container.seat_ids]

    def visible_seat(self, seat_id: str, customer_id: str | None) -> Seat:
        """The stored row, if ``customer_id`` (a portal session's customer; None: the
        organization) may see it; else Polar's 404."""
        seat = self._seats.get(seat_id)
        if seat is not None and customer_id is not None:
            container = self._containers[container_key(seat.subscription_id, seat.order_id)]
            if container.billing.id != customer_id:
                seat = None
        if seat is None:
            raise SandboxError.not_found("Seat not found")
        return seat

    def container(self, subscription_id: str | None, order_id: str | None) -> Container:
        key = container_key(subscription_id, order_id)
        found = self._containers.get(key)
        if found is None:
            raise SandboxError.not_found(f"{key[0].capitalize()} not found")
        return found

    def occupant(self, seat: Seat) -> dict[str, str | None]:
        """Who holds `seat`: its ids, address (`customer_email`) and external id (the
        member's, else a legacy holder's own customer's)."""
        container = self._containers[container_key(seat.subscription_id, seat.order_id)]
        external_id = seat.member.external_id if seat.member is not None else None
        if external_id is None and seat.customer not in (None, container.billing):
            assert seat.customer is not None
            external_id = seat.customer.external_id
        return {
            "seat_id": seat.id,
            "email": seat.customer_email,
            "member_id": seat.member_id,
            "customer_id": seat.customer_id,
            "external_id": external_id,
        }

    def container_json(self, kind: ContainerKind, container_id: str,
                       organization_id: str) -> dict[str, Any]:
        """GET /v1/subscriptions/{id} and /v1/orders/{id}: the fields the seat worker reads."""
        found = self._containers.get((kind, canonical(container_id)))
        if found is None:
            raise SandboxError.not_found()
        return self._container_body(found, organization_id)

    def containers_page(self, kind: ContainerKind, customer_ids: Sequence[str],
                        external_customer_ids: Sequence[str], page: int, limit: int,
                        organization_id: str) -> dict[str, Any]:
        """GET /v1/subscriptions/ and /v1/orders/ filtered by customer (id or external id)."""
        wanted = {canonical(i) for i in customer_ids}
        found = [
            c
            for c in self._containers.values()
            if c.kind == kind
            and (not customer_ids or c.billing.id in wanted)
            and (not external_customer_ids or c.billing.external_id in external_customer_ids)
        ]
        found.sort(key=lambda c: c.created_at, reverse=True)
        return page_of([self._container_body(c, organization_id) for c in found], page, limit)

    @staticmethod
    def _container_body(container: Container, organization_id: str) -> dict[str, Any]:
        return {
            "created_at": iso(container.created_at),
            "modified_at": None,
            "id": container.id,
            "status": "active" if container.kind == "subscription" else "paid",
            "customer_id": container.billing.id,
            "seats": len(container.seat_ids),
            "metadata": {},
            "customer": container.billing.to_json(organization_id),
        }
