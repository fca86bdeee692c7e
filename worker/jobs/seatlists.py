"""Seat lists and identity reads, read once per batch and shared by every worker (Redis).

A batch often holds many people of one subscription. Reading its seat list once and
sharing the result in Redis for a short time keeps Polar calls per row close to one: the
list resolves rows that name a person but no seat, and serves as the occupant guard for
rows that name both. The same goes for what the seat bodies cannot show (a
subscription's billing customer, the customer behind an external id; see
``worker.decisions.occupant``). One worker fills each cache entry (others wait on a Redis lock);
retries after an ambiguous failure always read afresh. Each worker process also keeps the
parsed list and its ``SeatIndex`` while the shared entry stays the same, so a row of a
10,000-seat subscription neither re-parses the list nor judges every seat of it.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from pydantic import SecretStr
from redis import Redis

from worker.decisions.occupant import SeatIndex
from worker.polar.client import Mode, PolarClient
from worker.polar.seats import ContainerKind, CustomerSeat, SeatContainer, SeatsList

CACHE_SECONDS = 30
PARSED_LISTS = 16  # per process: parsed lists (and their indexes) kept while unchanged


class SeatLists:
    def __init__(
        self, redis: Redis, key_prefix: str, polar: PolarClient, ttl: int = CACHE_SECONDS
    ) -> None:
        self._redis = redis
        self._prefix = key_prefix
        self._polar = polar
        self._ttl = ttl
        self._parsed: OrderedDict[str, tuple[bytes, list[CustomerSeat]]] = OrderedDict()
        self._indexes: OrderedDict[tuple[int, str | None],
                                   tuple[list[CustomerSeat], SeatIndex]] = OrderedDict()

    def read(
        self,
        container: SeatContainer,
        *,
        mode: Mode,
        portal_token: SecretStr | None,
        share_in: str | None,
    ) -> list[CustomerSeat]:
        """The seats of ``container``; cached under ``share_in`` (a batch id) when given.

        The same shared entry gives the same list object, so ``index_of`` can keep its
        index."""
        if share_in is None:
            return self._fetch(container, mode, portal_token).seats
        key = self._key(share_in, container.cache_name)
        version = self._redis.get(f"{key}:v")
        parsed = self._parsed.get(key)
        if version is not None and parsed is not None and parsed[0] == version:
            self._parsed.move_to_end(key)
            return parsed[1]
        raw = self._shared(
            container.cache_name, share_in,
            lambda: self._fetch(container, mode, portal_token).model_dump_json(),
        )
        seats = SeatsList.model_validate_json(raw).seats
        version = self._redis.get(f"{key}:v")
        if version is not None:
            _remember(self._parsed, key, (version, seats))
        return seats

    def index_of(self, seats: list[CustomerSeat], billing: str | None) -> SeatIndex:
        """The ``SeatIndex`` of a list ``read`` returned, built once per list and billing
        customer."""
        slot = (id(seats), billing)
        kept = self._indexes.get(slot)
        if kept is not None and kept[0] is seats:
            return kept[1]
        index = SeatIndex(seats, billing)
        _remember(self._indexes, slot, (seats, index))  # holds `seats`: its id stays its own
        return index

    def billing_customer(self, container: SeatContainer, *, share_in: str | None
                         ) -> str | None:
        """The subscription's/order's own customer (``None`` if Polar shows none)."""
        raw = self._shared(
            f"owner:{container.cache_name}", share_in,
            lambda: json.dumps(self._polar.billing_customer(
                subscription_id=container.subscription_id, order_id=container.order_id)),
        )
        value = json.loads(raw)
        return str(value) if value is not None else None

    def customer_by_external_id(self, external_id: str, *, share_in: str | None,
                                after: float | None = None) -> str | None:
        """The customer with this external id (``None``: Polar has none)."""
        raw = self._read(
            f"external:{external_id}", share_in, after,
            lambda: json.dumps(self._polar.customer_by_external_id(external_id)),
        )
        value = json.loads(raw)
        return str(value) if value is not None else None

    def read_after(
        self, container: SeatContainer, *, share_in: str | None, after: float
    ) -> list[CustomerSeat]:
        """The seats of ``container`` as read at ``after`` (epoch seconds) or later: a read
        another worker shared under ``share_in`` serves only if it started no earlier."""
        raw = self._fresh(container.cache_name, share_in, after,
                          lambda: self._fetch(container, "organization", None)
                          .model_dump_json())
        return SeatsList.model_validate_json(raw).seats

    def containers(
        self, kind: ContainerKind, *, customer_id: str | None,
        external_customer_id: str | None, share_in: str | None, after: float | None = None,
    ) -> list[tuple[str, str | None, bool]]:
        """(id, billing customer id, may have seats) of every subscription or order in a
        scope (a customer by id or external id; the organization when both are ``None``).
        A body whose ``seats`` is null or 0 is not seat-based: it has no seat list. With
        ``after``, only a listing started at that time or later serves."""
        name = f"containers:{kind}:{customer_id or ''}:{external_customer_id or ''}"
        raw = self._read(
            name, share_in, after,
            lambda: json.dumps([
                [ref.id, ref.customer_id, getattr(ref, "seats", 1) not in (None, 0)]
                for ref in self._polar.list_containers(
                    kind, customer_id=customer_id,
                    external_customer_id=external_customer_id)]),
        )
        return [(str(ident), str(owner) if owner else None, bool(seated))
                for ident, owner, seated in json.loads(raw)]

    def members_by_external_id(
        self, customer_id: str, external_id: str, *, share_in: str | None,
        after: float | None = None,
    ) -> list[str]:
        """Ids of the customer's members with this external id (the members list is read
        once per customer and ``share_in``)."""
        raw = self._read(
            f"members:{customer_id}", share_in, after,
            lambda: json.dumps([[m.id, m.external_id]
                                for m in self._polar.list_members(customer_id)]),
        )
        return [str(ident) for ident, ext in json.loads(raw) if ident and ext == external_id]

    def customer_exists(self, customer_id: str, *, share_in: str | None,
                        after: float | None = None) -> bool:
        raw = self._read(f"customer:{customer_id}", share_in, after,
                         lambda: json.dumps(self._polar.customer_exists(customer_id)))
        return bool(json.loads(raw))

    def _read(self, name: str, share_in: str | None, after: float | None,
              fetch: Callable[[], str]) -> str:
        """``_shared``, or with ``after`` only a read started then or later (``_fresh``)."""
        if after is None:
            return self._shared(name, share_in, fetch)
        return self._fresh(name, share_in, after, fetch)

    def _shared(self, name: str, share_in: str | None, fetch: Callable[[], str]) -> str:
        """``fetch()`` once per ``share_in`` (a batch id) across every worker; uncached
        without one."""
        if share_in is None:
            return fetch()
        key = self._key(share_in, name)
        cached = self._redis.get(key)
        if cached is None:
            with self._redis.lock(f"{key}:fill", timeout=30, blocking_timeout=30):
                cached = self._redis.get(key)
                if cached is None:
                    cached = fetch().encode()
                    pipe = self._redis.pipeline()  # MULTI: the value and its version
                    pipe.set(key, cached, ex=self._ttl)
                    pipe.set(f"{key}:v", uuid.uuid4().hex, ex=self._ttl)
                    pipe.execute()
        return cached.decode() if isinstance(cached, bytes) else str(cached)

    def _fresh(self, name: str, share_in: str | None, after: float,
               fetch: Callable[[], str]) -> str:
        """``fetch()``, or a value shared under ``share_in`` whose read started at ``after``
        or later (epoch seconds, this host's clock; callers add the fleet's clock skew).
        Many person requests of a batch that finish close together then share one
        verification read instead of each making its own."""
        if share_in is None:
            return fetch()
        key = self._key(share_in, f"fresh:{name}")

        def usable(raw: bytes | str | None) -> str | None:
            if raw is None:
                return None
            text = raw.decode() if isinstance(raw, bytes) else raw
            at, _, value = text.partition("|")
            return value if float(at) >= after else None

        found = usable(self._redis.get(key))
        if found is not None:
            return found
        with self._redis.lock(f"{key}:fill", timeout=30, blocking_timeout=30):
            found = usable(self._redis.get(key))
            if found is None:
                started = time.time()
                found = fetch()
                self._redis.set(key, f"{started!r}|".encode() + found.encode(), ex=self._ttl)
        return found

    def _key(self, share_in: str, name: str) -> str:
        return f"{self._prefix}:{share_in}:{name}"

    def _fetch(
        self, container: SeatContainer, mode: Mode, portal_token: SecretStr | None
    ) -> SeatsList:
        return self._polar.list_seats(subscription_id=container.subscription_id,
                                      order_id=container.order_id, mode=mode,
                                      portal_token=portal_token)


def _remember(cache: OrderedDict[Any, Any], key: Any, value: Any) -> None:
    cache[key] = value
    cache.move_to_end(key)
    while len(cache) > PARSED_LISTS:
        cache.popitem(last=False)
