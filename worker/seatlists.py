"""Seat lists of a subscription/order, read once per batch and shared by every worker.

A batch often holds many people of one subscription. Reading its seat list once and
sharing the result in Redis for a short time keeps Polar calls per row close to one: the
list resolves rows that name a person but no seat, and serves as the occupant guard for
rows that name both. One worker fills the cache (others wait on a Redis lock); retries
after an ambiguous failure always read afresh.
"""

from __future__ import annotations

import json
from typing import Any

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
        if share_in is None:
            return self._fetch(container, mode, portal_token).seats
        (kind, ident), = container.items()
        key = f"{self._prefix}:{share_in}:{kind}:{ident}"
        cached = self._redis.get(key)
        if cached is None:
            with self._redis.lock(f"{key}:fill", timeout=30, blocking_timeout=30):
                cached = self._redis.get(key)
                if cached is None:
                    listing = self._fetch(container, mode, portal_token)
                    cached = listing.model_dump_json().encode()
                    self._redis.set(key, cached, ex=self._ttl)
        return SeatsList.model_validate(json.loads(cached)).seats

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
