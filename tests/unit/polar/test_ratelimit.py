"""Tests of ``worker.polar.ratelimit``: the Lua scripts against the real local Redis, and
the whole limiter against a simulated Polar fixed window (its pure decisions:
``test_pacing.py``).

Every Redis test uses its own key prefix and deletes its keys afterwards. Where waits only
need observing, ``sleep`` is injected and recorded, so nothing waits.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from redis import Redis

from config.settings import RateLimit
from worker.polar.auth import token_bucket
from worker.polar.client import PolarClient
from worker.polar.errors import PolarHTTPError
from worker.polar.pacing import Rejected, Tuning
from worker.polar.ratelimit import SharedRateLimiter, ThrottleWait, urgent_lane
from worker.polar.transport import build_http_client

TOLERANCE = 0.02  # seconds: Redis round trips between two acquires on a local socket
S = 1_000_000  # µs


# -- against the real Redis ------------------------------------------------------------


@pytest.fixture(scope="module")
def redis(redis_url: str) -> Iterator[Redis]:
    """The session's Redis (the machine's, or a private one: see tests/conftest.py)."""
    client = Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def prefix(redis: Redis) -> Iterator[str]:
    value = f"test-ratelimit:{uuid.uuid4().hex}"
    yield value
    keys = list(redis.scan_iter(f"{value}:*"))
    if keys:
        redis.delete(*keys)


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


class RealSleeps(Sleeps):
    """Records and really sleeps: the limiter re-checks the shared cooldown after waking."""

    def __call__(self, seconds: float) -> None:
        super().__call__(seconds)
        time.sleep(seconds)


FIVE_PER_SECOND = RateLimit(count=5.0, period=1.0)


def limiter(
    redis: Redis, prefix: str, sleeps: Any, limit: RateLimit = FIVE_PER_SECOND, **kwargs: Any
) -> SharedRateLimiter:
    return SharedRateLimiter(redis, prefix, limit, sleep=sleeps, **kwargs)


def ticket(gate: SharedRateLimiter, bucket: str = "bucket") -> Rejected:
    return gate._last()[bucket]


def test_a_window_goes_out_in_a_burst_then_waits_for_the_span(
    redis: Redis, prefix: str
) -> None:
    sleeps = Sleeps()
    gate = limiter(redis, prefix, sleeps)  # 5 per 1.03 s, at least 50 ms apart
    slots = []
    for _ in range(7):
        gate.acquire("bucket")
        slots.append(ticket(gate).slot)
    gap, span = gate.spacing.min_gap_us, gate.spacing.span_us
    assert [b - a for a, b in itertools.pairwise(slots)] == [
        gap, gap, gap, gap, span - 4 * gap, gap]
    # Nothing really slept, so each wait is the slot's distance from (about) one instant.
    expected = [(s - slots[0]) / S for s in slots[1:]]
    for got, want in zip(sleeps.calls, expected, strict=True):
        assert want - TOLERANCE <= got <= want


def test_at_most_share_slots_in_any_span(redis: Redis, prefix: str) -> None:
    gate = limiter(redis, prefix, Sleeps(), RateLimit(4, 1.0), max_hold=30.0)
    slots = []
    for _ in range(20):
        gate.acquire("bucket")
        slots.append(ticket(gate).slot)
    span = gate.spacing.span_us
    for i, slot in enumerate(slots):
        assert sum(1 for s in slots[i:] if s < slot + span) <= 4


def test_slots_are_numbered_in_the_mirror_of_polars_window(
    redis: Redis, prefix: str
) -> None:
    gate = limiter(redis, prefix, Sleeps(), max_hold=30.0)
    indices = []
    for _ in range(12):
        gate.acquire("bucket")
        indices.append(ticket(gate).index)
    assert indices == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1]


def test_the_mirror_window_opens_at_the_first_slot_after_it_expired(
    redis: Redis, prefix: str
) -> None:
    gate = limiter(redis, prefix, Sleeps(), RateLimit(50, 0.2))  # window 200 ms
    gate.acquire("bucket")
    time.sleep(0.21)
    gate.acquire("bucket")
    gate.acquire("bucket")
    assert ticket(gate).index == 1


def test_an_idle_bucket_does_not_wait(redis: Redis, prefix: str) -> None:
    sleeps = Sleeps()
    gate = limiter(redis, prefix, sleeps, RateLimit(50.0, 1.0))
    gate.acquire("bucket")
    time.sleep(gate.spacing.min_gap_us / S + 0.02)
    gate.acquire("bucket")
    assert sleeps.calls == []


def test_two_instances_with_one_prefix_share_the_budget(redis: Redis, prefix: str) -> None:
    first_sleeps, second_sleeps = Sleeps(), Sleeps()
    first = limiter(redis, prefix, first_sleeps)
    second = limiter(redis, prefix, second_sleeps)
    first.acquire("bucket")
    second.acquire("bucket")
    first.acquire("bucket")
    gap = first.spacing.min_gap_us / S
    assert first_sleeps.calls == [pytest.approx(2 * gap, abs=TOLERANCE)]
    assert second_sleeps.calls == [pytest.approx(gap, abs=TOLERANCE)]
    assert [ticket(second).index, ticket(first).index] == [1, 2]


def test_separate_buckets_and_prefixes_do_not_interfere(redis: Redis, prefix: str) -> None:
    sleeps = Sleeps()
    gate = limiter(redis, prefix, sleeps)
    gate.acquire("token-a")
    gate.acquire("token-b")
    limiter(redis, f"{prefix}:other", sleeps).acquire("token-a")
    assert sleeps.calls == []
    gate.penalize("token-a", 30)
    gate.acquire("token-b")
    assert gate.cooldown_remaining("token-b") == 0.0
    assert gate.share("token-b") == 5


def test_penalize_makes_every_instance_wait(redis: Redis, prefix: str) -> None:
    penalized_sleeps, other_sleeps = RealSleeps(), RealSleeps()
    penalized = limiter(redis, prefix, penalized_sleeps, max_hold=5.0)
    other = limiter(redis, prefix, other_sleeps, max_hold=5.0)
    penalized.penalize("bucket", 0.5)
    assert penalized.cooldown_remaining("bucket") == pytest.approx(0.5, abs=0.05)
    other.acquire("bucket")
    (waited,) = other_sleeps.calls
    assert 0.5 - 0.1 <= waited <= 0.5
    penalized.acquire("bucket")
    (waited_again,) = penalized_sleeps.calls
    assert waited_again <= penalized.spacing.min_gap_us / S + 0.01


def test_a_429_seen_by_another_worker_during_the_wait_pauses_the_sleeper(
    redis: Redis, prefix: str
) -> None:
    other = limiter(redis, prefix, Sleeps(), max_hold=5.0)
    calls: list[float] = []

    def sleep_while_another_worker_gets_a_429(seconds: float) -> None:
        calls.append(seconds)
        if len(calls) == 1:
            other.penalize("bucket", 0.4)
        time.sleep(seconds)

    sleeper = limiter(redis, prefix, sleep_while_another_worker_gets_a_429, max_hold=5.0)
    other.acquire("bucket")  # takes the free slot: the sleeper waits one gap
    sleeper.acquire("bucket")
    assert len(calls) == 2  # its slot, then the cooldown (the next slot is free at once)
    assert calls[0] == pytest.approx(sleeper.spacing.min_gap_us / S, abs=0.02)
    assert calls[1] >= 0.4 - calls[0] - 0.05
    # The void slot went back: the log holds the other's slot and the sleeper's new one.
    assert redis.zcard(f"{prefix}:bucket:log") == 2


def test_penalize_extends_but_never_shortens(redis: Redis, prefix: str) -> None:
    gate = limiter(redis, prefix, Sleeps())
    gate.penalize("bucket", 5)
    gate.penalize("bucket", 1)
    assert gate.cooldown_remaining("bucket") == pytest.approx(5.0, abs=0.1)
    gate.penalize("bucket", 8)
    assert gate.cooldown_remaining("bucket") == pytest.approx(8.0, abs=0.1)


@pytest.mark.parametrize(
    ("penalty", "max_hold"),
    [
        pytest.param(5.0, 2.0, id="a cooldown longer than max_hold raises ThrottleWait"),
        pytest.param(0.5, 0.1, id="a short cooldown over a tiny max_hold raises ThrottleWait"),
    ],
)
def test_throttle_wait_when_the_wait_exceeds_max_hold(
    redis: Redis, prefix: str, penalty: float, max_hold: float
) -> None:
    sleeps = Sleeps()
    gate = limiter(redis, prefix, sleeps, max_hold=max_hold)
    gate.penalize("bucket", penalty)
    with pytest.raises(ThrottleWait) as info:
        gate.acquire("bucket")
    assert penalty - 0.1 <= info.value.seconds <= penalty
    assert f"{info.value.seconds:.2f}s" in str(info.value)
    assert sleeps.calls == []
    assert redis.zcard(f"{prefix}:bucket:log") == 0  # a refused acquire reserves no slot


def test_throttle_wait_when_the_next_window_is_further_than_max_hold(
    redis: Redis, prefix: str
) -> None:
    sleeps = Sleeps()
    gate = limiter(redis, prefix, sleeps, RateLimit(2.0, 1.0), headroom=0.0, max_hold=0.8)
    gate.acquire("bucket")  # now
    gate.acquire("bucket")  # one gap later: the quiet rule makes it (1 s - 0.4 s) / 2
    assert sleeps.calls == [pytest.approx(0.3, abs=TOLERANCE)]
    with pytest.raises(ThrottleWait) as info:
        gate.acquire("bucket")  # the next window: 1 s after the first
    assert info.value.seconds == pytest.approx(1.0, abs=TOLERANCE)


def test_on_wait_is_told_the_wait(redis: Redis, prefix: str) -> None:
    told: list[float] = []
    sleeps = Sleeps()
    gate = limiter(redis, prefix, sleeps, on_wait=told.append)
    gate.acquire("bucket")
    gate.acquire("bucket")
    assert told == sleeps.calls
    assert len(told) == 1


def test_keys_expire(redis: Redis, prefix: str) -> None:
    gate = limiter(redis, prefix, Sleeps())
    gate.acquire("bucket")
    gate.penalize("bucket", 2)
    for name in ("log", "mirror"):
        assert 0 < redis.pttl(f"{prefix}:bucket:{name}") <= 64_000
    # The episode lives until the share is back at the budget: hold + climb, then a minute.
    windows = gate.tuning.hold_windows + 1 + 5
    bound = 2_000 + windows * 1_030 + 64_000
    for name in ("cooldown", "episode", "schedule"):
        assert 60_000 < redis.pttl(f"{prefix}:bucket:{name}") <= bound


def test_a_process_waking_late_gives_its_slot_back_and_takes_a_fresh_one_once(
    redis: Redis, prefix: str
) -> None:
    now = [0.0]
    sleeps: list[float] = []

    def oversleep(seconds: float) -> None:  # every sleep ends 40 ms late
        sleeps.append(seconds)
        now[0] += seconds + 0.04

    gate = SharedRateLimiter(redis, prefix, RateLimit(20.0, 1.0), sleep=oversleep,
                             clock=lambda: now[0])
    other = limiter(redis, prefix, Sleeps())
    other.acquire("bucket")  # the free slot is taken: ours is one gap away
    gate.acquire("bucket")
    assert gate.late_limit == pytest.approx(0.015)
    # Late the first time: the slot is given up and a later one reserved; late again:
    # accepted rather than looping.
    assert len(sleeps) == 2
    log = [int(s) for s in redis.zrange(f"{prefix}:bucket:log", 0, -1)]
    assert log == [ticket(other).slot, ticket(gate).slot]
    assert ticket(gate).index == 1  # the void slot's number went back too


def test_penalize_adapts_the_share_from_the_rejected_requests_index(
    redis: Redis, prefix: str
) -> None:
    gate = limiter(redis, prefix, Sleeps(), RateLimit(10, 1.0), max_hold=30.0)
    for _ in range(8):
        gate.acquire("bucket")
    rejected = ticket(gate)  # the 8th of ours in the window: 7 went before it
    gate.penalize("bucket", 0.3)
    current = gate.episode("bucket")
    assert current is not None
    assert (current.ceiling, current.start, current.first_slot) == (7, 6, rejected.slot)
    assert gate.share("bucket") == 6
    gate.acquire("bucket")  # after the cooldown, at the adapted share
    assert ticket(gate).share == 6
    assert ticket(gate).slot >= current.resume_at


def test_a_429_of_a_request_still_in_flight_is_the_same_episode(
    redis: Redis, prefix: str
) -> None:
    first = limiter(redis, prefix, Sleeps(), RateLimit(10, 1.0), max_hold=30.0)
    second = limiter(redis, prefix, Sleeps(), RateLimit(10, 1.0), max_hold=30.0)
    for _ in range(6):
        first.acquire("bucket")
    second.acquire("bucket")  # index 6, sent just after first's index 5
    second.penalize("bucket", 1.0)  # its 429 comes back first...
    first.penalize("bucket", 1.0)  # ...then the earlier request's
    current = first.episode("bucket")
    assert current is not None
    assert current.ceiling == 5
    first_episode_resume = current.resume_at
    second.penalize("bucket", 1.0)  # no ticket left: extends the cooldown only
    current = first.episode("bucket")
    assert current is not None
    assert current.ceiling == 5
    assert current.resume_at >= first_episode_resume


def test_a_stale_write_is_refused(redis: Redis, prefix: str) -> None:
    gate = limiter(redis, prefix, Sleeps())
    gate.penalize("bucket", 1.0)
    keys = [f"{prefix}:bucket:{k}" for k in ("cooldown", "episode", "schedule")]
    stale = gate._write(keys=keys, args=["", 1, 1, 1, 1, -1, 60_000, 1, 1])
    assert stale == 0
    current = gate.episode("bucket")
    assert current is not None and current.ceiling == 4


def test_polar_client_reports_its_429_with_the_rejected_request(
    redis: Redis, prefix: str
) -> None:
    answers = iter([200] * 7 + [429])

    def respond(request: httpx.Request) -> httpx.Response:
        status = next(answers)
        if status == 429:
            return httpx.Response(429, headers={"retry-after": "1"})
        return httpx.Response(200, json={"seats": [], "available_seats": 0, "total_seats": 0})

    gate = limiter(redis, prefix, Sleeps(), RateLimit(10, 1.0))
    token = SecretStr("polar_oat_test")
    http = build_http_client("https://polar.test", connect_timeout=1.0, read_timeout=1.0,
                             transport=httpx.MockTransport(respond), throttle=gate)
    client = PolarClient(http, token)
    for _ in range(7):
        client.list_seats(subscription_id="s")
    with pytest.raises(PolarHTTPError) as info:
        client.list_seats(subscription_id="s")
    assert info.value.status == 429
    current = gate.episode(token_bucket(token))
    assert current is not None and current.ceiling == 7
    assert gate.cooldown_remaining(token_bucket(token)) == pytest.approx(1.0, abs=0.1)


# -- against a simulated Polar fixed window ----------------------------------------------


@dataclass
class FixedWindow:
    """Polar's limiter (asgi-ratelimit's Redis backend): a window opens at the first hit
    after the previous one expired, another integration spends ``background`` of it as it
    opens, refused hits are not counted, a 429 says retry-after = the window length."""

    limit: int
    window: float
    background: int = 0
    opened: float = float("-inf")
    left: int = 0
    windows: list[list[float]] = field(default_factory=list)  # [opened, admitted, refused]
    lock: threading.Lock = field(default_factory=threading.Lock)

    def hit(self, now: float) -> float | None:
        with self.lock:
            if now >= self.opened + self.window:
                self.opened, self.left = now, self.limit - self.background
                self.windows.append([now, 0, 0])
            if self.left < 1:
                self.windows[-1][2] += 1
                return self.window
            self.left -= 1
            self.windows[-1][1] += 1
            return None

    @property
    def rejected(self) -> int:
        return int(sum(w[2] for w in self.windows))


def drive(gate: SharedRateLimiter, server: FixedWindow, admitted: int, *, threads: int = 3,
          on_admit: Any = None) -> list[int]:
    """``threads`` workers send through ``gate`` until ``admitted`` requests got through;
    returns the fleet's share seen at each admission."""
    done: list[int] = []
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work() -> None:
        try:
            while True:
                with lock:
                    if len(done) >= admitted:
                        return
                gate.acquire("bucket")
                retry_after = server.hit(time.monotonic())
                if retry_after is not None:
                    gate.penalize("bucket", retry_after)
                    continue
                with lock:
                    done.append(ticket(gate).share)
                if on_admit is not None:
                    on_admit(len(done))
        except BaseException as error:  # pragma: no cover - surfaced below
            errors.append(error)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert not errors, errors
    return done


# 10 per 250 ms windows; a 10 % allowance (25 ms) absorbs thread scheduling on a busy
# machine; bursts at twice the average rate (12.5 ms apart), so a 429 is known to every
# process before the next request goes.
SIM = RateLimit(10, 0.25)
SIM_KW: dict[str, Any] = {"headroom": 0.1, "max_allowance": 1.0, "burst": 2.0, "max_hold": 1.0}


def test_steady_state_against_a_fixed_window_gives_no_429(redis: Redis, prefix: str) -> None:
    server = FixedWindow(limit=10, window=0.25)
    gate = SharedRateLimiter(redis, prefix, SIM, **SIM_KW)
    admitted_at: dict[int, float] = {}
    started = time.monotonic()
    drive(gate, server, 80, on_admit=lambda n: admitted_at.setdefault(n, time.monotonic()))
    elapsed = admitted_at[80] - started
    assert server.rejected == 0
    # Threads still inside ``acquire`` when the 80th got through may send a few more.
    assert [w[1] for w in server.windows[:8]] == [10] * 8
    # 8 windows: 7 whole spans plus the last burst (9 gaps of 12.5 ms), not 8 evenly
    # spread windows (7 spans plus 9 tenths of a window).
    assert elapsed < 7 * 0.275 + 0.125 + 0.05


def test_after_interference_the_adapted_share_gives_no_second_429(
    redis: Redis, prefix: str
) -> None:
    server = FixedWindow(limit=10, window=0.25, background=3)
    gate = SharedRateLimiter(redis, prefix, SIM, tuning=Tuning(1, 1, 60), **SIM_KW)
    shares = drive(gate, server, 50)
    assert server.rejected == 1  # the one that revealed the other integration
    assert server.windows[0][1:] == [7, 1]
    current = gate.episode("bucket")
    assert current is not None and current.ceiling == 7
    # After the cooldown: one window at 6, then back up to the ceiling, and held there.
    assert shares[7] == 6
    assert shares[-1] == 7
    assert max(shares[7:]) == 7
    assert all(w[1] + 3 <= 10 for w in server.windows)


def test_after_the_hold_it_probes_back_up_when_the_interference_is_gone(
    redis: Redis, prefix: str
) -> None:
    server = FixedWindow(limit=10, window=0.25, background=3)

    def interference_ends(admitted: int) -> None:
        if admitted == 7:
            server.background = 0

    gate = SharedRateLimiter(redis, prefix, SIM, tuning=Tuning(1, 1, 2), **SIM_KW)
    shares = drive(gate, server, 75, on_admit=interference_ends)
    assert server.rejected == 1
    assert shares[-1] == 10  # 7 + one step per window after the hold, back to the budget
    assert sorted(set(shares)) == [6, 7, 8, 9, 10]


def test_a_probe_into_steady_interference_costs_one_429_per_hold(
    redis: Redis, prefix: str
) -> None:
    server = FixedWindow(limit=10, window=0.25, background=3)
    gate = SharedRateLimiter(redis, prefix, SIM, tuning=Tuning(1, 1, 3), **SIM_KW)
    shares = drive(gate, server, 60)
    # The first 429 reveals the interference; after the hold (3 windows, plus one to climb
    # the margin back) the probe at 8 gets one 429, and the share is back at the same
    # ceiling: one 429 per hold, never two in a window.
    rejected = [i for i, w in enumerate(server.windows) if w[2]]
    assert rejected[0] == 0
    assert len(rejected) >= 2
    assert all(server.windows[i][2] == 1 for i in rejected)
    assert all(b - a >= 4 for a, b in itertools.pairwise(rejected))
    current = gate.episode("bucket")
    assert current is not None and current.ceiling == 7
    assert 8 in shares


# -- lanes: urgent work takes the next free slot -------------------------------------------


def test_urgent_work_takes_the_slot_a_sleeping_bulk_caller_reserved(
    redis: Redis, prefix: str
) -> None:
    """A batch's process sleeps towards its reserved slot; a termination arrives: it gets
    that slot (no later than the batch would have sent), the batch's process finds its
    slot gone when it wakes and reserves the next one. The log keeps one entry per request
    actually sent, so the window accounting is unchanged."""
    filler = limiter(redis, prefix, Sleeps())
    for _ in range(5):
        filler.acquire("bucket")  # the span is full: the next slot is about a span away
    urgent_sleeps = Sleeps()
    urgent = limiter(redis, prefix, urgent_sleeps)
    first_bulk_slot: list[int] = []

    def termination_arrives(seconds: float) -> None:
        if not first_bulk_slot:
            first_bulk_slot.append(int(redis.zrange(f"{prefix}:bucket:log", -1, -1)[0]))
            with urgent_lane():
                urgent.acquire("bucket")

    bulk = limiter(redis, prefix, termination_arrives)
    bulk.acquire("bucket")
    assert ticket(urgent).slot == first_bulk_slot[0]
    assert ticket(bulk).slot > ticket(urgent).slot
    log = [int(s) for s in redis.zrange(f"{prefix}:bucket:log", 0, -1)]
    assert log[-2:] == [ticket(urgent).slot, ticket(bulk).slot]  # the last `budget` kept
    assert urgent_sleeps.calls and urgent_sleeps.calls[0] <= 1.03


def test_urgent_work_does_not_take_another_urgent_callers_slot(
    redis: Redis, prefix: str
) -> None:
    filler = limiter(redis, prefix, Sleeps())
    for _ in range(5):
        filler.acquire("bucket")
    first, second = limiter(redis, prefix, Sleeps()), limiter(redis, prefix, Sleeps())
    with urgent_lane():
        first.acquire("bucket")
        second.acquire("bucket")
    assert ticket(second).slot > ticket(first).slot
    assert redis.zcard(f"{prefix}:bucket:bulk") == 0


def test_bulk_callers_keep_their_slots_without_urgent_work(redis: Redis, prefix: str) -> None:
    gate = limiter(redis, prefix, Sleeps())
    for _ in range(7):
        gate.acquire("bucket")
    # Every slot that was waited for was claimed on waking: none is left to take.
    assert redis.zcard(f"{prefix}:bucket:bulk") == 0


def test_a_bulk_caller_waking_just_after_its_slot_still_claims_it(
    redis: Redis, prefix: str
) -> None:
    """Another process acquiring between a bulk slot's time and its caller's claim must not
    void that slot (it would be counted in the window and never used)."""
    twenty = RateLimit(20.0, 1.0)
    limiter(redis, prefix, Sleeps(), twenty).acquire("bucket")  # the next slot is a gap away
    other = limiter(redis, prefix, Sleeps(), twenty)
    sleeps: list[float] = []

    def wake_a_little_late(seconds: float) -> None:
        sleeps.append(seconds)
        time.sleep(seconds + 0.003)
        other.acquire("bucket")  # runs after our slot's time, before our claim

    gate = limiter(redis, prefix, wake_a_little_late, twenty)
    gate.acquire("bucket")
    assert len(sleeps) == 1  # claimed the first slot it reserved
    assert ticket(other).slot > ticket(gate).slot
