"""Seat lists and identity reads, read once per batch and shared by every worker.

A batch often holds many people of one subscription. Reading its seat list once and
sharing the result in Redis for a short time keeps Polar calls per row close to one: the
list resolves rows that name a person but no seat, and serves as the occupant guard for
rows that name both. The same goes for what the seat bodies cannot show (a
subscription's billing customer, the customer behind an external id; see
``worker.occupant``). One worker fills each cache entry (others wait on a Redis lock);
retries after an ambiguous failure always read afresh.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Protocol

from pydantic import SecretStr
from redis import Redis

from worker.polar import CustomerSeat, Mode, PolarClient, SeatsList

CACHE_SECONDS = 30


class SeatLists:
    def __init__(
        self, redis: Redis, key_prefix: str, polar: PolarClient, ttl: int = CACHE_SECONDS
    ) -> None:
        self._redis = redis
        self._prefix = key_prefix
        self._polar = polar
        self._ttl = ttl

    def read(
        self,
        container: dict[str, str],
        *,
        mode: Mode,
        portal_token: SecretStr | None,
        share_in: str | None,
    ) -> list[CustomerSeat]:
        """The seats of ``container``; cached under ``share_in`` (a batch id) when given."""
        (kind, ident), = container.items()
        raw = self._shared(
            f"{kind}:{ident}", share_in,
            lambda: self._fetch(container, mode, portal_token).model_dump_json(),
        )
        return SeatsList.model_validate_json(raw).seats

    def billing_customer(self, container: dict[str, str], *, share_in: str | None) -> str | None:
        """The subscription's/order's own customer (``None`` if Polar shows none)."""
        (kind, ident), = container.items()
        raw = self._shared(
            f"owner:{kind}:{ident}", share_in,
            lambda: json.dumps(self._polar.billing_customer(**container)),
        )
        value = json.loads(raw)
        return str(value) if value is not None else None

    def customer_by_external_id(self, external_id: str, *, share_in: str | None) -> str | None:
        """The customer with this external id (``None``: Polar has none)."""
        raw = self._shared(
            f"external:{external_id}", share_in,
            lambda: json.dumps(self._polar.customer_by_external_id(external_id)),
        )
        value = json.loads(raw)
        return str(value) if value is not None else None

    def _shared(self, name: str, share_in: str | None, fetch: Callable[[], str]) -> str:
        """``fetch()`` once per ``share_in`` (a batch id) across every worker; uncached
        without one."""
        if share_in is None:
            return fetch()
        key = f"{self._prefix}:{share_in}:{name}"
        cached = self._redis.get(key)
        if cached is None:
            with self._redis.lock(f"{key}:fill", timeout=30, blocking_timeout=30):
                cached = self._redis.get(key)
                if cached is None:
                    cached = fetch().encode()
                    self._redis.set(key, cached, ex=self._ttl)
        return cached.decode() if isinstance(cached, bytes) else str(cached)

    def _fetch(
        self, container: dict[str, str], mode: Mode, portal_token: SecretStr | None
    ) -> SeatsList:
        return self._polar.list_seats(**container, mode=mode, portal_token=portal_token)


def container_of(record: Any) -> dict[str, str] | None:
    if record.subscription_id:
        return {"subscription_id": record.subscription_id}
    if record.order_id:
        return {"order_id": record.order_id}
    return None


class SnapshotSource(Protocol):
    def last_snapshot_of_seat(self, seat_id: str) -> dict[str, Any] | None: ...


def container_of_snapshot(store: SnapshotSource, seat_id: str) -> dict[str, str] | None:
    """The subscription/order of a seat, from the newest snapshot this system stored."""
    snapshot = store.last_snapshot_of_seat(seat_id) or {}
    if snapshot.get("subscription_id"):
        return {"subscription_id": str(snapshot["subscription_id"])}
    if snapshot.get("order_id"):
        return {"order_id": str(snapshot["order_id"])}
    return None
