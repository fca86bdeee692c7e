"""The outcome step: what one run of a request ends with, and how that is stored.

A run ends in one of two ways: the request's stored record (terminal, or retrying with a
lease), or ``RetryLater`` — the one "not yet" signal, which only ``worker.jobs.tasks`` turns
into a Celery retry (as arq's worker handles its ``Retry(defer=…)`` in one place).

Terminal outcomes come from three sources, each its own type: a guard verdict or a DELETE
answer (``Finished``), a request that cannot be carried out as it stands (``Refused``: no
Polar answer behind it, so no HTTP status is stored), and a Polar error the retry plan gives
up on (``Outcomes.failed``: the only place ``last_http_status`` is written).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeAlias, Unpack

from worker.decisions.outcomes import Action, RetryPlan, State, failure_hint
from worker.polar.errors import Fault, PolarError, detail_text
from worker.polar.seats import CustomerSeat
from worker.store.models import RevocationRequest, utcnow
from worker.store.records import RequestChanges
from worker.telemetry.logs import get_logger

log = get_logger("seat_revoker.revocation")


@dataclass(frozen=True)
class RetryLater:
    """Run this request again in ``countdown`` seconds (its record says why it waits)."""

    countdown: float
    reason: str


Outcome: TypeAlias = RevocationRequest | RetryLater


@dataclass(frozen=True)
class Finished:
    """A terminal outcome decided by the guard or by Polar's answer to the DELETE."""

    state: State
    reason: str
    seat: CustomerSeat | None = None
    occupant_seen: dict[str, Any] | None = None
    verified: bool | None = None  # the person verifiably holds no active seat there


@dataclass(frozen=True)
class Refused:
    """The request cannot be carried out as it stands, found before asking Polar (e.g. its
    customer session token is gone): it fails with ``hint`` and no HTTP status."""

    error: str
    hint: str


class OutcomeStore(Protocol):
    def update(
        self, request_id: str, *, event_detail: dict[str, Any] | None = None,
        **changes: Unpack[RequestChanges],
    ) -> RevocationRequest: ...


class RetryMetrics(Protocol):
    def retry(self, kind: str) -> None: ...


class Outcomes:
    """Stores what a run ended with; every state a run writes after its claim is set here."""

    def __init__(
        self, store: OutcomeStore, metrics: RetryMetrics, *, running_lease_seconds: float,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.running_lease_seconds = running_lease_seconds
        self.clock = clock

    def running_lease(self) -> datetime:
        return self.clock() + timedelta(seconds=self.running_lease_seconds)

    def retry_lease(self, delay: float) -> datetime:
        """When the reconciler may assume a planned retry was lost."""
        return self.clock() + timedelta(seconds=delay + self.running_lease_seconds)

    def finished(self, record: RevocationRequest, done: Finished | Refused) -> RevocationRequest:
        if isinstance(done, Refused):
            return self._refused(record, done)
        now = self.clock()
        changes: dict[str, Any] = {
            "state": done.state, "last_error": None, "outcome_detail": done.reason,
            "end_state_verified": done.verified,
            "verified_at": now if done.verified is not None else None,
        }
        if done.seat is not None:
            changes["seat_snapshot"] = done.seat.snapshot()
        if done.occupant_seen is not None:
            changes["occupant_seen"] = done.occupant_seen
        updated = self.store.update(record.id, event_detail={"reason": done.reason}, **changes)
        event = f"seat.revoke.{done.state}"
        if done.state in (State.OCCUPANT_MISMATCH, State.NEEDS_REVIEW):
            log.warning(event, reason=done.reason, occupant_seen=done.occupant_seen,
                        verified=done.verified)
        else:
            log.info(event, reason=done.reason, verified=done.verified)
        return updated

    def _refused(self, record: RevocationRequest, refused: Refused) -> RevocationRequest:
        updated = self.store.update(
            record.id, state=State.FAILED, event_detail={"reason": refused.error},
            last_error=refused.error, outcome_detail=refused.hint,
        )
        log.error("seat.revoke.failed", reason=refused.error)
        return updated

    def waiting(
        self, record: RevocationRequest, seconds: float, *, reason: str,
        event_detail: dict[str, Any], countdown: float | None = None, **changes: Any,
    ) -> RetryLater:
        """The request waits ``seconds`` (its message: ``countdown``, when jittered)
        before its next run, in state ``retrying``."""
        self.store.update(record.id, state=State.RETRYING, event_detail=event_detail,
                          lease_expires_at=self.retry_lease(seconds), **changes)
        return RetryLater(seconds if countdown is None else countdown, reason)

    def failed(self, record: RevocationRequest, error: PolarError, plan: RetryPlan) -> Outcome:
        """Polar answered with an error (or none): fail the request, or retry it later."""
        detail = {
            "error": getattr(error, "error", None),
            "detail": getattr(error, "detail", None),
            "kind": getattr(error, "kind", None),
        }
        common: dict[str, Any] = {
            "last_http_status": error.status,
            "last_error": str(error),
            "error_detail": detail,
        }
        if plan.action is Action.GIVE_UP:
            updated = self.store.update(
                record.id,
                state=State.FAILED,
                event_detail={"reason": plan.reason, "status": error.status},
                outcome_detail=failure_hint(error.status, str(error),
                                            portal=record.mode == "customer_portal",
                                            reason=plan.reason),
                **common,
            )
            log.error(
                "seat.revoke.failed",
                reason=plan.reason,
                status=error.status,
                error=getattr(error, "error", None),
                detail=detail_text(getattr(error, "detail", None)),
            )
            return updated
        later = self.waiting(
            record, plan.delay, reason=str(error),
            event_detail={"retry_in_s": round(plan.delay, 3), "status": error.status},
            **common,
        )
        self.metrics.retry("rate_limited" if error.fault is Fault.RATE_LIMITED else "later")
        log.warning("seat.revoke.retrying", retry_in_s=round(plan.delay, 3), status=error.status)
        return later
