"""One step of a request against Polar, and what its failure means for the request.

Every Polar call of a run (the seat-list reads and the DELETE of a seat request, the
discovery of a person request) goes through ``PolarStep.run``, the one place that:

* retries short waits in this process (tenacity, while ``plan_retry`` says RETRY_INLINE);
* turns the rate limiter's ``ThrottleWait`` into ``RetryLater``;
* pauses the queue on a fault every request of the token would get (``RetryLater`` until
  the next probe);
* otherwise plans the error (``plan_retry``) and stores the failure or the retry.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, TypeVar

from tenacity import RetryCallState, Retrying, stop_after_delay

from worker.decisions.outcomes import (
    Action,
    FleetFault,
    RetryPlan,
    RetryPolicy,
    classify_fleet_fault,
    plan_retry,
)
from worker.jobs.outcome import Outcome, Outcomes, RetryLater, RetryMetrics
from worker.jobs.runtime import Runtime
from worker.polar.errors import Fault, PolarError, PolarHTTPError
from worker.polar.ratelimit import ThrottleWait
from worker.store.models import RevocationRequest, utcnow
from worker.telemetry.logs import get_logger

log = get_logger("seat_revoker.revocation")
T = TypeVar("T")


class RetryClock(Protocol):
    """What of a request its retry budget is counted from."""

    @property
    def attempts(self) -> int: ...
    @property
    def attempts_before_window(self) -> int | None: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def effective_at(self) -> datetime | None: ...
    @property
    def window_started_at(self) -> datetime | None: ...


class PauseNote(Protocol):
    @property
    def hint(self) -> str: ...


class FleetSwitch(Protocol):
    """``worker.jobs.fleetpause.FleetPause``: what pauses the whole queue."""

    probe_seconds: float

    def pause(self, scope: str, fault: FleetFault, status: int | None) -> PauseNote: ...


@dataclass(frozen=True)
class Halted:
    """The step did not produce its value: the run ends with ``outcome``."""

    outcome: Outcome


class PolarStep:
    def __init__(
        self, outcomes: Outcomes, *, policy: RetryPolicy, metrics: RetryMetrics,
        pause: FleetSwitch, pause_scope: str, clock: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.outcomes = outcomes
        self.policy = policy
        self.metrics = metrics
        self.pause = pause
        self.pause_scope = pause_scope
        self.clock = clock
        self.sleep = sleep

    @classmethod
    def of(cls, rt: Runtime, sleep: Callable[[float], None] = time.sleep) -> PolarStep:
        """The step (and its outcome recording) over this process's clients."""
        outcomes = Outcomes(rt.store, rt.metrics,
                            running_lease_seconds=rt.settings.running_lease_seconds)
        return cls(outcomes, policy=rt.policy, metrics=rt.metrics, pause=rt.pause,
                   pause_scope=rt.pause_scope, sleep=sleep)

    def run(self, record: RevocationRequest, fn: Callable[[], T]) -> T | Halted:
        """``fn()`` with short retries; ``Halted`` with the stored outcome when Polar (or
        the rate limiter) says not now or never."""
        try:
            return self.retry_inline(record, fn)
        except ThrottleWait as wait:
            log.info("ratelimit.deferred", wait_s=round(wait.seconds, 3))
            return Halted(self.outcomes.waiting(
                record, wait.seconds, reason="waiting for rate-limit budget",
                event_detail={"wait": wait.seconds}))
        except PolarError as error:
            paused = self._pause_if_fleet_fault(record, error)
            if paused is not None:
                return Halted(paused)
            plan = self.plan(record, error, inline_attempt=self.policy.inline_attempts)
            return Halted(self.outcomes.failed(record, error, plan))

    def retry_inline(self, record: RetryClock, fn: Callable[[], T]) -> T:
        """Run ``fn``, retrying in this process while ``plan_retry`` says RETRY_INLINE;
        the last error is raised as it is."""

        def plan_of(state: RetryCallState) -> RetryPlan | None:
            error = state.outcome.exception() if state.outcome else None
            if not isinstance(error, PolarError):
                return None
            return self.plan(record, error, inline_attempt=state.attempt_number)

        def should_retry(state: RetryCallState) -> bool:
            plan = plan_of(state)
            return plan is not None and plan.action is Action.RETRY_INLINE

        def wait(state: RetryCallState) -> float:
            plan = plan_of(state)
            assert plan is not None
            error = state.outcome.exception() if state.outcome else None
            jitter = 0.1 if getattr(error, "fault", None) is Fault.RATE_LIMITED else 0.5
            return plan.delay * (1 + random.uniform(0, jitter))

        def before_sleep(state: RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome else None
            self.metrics.retry("inline")
            log.warning(
                "polar.request.retry",
                inline_attempt=state.attempt_number,
                wait_s=round(state.upcoming_sleep, 3),
                status=getattr(error, "status", None),
                error=str(error),
            )

        retrying = Retrying(
            retry=should_retry,
            wait=wait,
            stop=stop_after_delay(self.policy.inline_max_wait * self.policy.inline_attempts),
            sleep=self.sleep,
            before_sleep=before_sleep,
            reraise=True,
        )
        return retrying(fn)

    def plan(self, record: RetryClock, error: PolarError, *, inline_attempt: int) -> RetryPlan:
        started = max(
            t for t in (record.created_at, record.effective_at, record.window_started_at) if t
        )
        return plan_retry(
            error.fault,
            inline_attempt=inline_attempt,
            task_attempt=record.attempts - (record.attempts_before_window or 0),
            elapsed=(self.clock() - started).total_seconds(),
            retry_after=error.retry_after,
            policy=self.policy,
        )

    def _pause_if_fleet_fault(
        self, record: RevocationRequest, error: PolarError
    ) -> RetryLater | None:
        """Pause the queue instead of failing when every request would fail alike."""
        if not isinstance(error, PolarHTTPError):
            return None
        fault = classify_fleet_fault(error.status, error.error, error.detail,
                                     portal=record.mode == "customer_portal")
        if fault is None:
            return None
        info = self.pause.pause(self.pause_scope, fault, error.status)
        probe = self.pause.probe_seconds
        log.error("pause.fleet", fault=fault.value, status=error.status, hint=info.hint)
        return self.outcomes.waiting(
            record, probe, countdown=probe + random.random(), reason=info.hint,
            event_detail={"paused": fault.value}, last_http_status=error.status,
            last_error=str(error),
        )
