"""The circuit breaker across the fleet: one Redis script reserves a revocation's place in
its customer's and the organization's rolling windows, or holds it.

Every DELETE passes ``Breaker.reserve`` (``SeatRevocation``, after the guard said the seat
may go, before the call): the script counts the window's reservations of both scopes,
and either adds this request to both (go) or opens the scope's breaker (hold) — in one
step, so any number of workers racing at the limit never revoke one seat over it. The
arithmetic is ``worker.decisions.breaker``; the script applies ``judge`` (a table test runs
the same cases through both).

Redis layout under ``key_prefix``:

- ``{p}:win:{scope}`` — sorted set, request id → reserved at (epoch s); entries older than
  the window are dropped as the script runs.
- ``{p}:open:{scope}`` — JSON ``OpenBreaker`` while the scope's breaker is open (no
  expiry: it stays open until an operator releases or rejects what it holds).
- ``{p}:active:{customer}`` — hash, subscription/order → the most active seats seen in it
  during the window (what the customer's share is measured against).
- ``{p}:owner`` — hash, subscription/order → its billing customer (never changes).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from redis import Redis

from config.settings import Settings
from worker.decisions.breaker import ORG_SCOPE, Check, Limits, Verdict, customer_scope
from worker.telemetry.logs import get_logger

log = get_logger("seat_revoker.breaker")

# KEYS: customer window, org window, customer open flag, org open flag
# ARGV: now, window seconds, request id, customer limit (-1: no customer scope), org limit,
#       forced (1: released by an operator or an approved batch), open info (customer),
#       open info (org)
# Returns {verdict, scope, limit, used}: verdict 1 go, 0 hold (already open), 2 hold (this
# request opened the breaker).
RESERVE = """
local now, window = tonumber(ARGV[1]), tonumber(ARGV[2])
local id, climit, olimit = ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
local forced = ARGV[6] == '1'
local has_customer = climit >= 0
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
if has_customer then redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window) end
if redis.call('ZSCORE', KEYS[2], id) then return {1, '', 0, 0} end
local oused = redis.call('ZCARD', KEYS[2])
local cused = 0
if has_customer then cused = redis.call('ZCARD', KEYS[1]) end
if not forced then
  if redis.call('EXISTS', KEYS[4]) == 1 then return {0, 'org', olimit, oused} end
  if has_customer and redis.call('EXISTS', KEYS[3]) == 1 then
    return {0, 'customer', climit, cused}
  end
  if has_customer and cused + 1 > climit then
    redis.call('SET', KEYS[3], ARGV[7])
    return {2, 'customer', climit, cused}
  end
  if oused + 1 > olimit then
    redis.call('SET', KEYS[4], ARGV[8])
    return {2, 'org', olimit, oused}
  end
end
redis.call('ZADD', KEYS[2], now, id)
redis.call('EXPIRE', KEYS[2], math.ceil(window) + 60)
if has_customer then
  redis.call('ZADD', KEYS[1], now, id)
  redis.call('EXPIRE', KEYS[1], math.ceil(window) + 60)
end
return {1, '', 0, 0}
"""

# KEYS: the customer's active hash; ARGV: container, active seats, window seconds
OBSERVE = """
local old = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '-1')
if tonumber(ARGV[2]) > old then redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) end
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[3])))
return 1
"""


@dataclass(frozen=True)
class OpenBreaker:
    """One open breaker: its scope, the limit it hit and since when."""

    scope: str
    limit: int
    used: int
    since: str  # ISO 8601, UTC
    window_seconds: float


class Breaker:
    def __init__(self, redis: Redis, key_prefix: str, limits: Limits, *,
                 window_seconds: float, enabled: bool = True,
                 clock: Callable[[], float] = time.time) -> None:
        self.redis = redis
        self.prefix = key_prefix
        self.limits = limits
        self.window = window_seconds
        self.enabled = enabled
        self.clock = clock
        self._reserve = redis.register_script(RESERVE)
        self._observe = redis.register_script(OBSERVE)

    @classmethod
    def from_settings(cls, settings: Settings, redis: Redis) -> Breaker:
        """The breaker every process builds alike: its keys, limits and window."""
        return cls(redis, settings.redis_key("breaker"),
                   Limits(settings.breaker_customer_max, settings.breaker_customer_share,
                          settings.breaker_org_max),
                   window_seconds=settings.breaker_window_seconds,
                   enabled=settings.breaker_enabled)

    def _key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    # -- what the worker knows about a customer's seats ---------------------------------

    def observe(self, customer_id: str, container: str, active: int) -> None:
        """The seat list of ``container`` (a customer's) showed ``active`` seats not revoked."""
        self._observe(keys=[self._key("active", customer_id)],
                      args=[container, active, self.window])

    def active_seats(self, customer_id: str) -> int:
        """The customer's active seats before this window's revocations: the most seen in
        each of its subscriptions/orders this window, summed."""
        values = self.redis.hvals(self._key("active", customer_id))
        return sum(int(v) for v in values)

    def owner(self, container: str) -> str | None:
        raw = self.redis.hget(self._key("owner"), container)
        return raw.decode() if isinstance(raw, bytes) else raw

    def remember_owner(self, container: str, customer_id: str) -> None:
        self.redis.hset(self._key("owner"), container, customer_id)

    # -- the reservation ------------------------------------------------------------------

    def reserve(self, request_id: str, customer_id: str | None, *,
                forced: bool = False) -> Check:
        """Reserve this revocation's place in the window, or hold it (the scope's breaker
        opens). Idempotent per request: a retry of a reserved request goes."""
        if not self.enabled:
            return Check(Verdict.GO)
        climit = (self.limits.customer_limit(self.active_seats(customer_id))
                  if customer_id else -1)
        cscope = customer_scope(customer_id) if customer_id else ORG_SCOPE
        now = self.clock()
        since = datetime.fromtimestamp(now, UTC).isoformat()

        def info(scope: str, limit: int) -> str:
            return json.dumps(asdict(OpenBreaker(scope, limit, limit, since, self.window)))

        verdict, scope, limit, used = self._reserve(
            keys=[self._key("win", cscope), self._key("win", ORG_SCOPE),
                  self._key("open", cscope), self._key("open", ORG_SCOPE)],
            args=[now, self.window, request_id, climit, self.limits.org_max,
                  "1" if forced else "0", info(cscope, climit),
                  info(ORG_SCOPE, self.limits.org_max)])
        if int(verdict) == 1:
            return Check(Verdict.GO)
        which = scope.decode() if isinstance(scope, bytes) else str(scope)
        return Check(Verdict.HOLD, cscope if which == "customer" else ORG_SCOPE, int(limit),
                     int(used), tripped=int(verdict) == 2)

    def unreserve(self, request_id: str, customer_id: str | None) -> None:
        """Give back a reservation whose DELETE revoked nothing (already revoked)."""
        pipe = self.redis.pipeline()
        pipe.zrem(self._key("win", ORG_SCOPE), request_id)
        if customer_id:
            pipe.zrem(self._key("win", customer_scope(customer_id)), request_id)
        pipe.execute()

    # -- what operators see and do --------------------------------------------------------

    def used(self, scope: str) -> int:
        key = self._key("win", scope)
        self.redis.zremrangebyscore(key, "-inf", self.clock() - self.window)
        return int(self.redis.zcard(key))

    def open_breakers(self) -> list[OpenBreaker]:
        found: list[OpenBreaker] = []
        prefix = self._key("open", "")
        for key in self.redis.scan_iter(match=f"{prefix}*", count=500):
            raw = self.redis.get(key)
            if raw is not None:
                found.append(OpenBreaker(**json.loads(raw)))
        return sorted(found, key=lambda b: (b.scope != ORG_SCOPE, b.since, b.scope))

    def is_open(self, scope: str) -> bool:
        return bool(self.redis.exists(self._key("open", scope)))

    def close(self, scope: str) -> bool:
        """An operator acted on the scope: its breaker closes (the window's count stays, so
        the next revocation over the limit opens it again)."""
        return bool(self.redis.delete(self._key("open", scope)))
