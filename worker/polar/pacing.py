"""The pacing of Polar requests: how one token's budget is spread, and what a 429 changes.

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

These are the pure decisions (spacing, the share after a 429, the schedule back up),
in microseconds of Redis time; ``worker.polar.ratelimit`` keeps them in Redis for the fleet.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from config.settings import RateLimit

US = 1_000_000  # microseconds per second


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
        window_us=round(window * US),
        span_us=round((window + allowance) * US),
        min_gap_us=max(1, round(window * US / (budget * burst))),
        quiet_us=round(max_quiet * US),
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
