"""Tests of ``worker.polar.pacing``: the limiter's pure decisions, as tables."""

from __future__ import annotations

import pytest

from config.settings import RateLimit
from worker.polar.pacing import (
    Episode,
    Rejected,
    Spacing,
    Tuning,
    after_429,
    schedule,
    share_at,
    spacing,
    tuning_for,
)

S = 1_000_000  # µs

# -- pure decisions --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("limit", "kwargs", "expected"),
    [
        pytest.param(RateLimit(20, 1.0), {}, Spacing(20, S, 1_030_000, 12_500, S),
                     id="20/second: 30 ms allowance, bursts at up to 80/s"),
        pytest.param(RateLimit(100, 60.0), {}, Spacing(100, 60 * S, 60_250_000, 150_000, S),
                     id="sandbox 100/minute: the allowance is capped at 250 ms"),
        pytest.param(RateLimit(500, 60.0), {}, Spacing(500, 60 * S, 60_250_000, 30_000, S),
                     id="production 500/minute: 0.4% under the limit, not 3%"),
        pytest.param(RateLimit(10, 1.0), {"headroom": 0.0}, Spacing(10, S, S, 25_000, S),
                     id="no headroom"),
        pytest.param(RateLimit(2.5, 1.0), {}, Spacing(2, 800_000, 824_000, 100_000, S),
                     id="2.5/second: 2 whole requests per 0.8 s"),
        pytest.param(RateLimit(0.5, 1.0), {}, Spacing(1, 2 * S, 2_060_000, 500_000, S),
                     id="0.5/second: 1 request per 2 s"),
        pytest.param(RateLimit(10, 1.0), {"burst": 1.0, "max_quiet": 0.5},
                     Spacing(10, S, 1_030_000, 100_000, 500_000), id="no burst"),
    ],
)
def test_spacing(limit: RateLimit, kwargs: dict[str, float], expected: Spacing) -> None:
    assert spacing(limit, **kwargs) == expected


@pytest.mark.parametrize(
    ("budget", "expected"),
    [
        pytest.param(20, Tuning(1, 1, 60, 0.5), id="20: one request"),
        pytest.param(100, Tuning(2, 1, 60, 0.5), id="sandbox 100"),
        pytest.param(500, Tuning(10, 5, 60, 0.5), id="production 500"),
        pytest.param(1, Tuning(1, 1, 60, 0.5), id="never below one"),
    ],
)
def test_tuning_for(budget: int, expected: Tuning) -> None:
    assert tuning_for(budget) == expected


SP = Spacing(budget=20, window_us=S, span_us=1_030_000, min_gap_us=12_500, quiet_us=S)
TU = Tuning(margin=1, step=1, hold_windows=5)
NOW = 1_000 * S
HOLD = (TU.hold_windows + 1) * SP.span_us  # the hold plus the climb over the margin


def episode(ceiling: int, *, resume: int = NOW + S, first: int = NOW - 100_000,
            start: int | None = None) -> Episode:
    return Episode(resume_at=resume, start=ceiling - 1 if start is None else start,
                   ceiling=ceiling, hold_until=resume + HOLD, first_slot=first)


@pytest.mark.parametrize(
    ("cooldown", "current", "rejected", "share_now", "expected"),
    [
        pytest.param(0, None, Rejected(NOW - 100_000, 19, 20), 20, episode(19),
                     id="the window left 19 of ours: ceiling 19, start one below"),
        pytest.param(0, None, Rejected(NOW - 100_000, 12, 20), 20, episode(12),
                     id="another integration spent 8: ceiling 12"),
        pytest.param(0, None, Rejected(NOW - 100_000, 0, 20), 20, episode(10),
                     id="nothing left, or not Polar's window: at most halved"),
        pytest.param(0, None, Rejected(NOW - 100_000, 0, 10), 10, episode(10),
                     id="a series of 429s never takes the share below half the budget"),
        pytest.param(0, None, Rejected(NOW - 100_000, 19, 15), 15, episode(14),
                     id="an index past the share (misaligned windows): below the share"),
        pytest.param(0, None, None, 20, episode(19, first=-1),
                     id="a 429 without a known request: one margin below the share"),
        pytest.param(0, episode(19, resume=NOW - S), Rejected(NOW - 100_000, 17, 19), 19,
                     episode(17), id="after the cooldown: a new episode, a lower ceiling"),
        pytest.param(NOW + S, episode(19), Rejected(NOW - 50_000, 19, 20), 20,
                     episode(19), id="in flight during the cooldown: same episode"),
        pytest.param(NOW + S, episode(19, first=NOW - 50_000), Rejected(NOW - 100_000, 17, 20),
                     20, episode(17, first=NOW - 100_000),
                     id="an earlier request answered later sets the ceiling"),
        pytest.param(NOW + 2 * S, episode(19, resume=NOW + 2 * S), None, 20,
                     Episode(NOW + 2 * S, 18, 19, NOW + 2 * S + HOLD, NOW - 100_000),
                     id="the cooldown is extended, never shortened"),
    ],
)
def test_after_429(
    cooldown: int, current: Episode | None, rejected: Rejected | None, share_now: int,
    expected: Episode,
) -> None:
    got = after_429(now=NOW, retry_after_us=S, cooldown_until=cooldown, current=current,
                    rejected=rejected, share_now=share_now, spacing=SP, tuning=TU)
    assert got == expected


EP = Episode(resume_at=NOW, start=15, ceiling=17, hold_until=NOW + 10 * SP.span_us,
             first_slot=NOW - S)


@pytest.mark.parametrize(
    ("at", "current", "expected"),
    [
        pytest.param(NOW, None, 20, id="no 429 yet: the whole budget"),
        pytest.param(NOW - 1, EP, 15, id="during the cooldown: the start"),
        pytest.param(NOW, EP, 15, id="the cooldown's end: ceiling minus margin"),
        pytest.param(NOW + SP.span_us - 1, EP, 15, id="first window"),
        pytest.param(NOW + SP.span_us, EP, 16, id="one window without a 429: one step"),
        pytest.param(NOW + 2 * SP.span_us, EP, 17, id="two windows: the ceiling"),
        pytest.param(NOW + 9 * SP.span_us, EP, 17, id="held at the ceiling"),
        pytest.param(NOW + 10 * SP.span_us, EP, 18, id="after the hold: probing above"),
        pytest.param(NOW + 11 * SP.span_us, EP, 19, id="one step per window"),
        pytest.param(NOW + 99 * SP.span_us, EP, 20, id="up to the budget, no further"),
    ],
)
def test_share_at(at: int, current: Episode | None, expected: int) -> None:
    assert share_at(at, current, SP, Tuning(margin=2, step=1, hold_windows=8)) == expected


@pytest.mark.parametrize(
    ("current", "tuning", "budget"),
    [
        pytest.param(EP, Tuning(2, 1, 8), 20, id="20/second"),
        pytest.param(Episode(NOW, 1, 1, NOW + 3 * SP.span_us, -1), Tuning(1, 1, 3), 20,
                     id="from one request"),
        pytest.param(Episode(NOW, 470, 480, NOW + 62 * SP.span_us, -1), Tuning(10, 5, 60), 500,
                     id="production 500/minute"),
        pytest.param(Episode(NOW, 1, 1, NOW + 2 * SP.span_us, -1), Tuning(1, 1, 1), 1,
                     id="a budget of one"),
    ],
)
def test_the_schedule_the_script_reads_is_share_at(
    current: Episode, tuning: Tuning, budget: int
) -> None:
    sp = Spacing(budget, SP.window_us, SP.span_us, SP.min_gap_us, SP.quiet_us)
    points = schedule(current, sp, tuning)
    assert points[0] == (current.resume_at, current.start)
    assert points[-1][1] == budget
    assert [share for _t, share in points] == sorted({share for _t, share in points})
    end = points[-1][0] + 3 * sp.span_us
    for at in range(current.resume_at, end, sp.span_us // 7):
        looked_up = [share for t, share in points if t <= at][-1]
        assert looked_up == share_at(at, current, sp, tuning), at
