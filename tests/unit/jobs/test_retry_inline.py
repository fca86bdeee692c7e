"""Tests of the in-process retry loop ``worker.jobs.polarstep.PolarStep.retry_inline``.

The step's I/O and the record are minimal fakes: the loop reads only the policy and the
record's ``attempts``, ``created_at`` and ``effective_at``. ``sleep`` is recorded, never real.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest

from worker.decisions.outcomes import RetryPolicy
from worker.jobs.outcome import Outcomes
from worker.jobs.polarstep import PolarStep
from worker.polar.errors import Fault, PolarError, PolarHTTPError, PolarTransportError
from worker.store.models import utcnow


class NoMetrics:
    def retry(self, kind: str) -> None:
        return None


class Unused:
    """The store and the fleet pause: the loop itself never touches them."""

    probe_seconds = 0.0

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the retry loop used {name}")


def step_of(policy: RetryPolicy, sleep: Callable[[float], None]) -> PolarStep:
    outcomes = Outcomes(Unused(), NoMetrics(), running_lease_seconds=60.0)
    return PolarStep(outcomes, policy=policy, metrics=NoMetrics(), pause=Unused(),
                     pause_scope="test", sleep=sleep)


def retry_inline(
    policy: RetryPolicy, record: FakeRecord, fn: Callable[[], Any],
    sleep: Callable[[float], None],
) -> Any:
    return step_of(policy, sleep).retry_inline(record, fn)


@dataclass
class FakeRecord:
    attempts: int = 1
    created_at: datetime = field(default_factory=utcnow)
    effective_at: datetime | None = None
    window_started_at: datetime | None = None
    attempts_before_window: int = 0


class Script:
    """Raise the given errors in turn, then return ``"done"``; count the calls."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


# These tests are about sleeping inline: a policy that allows waits up to 10 s in a slot
# (the default gives the slot back for anything over 0.1 s).
INLINE = RetryPolicy(inline_max_wait=10.0)

def run(
    fn: Callable[[], Any],
    *,
    policy: RetryPolicy | None = None,
    record: FakeRecord | None = None,
) -> tuple[Any, list[float]]:
    sleeps: list[float] = []
    result = retry_inline(policy or INLINE, record or FakeRecord(), fn, sleeps.append)
    return result, sleeps


def transient() -> PolarError:
    return PolarTransportError("timeout", "ReadTimeout")


def rate_limited(retry_after: float | None) -> PolarError:
    return PolarHTTPError(429, "RateLimited", "too many requests", retry_after)


def test_success_at_once_never_sleeps() -> None:
    script = Script()
    result, sleeps = run(script)
    assert (result, script.calls, sleeps) == ("done", 1, [])


def test_two_transient_failures_then_success_sleep_twice_with_growth() -> None:
    script = Script(transient(), PolarHTTPError(503, None, "unavailable"))
    result, sleeps = run(script)
    assert result == "done"
    assert script.calls == 3
    assert len(sleeps) == 2
    # backoff 0.5 then 1.0, each with up to +50% jitter
    assert 0.5 <= sleeps[0] <= 0.75
    assert 1.0 <= sleeps[1] <= 1.5
    assert sleeps[1] > sleeps[0]


def test_rate_limited_with_retry_after_one_second_sleeps_about_one_second() -> None:
    script = Script(rate_limited(1.0))
    result, sleeps = run(script)
    assert result == "done"
    assert script.calls == 2
    (slept,) = sleeps
    assert 1.0 <= slept <= 1.1


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(PolarHTTPError(404, "ResourceNotFound", "Seat not found"), id="a 404"),
        pytest.param(PolarHTTPError(401, "Unauthorized", "Unauthorized"), id="a 401"),
        pytest.param(PolarHTTPError(422, "RequestValidationError", []), id="a 422"),
    ],
)
def test_permanent_error_is_raised_at_once_without_sleep(error: PolarError) -> None:
    assert error.fault is Fault.PERMANENT
    script = Script(error)
    sleeps: list[float] = []
    with pytest.raises(PolarHTTPError) as info:
        retry_inline(INLINE, FakeRecord(), script, sleeps.append)
    assert info.value is error
    assert script.calls == 1
    assert sleeps == []


@pytest.mark.parametrize(
    "retry_after",
    [
        pytest.param(10.5, id="a retry-after just over inline_max_wait is not slept inline"),
        pytest.param(60.0, id="a one-minute retry-after is not slept inline"),
    ],
)
def test_long_retry_after_is_raised_without_inline_sleep(retry_after: float) -> None:
    error = rate_limited(retry_after)
    script = Script(error)
    sleeps: list[float] = []
    with pytest.raises(PolarHTTPError) as info:
        retry_inline(INLINE, FakeRecord(), script, sleeps.append)
    assert info.value is error
    assert info.value.retry_after == retry_after
    assert script.calls == 1
    assert sleeps == []


def test_transient_failures_stop_after_inline_attempts() -> None:
    errors = [transient() for _ in range(10)]
    script = Script(*errors)
    sleeps: list[float] = []
    with pytest.raises(PolarTransportError) as info:
        retry_inline(INLINE, FakeRecord(), script, sleeps.append)
    assert info.value is errors[3]
    assert script.calls == 4
    assert len(sleeps) == 3
    assert sleeps == sorted(sleeps)


@pytest.mark.parametrize(
    ("inline_attempts", "calls"),
    [
        pytest.param(1, 1, id="one inline attempt means no inline retry"),
        pytest.param(2, 2, id="two inline attempts means one inline retry"),
    ],
)
def test_inline_attempts_come_from_the_policy(inline_attempts: int, calls: int) -> None:
    script = Script(*(transient() for _ in range(5)))
    with pytest.raises(PolarTransportError):
        run(script, policy=RetryPolicy(inline_attempts=inline_attempts, inline_max_wait=10.0))
    assert script.calls == calls


def test_no_inline_retry_when_the_budget_is_spent() -> None:
    old = FakeRecord(created_at=utcnow() - timedelta(hours=2))
    script = Script(transient())
    with pytest.raises(PolarTransportError):
        run(script, record=old)
    assert script.calls == 1


def test_effective_at_starts_the_budget_clock() -> None:
    record = FakeRecord(
        created_at=utcnow() - timedelta(hours=2), effective_at=utcnow() - timedelta(seconds=5)
    )
    script = Script(transient())
    result, sleeps = run(script, record=record)
    assert result == "done"
    assert len(sleeps) == 1


def test_non_polar_errors_are_not_retried() -> None:
    script = Script(RuntimeError("bug"))
    with pytest.raises(RuntimeError, match="bug"):
        run(script)
    assert script.calls == 1


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        pytest.param(rate_limited(1.0), 1.1, id="a 429 adds at most 10 percent jitter"),
        pytest.param(transient(), 0.75, id="a transient failure adds at most 50 percent jitter"),
    ],
)
def test_jitter_bounds(monkeypatch: pytest.MonkeyPatch, error: PolarError, expected: float) -> None:
    import random  # the module worker.jobs.polarstep draws its jitter from

    monkeypatch.setattr(random, "uniform", lambda low, high: high)
    _, sleeps = run(Script(error))
    assert sleeps == [pytest.approx(expected)]
