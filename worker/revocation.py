"""Carry out one revocation request: the service behind the thin Celery task.

    load record ─ terminal? → done (redelivery is a no-op)
       │ per-seat Redis lock (two workers never DELETE one seat at once)
       │ claim: state=running, attempts+1
       │ guard: read the seat list when the job names the person (or when this system
       │        revoked the seat before) and judge the occupant
       │ DELETE, with short in-process retries (tenacity)
       ▼
    outcome stored; longer waits raise ``Deferred`` for a Celery retry
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from pydantic import SecretStr
from tenacity import RetryCallState, Retrying, stop_after_delay

from worker.logs import bind_task_context, get_logger
from worker.models import RevocationRequest, utcnow
from worker.occupant import (
    Occupant,
    Verdict,
    find_seat,
    find_seat_of,
    judge_seat,
    occupant_dict,
    revoked_by_this_job,
)
from worker.outcomes import Action, Fault, RetryPlan, State, plan_retry
from worker.polar import CustomerSeat, Mode, PolarError, PolarHTTPError, detail_text
from worker.portal_tokens import load_portal_token
from worker.ratelimit import ThrottleWait
from worker.runtime import Runtime
from worker.seatlists import container_of
from worker.seatlock import SeatBusy, seat_lock

log = get_logger("seat_revoker.revocation")
T = TypeVar("T")


class Deferred(Exception):
    """Try this request again in ``countdown`` seconds (Celery retry)."""

    def __init__(self, countdown: float, reason: str) -> None:
        super().__init__(reason)
        self.countdown = countdown
        self.reason = reason


@dataclass(frozen=True)
class Finished:
    state: State
    reason: str
    seat: CustomerSeat | None = None
    occupant_seen: dict[str, Any] | None = None


def task_result(record: RevocationRequest) -> dict[str, Any]:
    """The small JSON result a task returns (the store stays the source of truth)."""
    return {"request_id": record.id, "seat_id": record.seat_id, "outcome": record.state}


def run_revocation(
    rt: Runtime, request_id: str, *, sleep: Callable[[float], None] = time.sleep
) -> dict[str, Any]:
    record = rt.store.get(request_id)
    if record is None:
        log.warning("request.missing", request_id=request_id)
        return {"request_id": request_id, "seat_id": None, "outcome": "missing"}
    bind_task_context(
        request_id=record.id, seat_id=record.seat_id, idempotency_key=record.idempotency_key
    )
    if State(record.state).is_terminal:
        log.info("request.skipped_terminal", state=record.state)
        return task_result(record)
    if record.seat_id is None:
        resolved = _resolve_seat(rt, record)
        if resolved is None:
            return task_result(rt.store.get(record.id) or record)
        record = resolved

    seat_id = record.seat_id
    assert seat_id is not None
    lock_key = rt.settings.redis_key("lock", "seat", seat_id)
    try:
        with seat_lock(rt.redis, lock_key, ttl=rt.settings.seat_lock_seconds):
            lease = utcnow() + timedelta(seconds=rt.settings.running_lease_seconds)
            claimed = rt.store.claim(record.id, lease_until=lease)
            if claimed is None:
                log.info("request.skipped_terminal")
                final = rt.store.get(record.id)
                assert final is not None
                return task_result(final)
            bind_task_context(attempt=claimed.attempts)
            log.info("seat.revoke.started", mode=claimed.mode)
            return task_result(_attempt(rt, claimed, sleep))
    except SeatBusy:
        log.info("seat.lock.busy")
        raise Deferred(2.0 + random.random(), "another worker is revoking this seat") from None


def _attempt(
    rt: Runtime, record: RevocationRequest, sleep: Callable[[float], None]
) -> RevocationRequest:
    try:
        finished = _revoke(rt, record, sleep)
    except ThrottleWait as wait:
        rt.store.update(record.id, state=State.RETRYING, event_detail={"wait": wait.seconds},
                        lease_expires_at=_retry_lease(rt, wait.seconds))
        log.info("ratelimit.deferred", wait_s=round(wait.seconds, 3))
        raise Deferred(wait.seconds, "waiting for rate-limit budget") from None
    except PolarError as error:
        plan = _plan(rt, record, error, inline_attempt=rt.policy.inline_attempts)
        return _record_failure(rt, record, error, plan)
    return _record_finish(rt, record, finished)


def _revoke(
    rt: Runtime, record: RevocationRequest, sleep: Callable[[float], None]
) -> Finished:
    mode: Mode = "customer_portal" if record.mode == "customer_portal" else "organization"
    portal_token = _portal_token(rt, record) if mode == "customer_portal" else None
    wanted = Occupant.named_by(record)
    container = _guard_container(rt, record, wanted)
    seat_id = record.seat_id
    assert seat_id is not None
    first_delete_at = record.first_delete_at
    # The batch's shared seat list may serve as the guard on the first try only; any retry
    # (this request's state may have changed) reads afresh.
    share_in = record.batch_id if record.attempts == 1 else None

    def once() -> Finished:
        nonlocal first_delete_at, share_in
        seen: dict[str, Any] | None = None
        if container is not None:
            seats = rt.seat_lists.read(
                container, mode=mode, portal_token=portal_token, share_in=share_in
            )
            share_in = None
            seat = find_seat(seats, seat_id)
            verdict, why = judge_seat(
                seat, wanted, first_delete_at=first_delete_at, skew=_skew(rt)
            )
            if verdict is not Verdict.PROCEED:
                return _verdict_outcome(verdict, why, seat, reassigned=not wanted.is_named)
            assert seat is not None
            seen = occupant_dict(seat)
        if first_delete_at is None:
            first_delete_at = utcnow()
            rt.store.update(record.id, first_delete_at=first_delete_at)
        revoked = rt.polar.revoke_seat(seat_id, mode=mode, portal_token=portal_token)
        return _delete_outcome(revoked, first_delete_at, _skew(rt), seen)

    return _with_inline_retries(rt, record, once, sleep)


def _resolve_seat(rt: Runtime, record: RevocationRequest) -> RevocationRequest | None:
    """Find the seat of the named person in the subscription/order's (shared) seat list.

    Returns the request with its seat id set, or ``None`` once the request is finished
    (``no_active_seat``, or ``failed`` when the list cannot be read).
    """
    container = container_of(record)
    assert container is not None, "validated at enqueue: no seat id means a container"
    mode: Mode = "customer_portal" if record.mode == "customer_portal" else "organization"
    wanted = Occupant.named_by(record)
    try:
        portal_token = _portal_token(rt, record) if mode == "customer_portal" else None
        seats = _with_inline_retries(
            rt, record,
            lambda: rt.seat_lists.read(container, mode=mode, portal_token=portal_token,
                                       share_in=record.batch_id),
            time.sleep,
        )
    except ThrottleWait as wait:
        raise Deferred(wait.seconds, "waiting for rate-limit budget") from None
    except PolarError as error:
        plan = _plan(rt, record, error, inline_attempt=rt.policy.inline_attempts)
        _record_failure(rt, record, error, plan)
        return None
    seat = find_seat_of(seats, wanted)
    if seat is None:
        _record_finish(rt, record, Finished(State.NO_ACTIVE_SEAT,
                                            "the person holds no active seat there"))
        return None
    log.info("seat.resolved", resolved_seat_id=seat.id)
    bind_task_context(seat_id=seat.id)
    return rt.store.update(record.id, seat_id=seat.id, event_detail={"resolved": seat.id})


def _guard_container(
    rt: Runtime, record: RevocationRequest, wanted: Occupant
) -> dict[str, str] | None:
    """The subscription/order whose seat list tells who holds the seat, if it can be read.

    When the job names nobody but this system revoked the seat before, the list of that
    earlier revocation's subscription/order is read: a seat now held again was reassigned
    and must not be revoked on a seat id alone.
    """
    container = container_of(record)
    if container is not None:
        return container
    if wanted.is_named or record.seat_id is None:
        return None
    prior = rt.store.last_revocation_of_seat(record.seat_id, excluding=record.id)
    snapshot = (prior.seat_snapshot or {}) if prior else {}
    if snapshot.get("subscription_id"):
        return {"subscription_id": snapshot["subscription_id"]}
    if snapshot.get("order_id"):
        return {"order_id": snapshot["order_id"]}
    return None


def _verdict_outcome(
    verdict: Verdict, why: str, seat: CustomerSeat | None, *, reassigned: bool
) -> Finished:
    seen = occupant_dict(seat) if seat is not None else None
    if verdict is Verdict.REVOKED_BY_US:
        return Finished(State.REVOKED, why, seat, seen)
    if verdict is Verdict.ALREADY_REVOKED:
        return Finished(State.ALREADY_REVOKED, why, seat, seen)
    if verdict is Verdict.MISMATCH:
        if reassigned:
            why = "seat was reassigned after this system revoked it; name the occupant to revoke"
        return Finished(State.OCCUPANT_MISMATCH, why, seat, seen)
    raise PolarHTTPError(404, "SeatNotInContainer", why)


def _delete_outcome(
    seat: CustomerSeat,
    first_delete_at: datetime,
    skew: timedelta,
    seen: dict[str, Any] | None,
) -> Finished:
    if seat.status != "revoked":
        raise PolarHTTPError(409, "NotRevoked", f"Polar answered 200 but status={seat.status}")
    if revoked_by_this_job(seat, first_delete_at, skew):
        return Finished(State.REVOKED, "revoked", seat, seen)
    return Finished(State.ALREADY_REVOKED, "revoked_at predates this job", seat, seen)


def _with_inline_retries(
    rt: Runtime, record: RevocationRequest, fn: Callable[[], T], sleep: Callable[[float], None]
) -> T:
    """Run ``fn``, retrying in this process while ``plan_retry`` says RETRY_INLINE."""

    def plan_of(state: RetryCallState) -> RetryPlan | None:
        error = state.outcome.exception() if state.outcome else None
        if not isinstance(error, PolarError):
            return None
        return _plan(rt, record, error, inline_attempt=state.attempt_number)

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
        rt.metrics.retry("inline")
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
        stop=stop_after_delay(rt.policy.inline_max_wait * rt.policy.inline_attempts),
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )
    return retrying(fn)


def _plan(
    rt: Runtime, record: RevocationRequest, error: PolarError, *, inline_attempt: int
) -> RetryPlan:
    started = max(
        t for t in (record.created_at, record.effective_at, record.window_started_at) if t
    )
    return plan_retry(
        error.fault,
        inline_attempt=inline_attempt,
        task_attempt=record.attempts - (record.attempts_before_window or 0),
        elapsed=(utcnow() - started).total_seconds(),
        retry_after=error.retry_after,
        policy=rt.policy,
    )


def _record_finish(rt: Runtime, record: RevocationRequest, done: Finished) -> RevocationRequest:
    changes: dict[str, Any] = {"state": done.state, "last_error": None}
    if done.seat is not None:
        changes["seat_snapshot"] = done.seat.snapshot()
    if done.occupant_seen is not None:
        changes["occupant_seen"] = done.occupant_seen
    updated = rt.store.update(record.id, event_detail={"reason": done.reason}, **changes)
    event = f"seat.revoke.{done.state}"
    if done.state is State.OCCUPANT_MISMATCH:
        log.warning(event, reason=done.reason, occupant_seen=done.occupant_seen)
    else:
        log.info(event, reason=done.reason)
    return updated


def _record_failure(
    rt: Runtime, record: RevocationRequest, error: PolarError, plan: RetryPlan
) -> RevocationRequest:
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
        updated = rt.store.update(
            record.id,
            state=State.FAILED,
            event_detail={"reason": plan.reason, "status": error.status},
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
    rt.store.update(
        record.id,
        state=State.RETRYING,
        event_detail={"retry_in_s": round(plan.delay, 3), "status": error.status},
        lease_expires_at=_retry_lease(rt, plan.delay),
        **common,
    )
    rt.metrics.retry("rate_limited" if error.fault is Fault.RATE_LIMITED else "later")
    log.warning("seat.revoke.retrying", retry_in_s=round(plan.delay, 3), status=error.status)
    raise Deferred(plan.delay, str(error))


def _portal_token(rt: Runtime, record: RevocationRequest) -> SecretStr:
    token = (
        load_portal_token(rt.redis, rt.settings.redis_key("portal-token"), record.portal_token_ref)
        if record.portal_token_ref
        else None
    )
    if token is None:
        raise PolarHTTPError(401, "PortalTokenMissing", "customer session token expired or missing")
    return token


def _retry_lease(rt: Runtime, delay: float) -> datetime:
    """When the reconciler may assume a planned retry was lost."""
    return utcnow() + timedelta(seconds=delay + rt.settings.running_lease_seconds)


def _skew(rt: Runtime) -> timedelta:
    return timedelta(seconds=rt.settings.clock_skew_seconds)
