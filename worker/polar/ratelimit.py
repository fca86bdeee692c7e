"""One rate-limit budget per Polar token, shared in Redis by every worker on every machine.

What is decided (spacing, the share after a 429, the schedule back up) and why is
``worker.polar.pacing``. Here it is kept in Redis: one key set per token bucket, time from
Redis ``TIME`` so machines need not agree on clocks, and each step is one atomic Lua
script that only looks the schedule up. ``SharedRateLimiter`` is the ``Throttle`` the
Polar client's transport calls; ``urgent_lane`` lets a termination overtake bulk work.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from redis import Redis

from config.settings import RateLimit
from worker.polar.pacing import (
    US,
    Episode,
    Rejected,
    Tuning,
    after_429,
    schedule,
    share_at,
    spacing,
    tuning_for,
)

# KEYS: log, cooldown, schedule, mirror, bulk (future slots reserved by bulk work).
# ARGV: budget, span_us, window_us, min_gap_us, quiet_us, max_hold_us, ttl_ms, urgent (1/0).
# Returns {reserved (1/0), wait_us, slot_us, mirror index, share}. Times: µs of Redis time.
# An urgent caller whose slot is in the future takes the earliest future slot a bulk
# caller reserved (still sleeping towards it) instead: the log is unchanged, so the window
# accounting is too, and the bulk caller finds its slot gone when it wakes (``_CLAIM``).
_ACQUIRE = """
local function int(x) return string.format('%d', x) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local budget, span, window = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local start = math.max(now, tonumber(redis.call('GET', KEYS[2]) or '0'))
local share = budget
local point = redis.call('ZREVRANGEBYSCORE', KEYS[3], int(start), '-inf', 'LIMIT', 0, 1)
if not point[1] then point = redis.call('ZRANGE', KEYS[3], 0, 0) end
if point[1] then share = tonumber(string.match(point[1], '^(%d+)')) end
local gap = math.max(tonumber(ARGV[4]), math.floor((span - tonumber(ARGV[5])) / share))
local slot = start
-- Slots a whole span old can no longer count against any slot from now on.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. int(now - span))
local n = redis.call('ZCARD', KEYS[1])
if n > 0 then
  local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
  slot = math.max(slot, tonumber(last[2]) + gap)
  if n >= share then
    local edge = redis.call('ZRANGE', KEYS[1], n - share, n - share, 'WITHSCORES')
    slot = math.max(slot, tonumber(edge[2]) + span)
  end
end
-- Bulk slots whose time has come are being claimed by their (waking) callers: only
-- entries a whole span old are abandoned (their process died) and dropped.
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', '(' .. int(now - span))
local wait = slot - now
if ARGV[8] == '1' and wait > 0 then
  local taken = redis.call('ZRANGEBYSCORE', KEYS[5], '(' .. int(now), int(slot), 'LIMIT', 0, 1)
  if taken[1] then
    redis.call('ZREM', KEYS[5], taken[1])
    local at, index = string.match(taken[1], '^(%d+):(%d+)$')
    return {1, tonumber(at) - now, tonumber(at), tonumber(index), share}
  end
end
if wait > tonumber(ARGV[6]) then
  return {0, wait, 0, -1, share}
end
redis.call('ZADD', KEYS[1], int(slot), int(slot))
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(budget + 1))
redis.call('PEXPIRE', KEYS[1], ARGV[7])
local m = redis.call('HMGET', KEYS[4], 'start', 'count')
local mstart, index = tonumber(m[1] or '-1'), tonumber(m[2] or '0')
if mstart < 0 or slot >= mstart + window then
  mstart, index = slot, 0
end
redis.call('HSET', KEYS[4], 'start', int(mstart), 'count', index + 1)
redis.call('PEXPIRE', KEYS[4], ARGV[7])
if ARGV[8] ~= '1' and wait > 0 then
  redis.call('ZADD', KEYS[5], int(slot), int(slot) .. ':' .. int(index))
  redis.call('PEXPIRE', KEYS[5], ARGV[7])
end
return {1, wait, slot, index, share}
"""

# KEYS: log, mirror. ARGV: slot_us. A reserved slot that will not be used (its process woke
# too late, or a cooldown began meanwhile) leaves the log and the mirror's count.
_RELEASE = """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then
  local m = redis.call('HMGET', KEYS[2], 'start', 'count')
  if m[1] and tonumber(m[1]) <= tonumber(ARGV[1]) and tonumber(m[2] or '0') > 0 then
    redis.call('HINCRBY', KEYS[2], 'count', -1)
  end
end
return 1
"""

# KEYS: cooldown, episode. Returns {now_us, cooldown_us, episode fields...}.
_READ = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local e = redis.call('HMGET', KEYS[2], 'version', 'resume', 'start', 'ceiling', 'hold', 'first')
return {now, tonumber(redis.call('GET', KEYS[1]) or '0'),
        e[1] or '', e[2] or '', e[3] or '', e[4] or '', e[5] or '', e[6] or ''}
"""

# KEYS: cooldown, episode, schedule. ARGV: expected version ('' = none), resume_us, start,
# ceiling, hold_us, first_slot_us, ttl_ms, then schedule points as (time_us, share) pairs.
# Compare-and-set: writes nothing and returns 0 when another process changed the episode
# since it was read. The cooldown is extended, never shortened.
_WRITE = """
if (redis.call('HGET', KEYS[2], 'version') or '') ~= ARGV[1] then
  return 0
end
local resume = tonumber(ARGV[2])
if resume > tonumber(redis.call('GET', KEYS[1]) or '0') then
  redis.call('SET', KEYS[1], resume, 'PX', ARGV[7])
end
redis.call('HSET', KEYS[2], 'version', (tonumber(ARGV[1]) or 0) + 1, 'resume', ARGV[2],
           'start', ARGV[3], 'ceiling', ARGV[4], 'hold', ARGV[5], 'first', ARGV[6])
redis.call('PEXPIRE', KEYS[2], ARGV[7])
redis.call('DEL', KEYS[3])
for i = 8, #ARGV, 2 do
  redis.call('ZADD', KEYS[3], ARGV[i], ARGV[i + 1] .. ':' .. ARGV[i])
end
redis.call('PEXPIRE', KEYS[3], ARGV[7])
return 1
"""


# -- lanes -------------------------------------------------------------------------------

_urgent: ContextVar[bool] = ContextVar("seat_revoker_urgent_lane", default=False)


@contextmanager
def urgent_lane(urgent: bool = True) -> Iterator[None]:
    """Calls made inside take the limiter's next free slot before bulk work: an urgent
    request (a termination) does not wait behind a batch's reserved slots."""
    token = _urgent.set(urgent)
    try:
        yield
    finally:
        _urgent.reset(token)


# -- the limiter -------------------------------------------------------------------------


class ThrottleWait(Exception):
    """The next free request slot is ``seconds`` away: come back then."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"rate limit: next slot in {seconds:.2f}s")
        self.seconds = seconds


class SharedRateLimiter:
    """Implements ``transport.Throttle`` over Redis (see ``worker.polar.pacing``).

    ``limit`` is ``POLAR_RATE_LIMIT``: this service's share of the organization's budget.
    """

    def __init__(
        self,
        redis: Redis,
        key_prefix: str,
        limit: RateLimit,
        *,
        headroom: float = 0.03,
        max_allowance: float = 0.25,
        burst: float = 4.0,
        max_hold: float = 2.0,
        tuning: Tuning | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        on_wait: Callable[[float], None] | None = None,
    ) -> None:
        self._redis = redis
        self._prefix = key_prefix
        self.spacing = spacing(limit, headroom=headroom, max_allowance=max_allowance,
                               burst=burst, max_quiet=max_hold / 2)
        self.tuning = tuning or tuning_for(self.spacing.budget)
        # The average spacing at the full share, and how late a process may wake after its
        # slot before it would eat into the allowance.
        self.interval = self.spacing.span_us / self.spacing.budget / US
        self.late_limit = self.spacing.allowance_us / 2 / US
        self.max_hold = max_hold
        self._sleep = sleep
        self._clock = clock
        self._on_wait = on_wait
        self._ttl_ms = int((self.spacing.span_us + max_hold * US) / 1000) + 60_000
        self._acquire = redis.register_script(_ACQUIRE)
        self._release = redis.register_script(_RELEASE)
        self._read = redis.register_script(_READ)
        self._write = redis.register_script(_WRITE)
        # The last request admitted per bucket in this thread: ThrottledTransport acquires,
        # sends and (on a 429) penalizes in one thread, so penalize knows which it was.
        self._admitted = threading.local()

    def _key(self, bucket: str, name: str) -> str:
        return f"{self._prefix}:{bucket}:{name}"

    def _last(self) -> dict[str, Rejected]:
        last: dict[str, Rejected] | None = getattr(self._admitted, "by_bucket", None)
        if last is None:
            last = self._admitted.by_bucket = {}
        return last

    # -- acquire ---------------------------------------------------------------------------

    def acquire(self, bucket: str) -> None:
        """Wait for this process's next request slot (sleeping at most ``max_hold``)."""
        tolerate_lateness = False
        while not self._reserve(bucket, tolerate_lateness):
            # Our slot is void: a cooldown began while we slept, or we woke so late that
            # sending now could put one request too many in a window. Reserve a fresh one
            # (a second lateness is accepted, so a starved process cannot loop).
            tolerate_lateness = True

    def _reserve(self, bucket: str, tolerate_lateness: bool) -> bool:
        s = self.spacing
        urgent = _urgent.get()
        reserved, wait_us, slot, index, share = self._acquire(
            keys=[self._key(bucket, k)
                  for k in ("log", "cooldown", "schedule", "mirror", "bulk")],
            args=[s.budget, s.span_us, s.window_us, s.min_gap_us, s.quiet_us,
                  int(self.max_hold * US), self._ttl_ms, 1 if urgent else 0],
        )
        wait = int(wait_us) / US
        if not reserved:
            raise ThrottleWait(wait)
        ticket = Rejected(slot=int(slot), index=int(index), share=int(share))
        if wait > 0:
            due = self._clock() + wait
            if self._on_wait is not None:
                self._on_wait(wait)
            self._sleep(wait)
            late = self._clock() - due  # before the claim's round trip
            if not urgent and not self._claim(bucket, ticket):
                return False  # urgent work took this slot while we slept: reserve another
            if not tolerate_lateness and late > self.late_limit:
                self._give_back(bucket, ticket)
                return False
            # A 429 seen by another worker while we slept pauses us too.
            pause = self.cooldown_remaining(bucket)
            if pause > 0:
                self._give_back(bucket, ticket)
                if pause > self.max_hold:
                    raise ThrottleWait(pause)
                self._sleep(pause)
                return False
        self._last()[bucket] = ticket
        return True

    def _claim(self, bucket: str, ticket: Rejected) -> bool:
        """A bulk caller wakes for its slot: take it, unless urgent work took it."""
        member = f"{ticket.slot}:{ticket.index}"
        return bool(self._redis.zrem(self._key(bucket, "bulk"), member))

    def _give_back(self, bucket: str, ticket: Rejected) -> None:
        self._release(keys=[self._key(bucket, "log"), self._key(bucket, "mirror")],
                      args=[ticket.slot])

    # -- 429 -------------------------------------------------------------------------------

    def penalize(self, bucket: str, seconds: float) -> None:
        """Polar answered 429 with ``retry-after: seconds``: pause every user of ``bucket``
        that long, then send at the share the window leaves (see the module docstring)."""
        rejected = self._last().pop(bucket, None)
        keys = [self._key(bucket, k) for k in ("cooldown", "episode", "schedule")]
        for _ in range(20):
            now, cooldown, version, current = self._state(bucket)
            episode = after_429(
                now=now, retry_after_us=round(seconds * US), cooldown_until=cooldown,
                current=current, rejected=rejected,
                share_now=share_at(now, current, self.spacing, self.tuning),
                spacing=self.spacing, tuning=self.tuning,
            )
            points = schedule(episode, self.spacing, self.tuning)
            ttl_ms = (points[-1][0] - now) // 1000 + self._ttl_ms
            args: list[Any] = [version, episode.resume_at, episode.start, episode.ceiling,
                               episode.hold_until, episode.first_slot, ttl_ms]
            for at, share in points:
                args += [at, share]
            if self._write(keys=keys, args=args):
                return
        raise RuntimeError("rate limiter: could not record a 429 (too much contention)")

    def _state(self, bucket: str) -> tuple[int, int, str, Episode | None]:
        raw = self._read(keys=[self._key(bucket, "cooldown"), self._key(bucket, "episode")])
        now, cooldown = int(raw[0]), int(raw[1])
        fields = [f.decode() if isinstance(f, bytes) else str(f) for f in raw[2:]]
        version, *values = fields
        if not version:
            return now, cooldown, "", None
        resume, start, ceiling, hold, first = (int(v) for v in values)
        return now, cooldown, version, Episode(resume, start, ceiling, hold, first)

    # -- observing -------------------------------------------------------------------------

    def cooldown_remaining(self, bucket: str) -> float:
        now, cooldown, _version, _episode = self._state(bucket)
        return max(0.0, (cooldown - now) / US)

    def share(self, bucket: str) -> int:
        """Requests per window the fleet may send now."""
        now, _cooldown, _version, episode = self._state(bucket)
        return share_at(now, episode, self.spacing, self.tuning)

    def episode(self, bucket: str) -> Episode | None:
        return self._state(bucket)[3]
