"""Unit tests of the sandbox's rate limit: Polar's fixed window (asgi-ratelimit 0.10.0)."""

from __future__ import annotations

import pytest

from worker.sandbox.ratelimit import FixedWindowLimiter, RateLimit
from worker.sandbox.state import SandboxState


@pytest.mark.parametrize(
    ("text", "limit", "window"),
    [
        ("20/second", 20, 1),
        ("100/minute", 100, 60),
        ("500 per minute", 500, 60),
        ("5/10s", 5, 10),
        ("3/2 minutes", 3, 120),
        ("7/hour", 7, 3600),
    ],
)
def test_rate_limit_parse(text: str, limit: int, window: float) -> None:
    assert RateLimit.parse(text) == RateLimit(limit, window)


@pytest.mark.parametrize("text", ["", "fast", "0/second", "10/fortnight", "-1/second"])
def test_rate_limit_parse_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        RateLimit.parse(text)


def test_rate_limit_str_round_trips() -> None:
    assert str(RateLimit.parse("100/minute")) == "100/minute"
    assert RateLimit.parse(str(RateLimit(5, 10))) == RateLimit(5, 10)


@pytest.mark.parametrize(
    ("rate", "retry_after"),
    [
        (RateLimit(100, 60), 60),
        (RateLimit(2, 1), 1),
        (RateLimit(5, 10), 10),
        (RateLimit(1, 1.5), 2),
    ],
)
def test_retry_after_is_the_window_length(rate: RateLimit, retry_after: int) -> None:
    assert rate.retry_after == retry_after


def test_window_opens_at_the_first_hit_and_rejections_do_not_count() -> None:
    limiter, rate = FixedWindowLimiter(), RateLimit(2, 10)
    assert limiter.hit("k", rate, 3.0) is None  # opens the window [3, 13)
    assert limiter.hit("k", rate, 4.0) is None
    assert limiter.hit("k", rate, 5.0) == 10  # the window length, not the 8 s left
    assert limiter.hit("k", rate, 12.99) == 10
    assert limiter.hit("k", rate, 13.0) is None  # a new window opens at 13, not at 10 or 20
    assert limiter.hit("k", rate, 14.0) is None
    assert limiter.hit("k", rate, 22.9) == 10
    assert limiter.hit("other", rate, 22.9) is None  # keys are independent


def test_fixed_window_allows_a_burst_across_its_boundary() -> None:
    limiter, rate = FixedWindowLimiter(), RateLimit(3, 1)
    assert [limiter.hit("k", rate, t) for t in (0.0, 0.9, 0.95)] == [None, None, None]
    # Unlike a sliding window, three more pass right after the window ends.
    assert [limiter.hit("k", rate, t) for t in (1.0, 1.01, 1.02)] == [None, None, None]
    assert limiter.hit("k", rate, 1.03) == 1


def test_idle_gap_does_not_align_windows_to_the_clock() -> None:
    limiter, rate = FixedWindowLimiter(), RateLimit(1, 60)
    assert limiter.hit("k", rate, 0.0) is None
    assert limiter.hit("k", rate, 100.0) is None  # opens [100, 160), not [60, 120)
    assert limiter.hit("k", rate, 125.0) == 60
    assert limiter.hit("k", rate, 160.0) is None


@pytest.mark.parametrize(
    ("background", "admitted"),
    [(0.0, 10), (0.25, 8), (0.5, 5), (0.99, 1), (1.0, 0)],
)
def test_background_usage_spends_part_of_each_window(background: float, admitted: int) -> None:
    limiter, rate = FixedWindowLimiter(), RateLimit(10, 60)
    results = [limiter.hit("k", rate, 1.0, background) for _ in range(12)]
    assert results.count(None) == admitted
    assert set(results) - {None} <= {60}
    later = [limiter.hit("k", rate, 61.0, background) for _ in range(12)]
    assert later.count(None) == admitted  # spent again at the start of every window
    [window] = limiter.windows(61.0, rate).values()
    assert window["background"] == 10 - admitted and window["admitted"] == admitted


def test_windows_report() -> None:
    limiter, rate = FixedWindowLimiter(), RateLimit(2, 60)
    for _ in range(3):
        limiter.hit("organization:x", rate, 5.0)
    assert limiter.windows(20.0, rate) == {
        "organization:x": {
            "opened_s_ago": 15.0,
            "limit": 2,
            "background": 0,
            "admitted": 2,
            "rejected": 1,
            "remaining": 0,
        }
    }
    assert limiter.windows(65.0, rate) == {}  # expired


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_state_buckets_and_background_apply_to_the_organization_only() -> None:
    clock = Clock()
    state = SandboxState(clock=clock)
    org = f"organization:{state.organization_id}"
    assert state.hit_rate_limit(org) is None  # unlimited by default
    state.configure(rate_limit="4/minute", background_usage=0.5)
    assert [state.hit_rate_limit(org) for _ in range(3)] == [None, None, 60]
    assert [state.hit_rate_limit("customer:c") for _ in range(5)] == [None] * 4 + [60]
    assert state.stats()["rate_windows"][org]["background"] == 2
    clock.now = 60.0
    assert state.hit_rate_limit(org) is None
