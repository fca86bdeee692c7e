"""One rate-limit budget per Polar token, shared in Redis by every worker on every machine.

**What Polar enforces** (polarsource/polar ``server/polar/rate_limit.py`` with asgi-ratelimit's
Redis backend): a *fixed window* per organization. The window opens at the first request
after the previous window expired (``SET key limit EX period NX``, then ``DECR``), every
integration of the organization spends the same budget, refused requests are not counted,
and a 429 carries ``retry-after`` = the window length (60 for a per-minute limit), not the
time left. There are no ``X-RateLimit-*`` headers.

**``POLAR_RATE_LIMIT`` is this service's share of the organization's budget** (production
500/minute, sandbox 100/minute): set it lower when other integrations of the organization
need a guaranteed part of the window. What another integration spends is learnt at run
time, from 429s (below).

**Spacing (steady state, 0 429s).** Let ``budget`` requests per ``window`` be the share and
``span = window + allowance``. The limiter admits at most ``share`` requests (``share`` ≤
``budget``) in any ``span`` of Redis time: a sliding log of reserved slots. A server window
covers ``window`` seconds of *arrival* time, that is at most ``window + jitter`` seconds of
*slot* time, so as long as the jitter between our slot and Polar's arrival stays under the
allowance, no fixed window, however aligned, can see more than ``share`` of our requests.
Inside a span requests go out back to back but at least ``gap`` apart (at most ``burst``
times the average rate), and ``gap`` grows when needed so no process waits more than
``max_hold / 2`` for the next window: per-second windows are sent in short bursts (the
whole of a batch's last window goes out at once, instead of being spread over it, and a
429's cooldown overlaps what would have been idle time anyway); per-minute windows stay
close to evenly spaced (500/minute: one request every ~118 ms). ``acquire`` sleeps only
for a short wait (``max_hold``); when the next slot is further away it raises
``ThrottleWait`` and the task gives its worker slot back until then.

**After a 429.** Every process using the token waits out ``retry-after`` (the cooldown),
then the fleet sends at a rate *adapted to what the window leaves*:

* Each reserved slot gets its index in a *mirror* of Polar's window (a window of our own
  that opens at our first slot after the previous one expired, as Polar's does). The
  request that got the 429 had ``index`` of ours before it in that window, and Polar's
  window was full, so other integrations spent ``budget - index`` of it and what is left
  to us is ``ceiling = index``. (A plain trailing-window count would not do: while we send
  continuously it always holds about ``share`` requests, whatever the window's phase.)
* After the cooldown the share is ``ceiling - margin`` (2 % of the budget, at least one
  request), then grows by ``step`` (1 %, at least one) per window without a 429 up to the
  ceiling, and stays there for ``hold_windows`` windows: steady interference gives no
  repeated 429s. After the hold it probes higher, one step per window, up to the budget,
  so a share that other integrations stopped using comes back; if they still use it, the
  probe costs one 429 per hold period (one per hour at 500/minute).
* The first rejected request of an episode (the earliest slot) sets the ceiling; 429s of
  requests already in flight when the first came back belong to the same episode and
  only extend the cooldown. Every new episode lowers the ceiling below the share in force,
  so even a misaligned estimate (another integration opened Polar's window, so ours and
  Polar's windows do not coincide) converges; no episode takes more than half of it
  (``keep``), and no series of them takes it below half the budget (``floor``), so 429s
  that are not Polar's window running out (a proxy's, a fault storm) cannot stall the
  fleet.

**Why the whole cooldown is honoured.** Sending again before ``retry-after`` has elapsed
would be safe only if we knew when Polar's window opened: it expires ``window`` seconds
after its first request. The 429 does not say (``retry-after`` is the window length), and
that first request may be another integration's, sent at any time before ours: the only
bound Polar's semantics give is "within ``window`` of the 429". So the fleet waits it out.

Everything is shared in Redis (one key set per token bucket), time comes from Redis
``TIME`` so machines need not agree on clocks, and each step is one atomic Lua script. The
decisions (spacing, the share after a 429, the schedule back up) are the pure functions
below; the scripts only look the schedule up.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from redis import Redis

from config.settings import RateLimit

_US = 1_000_000

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


# -- decisions (pure) --------------------------------------------------------------------


@dataclass(frozen=True)
class Spacing:
    """How requests are spread, all in microseconds of Redis time."""

    budget: int  # requests per window: POLAR_RATE_LIMIT, our share of the organization's
    window_us: int  # Polar's window
    span_us: int  # window + allowance: at most ``share`` requests in any span
    min_gap_us: int  # closest two requests may be (``burst`` times the average rate)
    quiet_us: int  # longest wait for the next window before ``gap`` is widened

    @property
    def allowance_us(self) -> int:
        return self.span_us - self.window_us


def spacing(
    limit: RateLimit, *, headroom: float = 0.03, max_allowance: float = 0.25,
    burst: float = 4.0, max_quiet: float = 1.0,
) -> Spacing:
    """The spacing for ``limit``.

    The allowance (``headroom`` of the window, at most ``max_allowance`` seconds) is the
    jitter tolerated between our clock and Polar's arrival times: 30 ms of a 1-second
    window, 250 ms of a minute (0.4 % of its throughput). A fractional limit such as
    ``2.5/second`` becomes whole requests over a longer window (2 per 0.8 s).
    """
    budget = max(1, math.floor(limit.count))
    window = limit.period * budget / limit.count
    allowance = min(headroom * window, max_allowance)
    return Spacing(
        budget=budget,
        window_us=round(window * _US),
        span_us=round((window + allowance) * _US),
        min_gap_us=max(1, round(window * _US / (budget * burst))),
        quiet_us=round(max_quiet * _US),
    )


@dataclass(frozen=True)
class Tuning:
    """How the share reacts to a 429, in requests and windows."""

    margin: int  # below the ceiling right after a cooldown
    step: int  # added per window without a 429
    hold_windows: int  # windows spent at the ceiling before probing above it
    keep: float = 0.5  # one 429 never takes the ceiling below this share of the share
    # 429s never take the share below this fraction of the budget (POLAR_RATE_LIMIT): 429s
    # that are not Polar's window running out (a proxy's, an injected fault storm) come in
    # series, and halving per episode would crawl for minutes. Interference heavier than
    # this costs one 429 per hold period; set POLAR_RATE_LIMIT to the share you really have.
    floor: float = 0.5


def tuning_for(
    budget: int, *, margin: float = 0.02, step: float = 0.01, hold_windows: int = 60,
    keep: float = 0.5, floor: float = 0.5,
) -> Tuning:
    return Tuning(margin=max(1, round(budget * margin)), step=max(1, round(budget * step)),
                  hold_windows=max(1, hold_windows), keep=keep, floor=floor)


@dataclass(frozen=True)
class Episode:
    """The fleet's reaction to a 429 (µs of Redis time)."""

    resume_at: int  # the cooldown's end: Polar's retry-after after the 429
    start: int  # share right after the cooldown
    ceiling: int  # what Polar's window left us, by the first rejected request
    hold_until: int  # never above the ceiling before this
    first_slot: int  # slot of the earliest rejected request of the episode (-1: unknown)


@dataclass(frozen=True)
class Rejected:
    """What the limiter knew of the request that got the 429 (its ``acquire``)."""

    slot: int  # its slot, µs of Redis time
    index: int  # requests of ours before it in the mirror of Polar's window
    share: int  # the share in force when it was admitted


def after_429(
    *, now: int, retry_after_us: int, cooldown_until: int, current: Episode | None,
    rejected: Rejected | None, share_now: int, spacing: Spacing, tuning: Tuning,
) -> Episode:
    """The episode after a 429 seen at ``now``.

    While a cooldown runs, a 429 answers a request sent before it began (it was in flight):
    it is the same episode and only an earlier rejected request may set the ceiling.
    Otherwise a new episode starts, with a ceiling below the share that was in force.
    """
    resume = max(cooldown_until, now + retry_after_us)
    if current is not None and cooldown_until > now:
        earlier = rejected is not None and (
            current.first_slot < 0 or rejected.slot < current.first_slot)
        if not earlier:
            return Episode(resume, current.start, current.ceiling,
                           max(current.hold_until, resume), current.first_slot)
    share = rejected.share if rejected is not None else share_now
    left = rejected.index if rejected is not None else share - tuning.margin
    # A 429 that is not Polar's window running out (a proxy's, an injected fault) must not
    # collapse the fleet: one episode at most takes the share down to ``keep`` of it, and
    # heavier interference is reached over a few 429s.
    least = max(1, math.ceil(spacing.budget * tuning.floor))
    left = max(left, math.ceil(share * tuning.keep), least)
    ceiling = max(1, min(left, max(share - 1, least), spacing.budget - 1))
    hold = tuning.hold_windows + math.ceil(tuning.margin / tuning.step)
    return Episode(
        resume_at=resume,
        start=max(1, ceiling - tuning.margin),
        ceiling=ceiling,
        hold_until=resume + hold * spacing.span_us,
        first_slot=rejected.slot if rejected is not None else -1,
    )


def share_at(now: int, episode: Episode | None, spacing: Spacing, tuning: Tuning) -> int:
    """Requests per span the fleet may send at ``now``."""
    if episode is None:
        return spacing.budget
    if now < episode.hold_until:
        windows = max(0, (now - episode.resume_at) // spacing.span_us)
        return min(episode.ceiling, episode.start + tuning.step * windows)
    windows = 1 + (now - episode.hold_until) // spacing.span_us
    return min(spacing.budget, episode.ceiling + tuning.step * windows)


def schedule(episode: Episode, spacing: Spacing, tuning: Tuning) -> list[tuple[int, int]]:
    """``share_at`` from the cooldown's end on, as (time, share) steps ending at the budget.

    This is what the acquire script reads: the share is the last step at or before the
    slot's time (the first step before the cooldown ends, the budget with no episode).
    """
    times = [episode.resume_at + k * spacing.span_us for k in
             range(max(1, -(-(episode.hold_until - episode.resume_at) // spacing.span_us)))]
    points: list[tuple[int, int]] = []
    for t in times:
        share = share_at(t, episode, spacing, tuning)
        if not points or share != points[-1][1]:
            points.append((t, share))
    t = episode.hold_until
    while True:
        share = share_at(t, episode, spacing, tuning)
        if share != points[-1][1]:
            points.append((t, share))
        if share >= spacing.budget:
            return points
        t += spacing.span_us


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
    """Implements ``polar.Throttle`` over Redis (see the module docstring).

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
        self.interval = self.spacing.span_us / self.spacing.budget / _US
        self.late_limit = self.spacing.allowance_us / 2 / _US
        self.max_hold = max_hold
        self._sleep = sleep
        self._clock = clock
        self._on_wait = on_wait
        self._ttl_ms = int((self.spacing.span_us + max_hold * _US) / 1000) + 60_000
        self._acquire = redis.register_script(_ACQUIRE)
        self._release = redis.register_script(_RELEASE)
        self._read = redis.register_script(_READ)
        self._write = redis.register_script(_WRITE)
        # The last request admitted per bucket in this thread: PolarClient._send acquires,
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
                  int(self.max_hold * _US), self._ttl_ms, 1 if urgent else 0],
        )
        wait = int(wait_us) / _US
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
                now=now, retry_after_us=round(seconds * _US), cooldown_until=cooldown,
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
        return max(0.0, (cooldown - now) / _US)

    def share(self, bucket: str) -> int:
        """Requests per window the fleet may send now."""
        now, _cooldown, _version, episode = self._state(bucket)
        return share_at(now, episode, self.spacing, self.tuning)

    def episode(self, bucket: str) -> Episode | None:
        return self._state(bucket)[3]
