"""Tests of ``worker.ratelimit.SharedRateLimiter`` against the real local Redis.

Every test uses its own key prefix and deletes its keys afterwards. ``sleep`` is injected
and recorded, so the limiter's waits are observed without waiting.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from redis import Redis

from config.settings import RateLimit
from worker.ratelimit import SharedRateLimiter, ThrottleWait

TEN_PER_SECOND = RateLimit(count=10.0, period=1.0)
TOLERANCE = 0.02  # seconds: Redis round trips between two acquires on a local socket


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


def limiter(
    redis: Redis, prefix: str, sleeps: Sleeps, limit: RateLimit = TEN_PER_SECOND, **kwargs: Any
) -> SharedRateLimiter:
    return SharedRateLimiter(redis, prefix, limit, sleep=sleeps, **kwargs)


@pytest.mark.parametrize(
    ("limit", "headroom", "interval"),
    [
        pytest.param(RateLimit(10.0, 1.0), 0.0, 0.1, id="10 per second without headroom"),
        pytest.param(RateLimit(10.0, 1.0), 0.03, 1.03 / 10, id="10 per second with 3% headroom"),
        pytest.param(RateLimit(20.0, 1.0), 0.03, 1.03 / 20,
                     id="20 per second: a 30 ms allowance"),
        pytest.param(RateLimit(100.0, 60.0), 0.03, 60.25 / 100,
                     id="the sandbox 100 per minute: the allowance is capped at 250 ms"),
        pytest.param(RateLimit(500.0, 60.0), 0.03, 60.25 / 500,
                     id="the production 500 per minute: 0.4% under the limit, not 3%"),
        pytest.param(RateLimit(10.0, 1.0), 0.5, 0.125,
                     id="50% headroom of a second is capped at 250 ms"),
    ],
)
def test_interval(
    redis: Redis, prefix: str, limit: RateLimit, headroom: float, interval: float
) -> None:
    assert limiter(redis, prefix, Sleeps(), limit, headroom=headroom).interval == pytest.approx(
        interval
    )


def test_acquires_are_evenly_spaced_by_interval(redis: Redis, prefix: str) -> None:
    sleeps = Sleeps()
    gate = limiter(redis, prefix, sleeps)
    for _ in range(6):
        gate.acquire("bucket")
    # The first request goes at once; each later one waits one interval more.
    assert len(sleeps.calls) == 5
    expected = [gate.interval * n for n in range(1, 6)]
    for got, want in zip(sleeps.calls, expected, strict=True):
        assert want - TOLERANCE <= got <= want
    gaps = [b - a for a, b in zip(sleeps.calls, sleeps.calls[1:], strict=False)]
    for gap in gaps:
        assert gap == pytest.approx(gate.interval, abs=TOLERANCE)


def test_an_idle_bucket_does_not_wait(redis: Redis, prefix: str) -> None:
    sleeps = Sleeps()
    gate = limiter(redis, prefix, sleeps, RateLimit(50.0, 1.0))
    gate.acquire("bucket")
    time.sleep(gate.interval + 0.02)
    gate.acquire("bucket")
    assert sleeps.calls == []


def test_two_instances_with_one_prefix_share_the_budget(redis: Redis, prefix: str) -> None:
    first_sleeps, second_sleeps = Sleeps(), Sleeps()
    first = limiter(redis, prefix, first_sleeps)
    second = limiter(redis, prefix, second_sleeps)
    first.acquire("bucket")
    second.acquire("bucket")
    first.acquire("bucket")
    assert first_sleeps.calls[0] == pytest.approx(2 * first.interval, abs=TOLERANCE)
    (waited,) = second_sleeps.calls
    assert waited == pytest.approx(second.interval, abs=TOLERANCE)


def test_separate_buckets_do_not_interfere(redis: Redis, prefix: str) -> None:
    sleeps = Sleeps()
    gate = limiter(redis, prefix, sleeps)
    gate.acquire("token-a")
    gate.acquire("token-b")
    other = limiter(redis, prefix, sleeps)
    other.acquire("token-c")
    assert sleeps.calls == []
    gate.acquire("token-a")
    assert sleeps.calls == [pytest.approx(gate.interval, abs=TOLERANCE)]


def test_separate_prefixes_do_not_interfere(redis: Redis, prefix: str) -> None:
    sleeps = Sleeps()
    limiter(redis, f"{prefix}:one", sleeps).acquire("bucket")
    limiter(redis, f"{prefix}:two", sleeps).acquire("bucket")
    assert sleeps.calls == []


class RealSleeps(Sleeps):
    """Records and really sleeps: the limiter re-checks the shared cooldown after waking."""

    def __call__(self, seconds: float) -> None:
        super().__call__(seconds)
        time.sleep(seconds)


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
    assert waited_again <= penalized.interval + 0.01  # the cooldown is over by now


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
    other.acquire("bucket")  # takes the free slot: the sleeper waits one interval
    sleeper.acquire("bucket")
    assert len(calls) == 2
    assert calls[0] == pytest.approx(sleeper.interval, abs=0.02)
    assert calls[1] >= 0.4 - calls[0] - 0.05


def test_penalize_only_touches_its_bucket(redis: Redis, prefix: str) -> None:
    sleeps = Sleeps()
    gate = limiter(redis, prefix, sleeps)
    gate.penalize("bucket", 30)
    gate.acquire("another-bucket")
    assert sleeps.calls == []
    assert gate.cooldown_remaining("another-bucket") == 0.0


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
    next_slot = redis.get(f"{prefix}:bucket:tat")  # the penalty moved it to the cooldown end
    with pytest.raises(ThrottleWait) as info:
        gate.acquire("bucket")
    assert penalty - 0.1 <= info.value.seconds <= penalty
    assert f"{info.value.seconds:.2f}s" in str(info.value)
    assert sleeps.calls == []
    # A refused acquire reserves no slot.
    assert redis.get(f"{prefix}:bucket:tat") == next_slot


def test_throttle_wait_when_the_queue_of_slots_is_longer_than_max_hold(
    redis: Redis, prefix: str
) -> None:
    sleeps = Sleeps()
    gate = limiter(redis, prefix, sleeps, RateLimit(2.0, 1.0), headroom=0.0, max_hold=1.0)
    gate.acquire("bucket")  # now
    gate.acquire("bucket")  # +0.5s
    gate.acquire("bucket")  # +1.0s (within max_hold, just)
    with pytest.raises(ThrottleWait) as info:
        gate.acquire("bucket")  # +1.5s > max_hold
    assert info.value.seconds == pytest.approx(1.5, abs=TOLERANCE)
    assert len(sleeps.calls) == 2


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
    tat_ttl = redis.pttl(f"{prefix}:bucket:tat")
    cooldown_ttl = redis.pttl(f"{prefix}:bucket:cooldown")
    assert 0 < tat_ttl <= 63_000
    assert 0 < cooldown_ttl <= 62_000


def test_requests_after_a_cooldown_are_spaced_not_bunched(redis: Redis, prefix: str) -> None:
    sleeps = RealSleeps()
    gate = limiter(redis, prefix, sleeps, max_hold=5.0)
    gate.penalize("bucket", 0.5)
    gate.acquire("bucket")
    gate.acquire("bucket")
    first, second = sleeps.calls
    assert first == pytest.approx(0.5, abs=0.05)
    # The next slot starts at the cooldown's end: the second request waits one interval
    # after the first instead of firing with it.
    assert second == pytest.approx(gate.interval, abs=0.03)


def test_a_process_waking_late_takes_a_fresh_slot_once(redis: Redis, prefix: str) -> None:
    now = [0.0]
    sleeps: list[float] = []

    def oversleep(seconds: float) -> None:  # every sleep ends 40 ms late
        sleeps.append(seconds)
        now[0] += seconds + 0.04

    gate = SharedRateLimiter(redis, prefix, RateLimit(20.0, 1.0), sleep=oversleep,
                             clock=lambda: now[0])
    other = limiter(redis, prefix, Sleeps())
    other.acquire("bucket")  # the free slot is taken: ours is one interval away
    gate.acquire("bucket")
    assert gate.late_limit == pytest.approx(0.015)
    # Late the first time: the slot is given up and a later one reserved; late again:
    # accepted rather than looping.
    assert len(sleeps) == 2
    assert sleeps[1] >= gate.interval - 0.05
