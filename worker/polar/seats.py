"""The bodies Polar answers with: ``CustomerSeat``, the seat list, and the customer,
subscription, order and member pages the identity rules read. Unknown fields are kept."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

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
