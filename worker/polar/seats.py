"""The bodies Polar answers with: ``CustomerSeat``, the seat list, and the customer,
subscription, order and member pages the identity rules read. Unknown fields are kept.

``SeatContainer`` names what holds a seat list (a subscription or an order); a request or a
stored snapshot says which (``container_of``, ``container_of_snapshot``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict

ContainerKind = Literal["subscription", "order"]


class Member(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str | None = None
    customer_id: str | None = None
    email: str | None = None
    name: str | None = None
    external_id: str | None = None
    role: str | None = None


class CustomerSeat(BaseModel):
    """A seat as Polar returns it. Only id, status and the two timestamps are required."""

    model_config = ConfigDict(extra="allow")

    id: str
    status: str
    created_at: datetime
    modified_at: datetime | None = None
    subscription_id: str | None = None
    order_id: str | None = None
    customer_id: str | None = None
    member_id: str | None = None
    email: str | None = None
    customer_email: str | None = None
    claimed_at: datetime | None = None
    revoked_at: datetime | None = None
    seat_metadata: dict[str, Any] | None = None
    member: Member | None = None

    def snapshot(self) -> dict[str, Any]:
        """JSON-ready copy for the record store, unknown fields included."""
        return self.model_dump(mode="json")


class SeatsList(BaseModel):
    model_config = ConfigDict(extra="allow")

    seats: list[CustomerSeat]
    available_seats: int | None = None
    total_seats: int | None = None


class CustomerRef(BaseModel):
    """The part of a customer, subscription or order body the identity rules need."""

    model_config = ConfigDict(extra="allow")

    id: str
    customer_id: str | None = None
    external_id: str | None = None


class Pagination(BaseModel):
    model_config = ConfigDict(extra="allow")

    total_count: int = 0
    max_page: int = 0


class ContainerPage(BaseModel):
    """One page of ``GET /v1/subscriptions/`` or ``/v1/orders/``: Polar's ``ListResource``
    (``server/polar/kit/pagination.py``: ``items`` and ``pagination.max_page``)."""

    model_config = ConfigDict(extra="allow")

    items: list[CustomerRef]
    pagination: Pagination


class MemberPage(BaseModel):
    """One page of ``GET /v1/members/`` (a ``ListResource`` of members)."""

    model_config = ConfigDict(extra="allow")

    items: list[Member]
    pagination: Pagination


@dataclass(frozen=True)
class SeatContainer:
    """A subscription or an order: what holds a seat list."""

    kind: ContainerKind
    id: str

    @property
    def subscription_id(self) -> str | None:
        return self.id if self.kind == "subscription" else None

    @property
    def order_id(self) -> str | None:
        return self.id if self.kind == "order" else None

    def columns(self) -> dict[str, str]:
        """As a request's column (``subscription_id`` or ``order_id``)."""
        return {f"{self.kind}_id": self.id}

    @property
    def cache_name(self) -> str:
        """Its name in the shared cache (``subscription_id:…``, as before it had a type)."""
        return f"{self.kind}_id:{self.id}"


class NamesContainer(Protocol):
    """A request (stored or as submitted) that may name a subscription or an order."""

    @property
    def subscription_id(self) -> str | None: ...

    @property
    def order_id(self) -> str | None: ...


def container_of(request: NamesContainer) -> SeatContainer | None:
    """The subscription/order a request names (the subscription when it names both)."""
    if request.subscription_id:
        return SeatContainer("subscription", request.subscription_id)
    if request.order_id:
        return SeatContainer("order", request.order_id)
    return None


class SnapshotSource(Protocol):
    def last_snapshot_of_seat(self, seat_id: str) -> dict[str, Any] | None: ...


def container_of_snapshot(store: SnapshotSource, seat_id: str) -> SeatContainer | None:
    """The subscription/order of a seat, from the newest snapshot this system stored."""
    snapshot = store.last_snapshot_of_seat(seat_id) or {}
    if snapshot.get("subscription_id"):
        return SeatContainer("subscription", str(snapshot["subscription_id"]))
    if snapshot.get("order_id"):
        return SeatContainer("order", str(snapshot["order_id"]))
    return None
