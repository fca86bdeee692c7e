"""One rate-limit budget per Polar token, shared in Redis by every worker on every machine.

The limiter spaces requests evenly (GCRA: each request reserves the next free slot, one
``interval`` after the previous one), so Polar never sees a burst, whatever its window. A 429
sets a shared cooldown: every process using that token waits out ``retry-after``, not just
the one that got it. Time comes from Redis (``TIME``), so machines need not agree on clocks.

``acquire`` sleeps only for a short wait (``max_hold``); when the next free slot is further
away it raises ``ThrottleWait`` and the task gives its worker slot back until then.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from redis import Redis

from config.settings import RateLimit

# KEYS: tat, cooldown. ARGV: interval_us, max_hold_us, ttl_ms.
# Returns {reserved (1/0), wait_us}. Times are microseconds of Redis server time.
_ACQUIRE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
local cooldown = tonumber(redis.call('GET', KEYS[2]) or '0')
local start = math.max(now, tat, cooldown)
local wait = start - now
if wait > tonumber(ARGV[2]) then
  return {0, wait}
end
redis.call('SET', KEYS[1], start + tonumber(ARGV[1]), 'PX', tonumber(ARGV[3]))
return {1, wait}
"""

# KEYS: cooldown, tat. ARGV: seconds_us, ttl_ms. Extends the cooldown, never shortens it,
# and moves the next free slot to the end of the cooldown so the first requests after it
# are spaced like any others instead of all firing at once.
_PENALIZE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local untl = now + tonumber(ARGV[1])
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if untl > current then
  redis.call('SET', KEYS[1], untl, 'PX', tonumber(ARGV[2]))
end
local tat = tonumber(redis.call('GET', KEYS[2]) or '0')
if untl > tat then
  redis.call('SET', KEYS[2], untl, 'PX', tonumber(ARGV[2]))
end
return untl - now
"""


class ThrottleWait(Exception):
    """The next free request slot is ``seconds`` away: come back then."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"rate limit: next slot in {seconds:.2f}s")
        self.seconds = seconds


class SharedRateLimiter:
    """Implements ``polar.Throttle`` over Redis."""

    def __init__(
        self,
        redis: Redis,
        key_prefix: str,
        limit: RateLimit,
        *,
        headroom: float = 0.03,
        max_allowance: float = 0.25,
        max_hold: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        on_wait: Callable[[float], None] | None = None,
    ) -> None:
        self._redis = redis
        self._prefix = key_prefix
        # Space requests as if the window were a little longer than Polar's, so jitter
        # between our clock and its arrival times never puts one request too many in a
        # window: 3% of a 1-second window (30 ms), capped at 250 ms for a minute window
        # (0.4% of its throughput instead of 3%).
        allowance = min(headroom * limit.period, max_allowance)
        self.interval = (limit.period + allowance) / limit.count
        # Waking later than this after our slot would eat into that allowance.
        self.late_limit = allowance / 2
        self.max_hold = max_hold
        self._sleep = sleep
        self._clock = clock
        self._on_wait = on_wait
        self._acquire = redis.register_script(_ACQUIRE)
        self._penalize = redis.register_script(_PENALIZE)

    def _keys(self, bucket: str) -> tuple[str, str]:
        return f"{self._prefix}:{bucket}:tat", f"{self._prefix}:{bucket}:cooldown"

    def acquire(self, bucket: str) -> None:
        """Wait for this process's next request slot (sleeping at most ``max_hold``)."""
        tolerate_lateness = False
        while not self._reserve(bucket, tolerate_lateness):
            # Our slot is void: a cooldown began while we slept, or we woke so late that
            # sending now would crowd the next process's slot. Reserve a fresh one (a
            # second lateness is accepted, so a starved process cannot loop).
            tolerate_lateness = True

    def _reserve(self, bucket: str, tolerate_lateness: bool) -> bool:
        tat_key, cooldown_key = self._keys(bucket)
        ttl_ms = int((self.max_hold + self.interval) * 1000) + 60_000
        reserved, wait_us = self._acquire(
            keys=[tat_key, cooldown_key],
            args=[int(self.interval * 1e6), int(self.max_hold * 1e6), ttl_ms],
        )
        wait = int(wait_us) / 1e6
        slot = self._clock() + wait
        if not reserved:
            raise ThrottleWait(wait)
        if wait > 0:
            if self._on_wait is not None:
                self._on_wait(wait)
            self._sleep(wait)
            if not tolerate_lateness and self._clock() - slot > self.late_limit:
                return False
            # A 429 seen by another worker while we slept pauses us too.
            pause = self.cooldown_remaining(bucket)
            if pause > self.max_hold:
                raise ThrottleWait(pause)
            if pause > 0:
                self._sleep(pause)
                return False
        return True

    def penalize(self, bucket: str, seconds: float) -> None:
        """Pause every user of ``bucket`` for ``seconds`` (Polar's ``retry-after``)."""
        tat_key, cooldown_key = self._keys(bucket)
        self._penalize(
            keys=[cooldown_key, tat_key], args=[int(seconds * 1e6), int(seconds * 1000) + 60_000]
        )

    def cooldown_remaining(self, bucket: str) -> float:
        _tat, cooldown_key = self._keys(bucket)
        raw = self._redis.get(cooldown_key)
        if raw is None:
            return 0.0
        now_s, now_us = self._redis.time()
        return max(0.0, (int(raw) - (now_s * 1_000_000 + now_us)) / 1e6)
