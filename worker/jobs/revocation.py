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
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, TypeVar

from pydantic import SecretStr
from tenacity import RetryCallState, Retrying, stop_after_delay

from worker.decisions.occupant import (
    Decision,
    IdentityContext,
    Occupant,
    Verdict,
    billing_customer_of,
    decide,
    locate_in,
    needs_billing_lookup,
    needs_external_lookup,
    occupant_dict,
    revoked_by_this_job,
)
from worker.decisions.outcomes import (
    Action,
    Fault,
    RetryPlan,
    State,
    classify_fleet_fault,
    plan_retry,
)
from worker.intake.portal_tokens import load_portal_token
from worker.jobs.runtime import Runtime
from worker.jobs.seatlock import SeatBusy, seat_lock
from worker.polar.client import Mode
from worker.polar.errors import PolarError, PolarHTTPError, ResponseFormatError, detail_text
from worker.polar.ratelimit import ThrottleWait, urgent_lane
from worker.polar.seatlists import container_of, container_of_snapshot
from worker.polar.seats import CustomerSeat
from worker.store.models import RevocationRequest, utcnow
from worker.telemetry.logs import bind_task_context, get_logger

log = get_logger("seat_revoker.revocation")
T = TypeVar("T")


class Deferred(Exception):
    """Try this request again in ``countdown`` seconds (Celery retry)."""

    def __init__(self, countdown: float, reason: str) -> None:
        super().__init__(reason)
        self.countdown = countdown
        self.reason = reason


class Paused(Deferred):
    """Polar answered with a fault every request of this token would get: the queue is
    paused (``worker.jobs.fleetpause``) and this request waits for the next probe."""


@dataclass(frozen=True)
class Finished:
    state: State
    reason: str
    seat: CustomerSeat | None = None
    occupant_seen: dict[str, Any] | None = None
    verified: bool | None = None  # the person verifiably holds no active seat there


def task_result(record: RevocationRequest) -> dict[str, Any]:
    """The small JSON result a task returns (the store stays the source of truth)."""
    return {"request_id": record.id, "seat_id": record.seat_id, "outcome": record.state}


def run_revocation(
    rt: Runtime, request_id: str, *, sleep: Callable[[float], None] = time.sleep
) -> dict[str, Any]:
    record = rt.store.get(request_id)
    if record is None:
        # Never dropped silently: its producer's commit may still be landing; after
        # UNKNOWN_REQUEST_SECONDS it is logged as `request.unknown` (error) and counted.
        wait = rt.unknown_request_wait(request_id)
        if wait is not None:
            raise Deferred(wait, "request not in the store (yet)")
        return {"request_id": request_id, "seat_id": None, "outcome": "unknown"}
    bind_task_context(
        request_id=record.id, seat_id=record.seat_id, idempotency_key=record.idempotency_key,
        priority=record.priority,
    )
    if State(record.state).is_terminal:
        log.info("request.skipped_terminal", state=record.state)
        rt.forget_portal_token(record.portal_token_ref)
        return task_result(record)
    admission = rt.pause.admit(rt.pause_scope)
    if admission.wait:
        raise Deferred(admission.wait + random.random(), "queue paused")
    if admission.probe:
        log.info("pause.probe")
    with urgent_lane(record.priority == "urgent"):  # its Polar calls overtake bulk work
        if record.kind == "person":
            from worker.jobs.person import run_person  # it builds on this module

            result = task_result(run_person(rt, record, sleep))
        else:
            result = _run(rt, record, sleep)
    if State(result["outcome"]).is_terminal:
        rt.forget_portal_token(record.portal_token_ref)  # of no use any more
        if record.parent_id:
            from worker.jobs.person import nudge_parent

            nudge_parent(rt, record.parent_id)
    if admission.probe:
        # Polar answered this request without a fleet-wide fault (that raises ``Paused``).
        info = rt.pause.get(rt.pause_scope)
        if info is not None and rt.pause.resume(rt.pause_scope):
            log.warning("pause.resumed", fault=info.fault, since=info.since)
    return result


def _run(
    rt: Runtime, record: RevocationRequest, sleep: Callable[[float], None]
) -> dict[str, Any]:
    if record.seat_id is None:
        resolved = _resolve_seat(rt, record)
        if resolved is None:
            return task_result(rt.store.get(record.id) or record)
        record = resolved

    seat_id = record.seat_id
    assert seat_id is not None
    try:
        with seat_lock(rt.redis, _lock_key(rt, seat_id),
                       ttl=rt.settings.seat_lock_seconds) as heartbeat:
            claimed = rt.store.claim(record.id, lease_until=_running_lease(rt))
            if claimed is not None:
                # The lease follows this worker's liveness: renewed while it works, so it
                # can be short and still never run out under a live worker.
                heartbeat.also("lease", lambda: rt.store.renew_lease(
                    record.id, until=_running_lease(rt)))
            if claimed is None:
                log.info("request.skipped_terminal")
                final = rt.store.get(record.id)
                assert final is not None
                return task_result(final)
            bind_task_context(attempt=claimed.attempts)
            log.info("seat.revoke.started", mode=claimed.mode, guarded=claimed.guarded)
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
        _pause_if_fleet_fault(rt, record, error)
        plan = _plan(rt, record, error, inline_attempt=rt.policy.inline_attempts)
        return _record_failure(rt, record, error, plan)
    return _record_finish(rt, record, finished)


def _revoke(
    rt: Runtime, record: RevocationRequest, sleep: Callable[[float], None]
) -> Finished:
    mode = _mode(record)
    portal_token = _portal_token(rt, record) if mode == "customer_portal" else None
    wanted = Occupant.named_by(record)
    container = _guard_container(rt, record, wanted)
    assert record.seat_id is not None
    seat_id: str = record.seat_id
    first_delete_at = record.first_delete_at
    # The batch's shared seat list may serve as the guard on the first try only; any retry
    # (this request's state may have changed) reads afresh.
    share_in = _share_key(rt, record) if record.attempts == 1 else None

    def once() -> Finished:
        nonlocal first_delete_at, share_in, seat_id
        verified: bool | None = None
        seen: dict[str, Any] | None = None
        if container is not None:
            seats = rt.seat_lists.read(
                container, mode=mode, portal_token=portal_token, share_in=share_in
            )
            share_in = None
            context = _identity_context(rt, record, container, seats, wanted)
            decision = decide(
                seats, seat_id, wanted, context,
                first_delete_at=first_delete_at, skew=_skew(rt),
                reassigned_after_ours=_revoked_here_before(rt, record, wanted),
                index=rt.seat_lists.index_of(seats, context.billing_customer_id),
            )
            if decision.verdict is not Verdict.PROCEED:
                return _finished(decision)
            assert decision.seat is not None
            if decision.seat.id != seat_id:
                seat_id = _switch_seat(rt, record, seat_id, decision.seat.id)
            seen = occupant_dict(decision.seat)
            verified = decision.verified
        if first_delete_at is None:
            first_delete_at = utcnow()
            rt.store.update(record.id, first_delete_at=first_delete_at)
        revoked = rt.polar.revoke_seat(seat_id, mode=mode, portal_token=portal_token)
        return _delete_outcome(revoked, first_delete_at, _skew(rt), seen, verified)

    return _with_inline_retries(rt, record, once, sleep)


def _switch_seat(rt: Runtime, record: RevocationRequest, stale: str, held: str) -> str:
    """The seat id named is someone else's now, but the person holds ``held`` in the same
    subscription/order: that is the seat to revoke. Both ids stay on the record."""
    lock = rt.redis.lock(_lock_key(rt, held), timeout=rt.settings.seat_lock_seconds,
                         blocking_timeout=0, thread_local=False)
    if not lock.acquire():
        raise SeatBusy(held)
    # Held until the lock expires: long enough for one DELETE, and a redelivery of the
    # request after that re-reads the list before deleting anything.
    rt.store.update(record.id, seat_id=held, requested_seat_id=record.requested_seat_id or stale,
                    event_detail={"seat_switched": {"from": stale, "to": held}})
    log.warning("seat.switched", requested_seat_id=stale, seat_id=held,
                reason="the seat id named is held by someone else; the person holds this one")
    bind_task_context(seat_id=held)
    return held


def _resolve_seat(rt: Runtime, record: RevocationRequest) -> RevocationRequest | None:
    """Find the seat of the named person in the subscription/order's (shared) seat list.

    Returns the request with its seat id set, or ``None`` once the request is finished
    (``no_active_seat``, ``needs_review``, or ``failed`` when the list cannot be read).
    """
    container = container_of(record)
    assert container is not None, "validated at enqueue: no seat id means a container"
    mode = _mode(record)
    wanted = Occupant.named_by(record)

    def locate_seat() -> Decision:
        portal_token = _portal_token(rt, record) if mode == "customer_portal" else None
        seats = rt.seat_lists.read(container, mode=mode, portal_token=portal_token,
                                   share_in=_share_key(rt, record))
        context = _identity_context(rt, record, container, seats, wanted)
        return locate_in(rt.seat_lists.index_of(seats, context.billing_customer_id), wanted,
                         context)

    try:
        decision = _with_inline_retries(rt, record, locate_seat, time.sleep)
    except ThrottleWait as wait:
        raise Deferred(wait.seconds, "waiting for rate-limit budget") from None
    except PolarError as error:
        _pause_if_fleet_fault(rt, record, error)
        plan = _plan(rt, record, error, inline_attempt=rt.policy.inline_attempts)
        _record_failure(rt, record, error, plan)
        return None
    if decision.verdict is not Verdict.PROCEED:
        _record_finish(rt, record, _finished(decision))
        return None
    assert decision.seat is not None
    log.info("seat.resolved", resolved_seat_id=decision.seat.id)
    bind_task_context(seat_id=decision.seat.id)
    return rt.store.update(record.id, seat_id=decision.seat.id,
                           event_detail={"resolved": decision.seat.id})


def _share_key(rt: Runtime, record: RevocationRequest) -> str | None:
    """Under which key this request may share Polar reads: its batch, or for a seat of a
    person request the key its parent's discovery read under (its batch, else itself)."""
    if record.batch_id or not record.parent_id:
        return record.batch_id
    parent = rt.store.get(record.parent_id)
    return (parent.batch_id or parent.id) if parent is not None else None


def _identity_context(
    rt: Runtime, record: RevocationRequest, container: dict[str, str],
    seats: list[CustomerSeat], wanted: Occupant,
) -> IdentityContext:
    """What the seat bodies cannot show, read from Polar only when the decision needs it
    (cached per batch like the seat lists)."""
    context = IdentityContext(billing_customer_id=billing_customer_of(seats))
    if needs_billing_lookup(seats, wanted):
        context = replace(context, billing_customer_id=rt.seat_lists.billing_customer(
            container, share_in=_share_key(rt, record)))
    if wanted.external_id and needs_external_lookup(seats, wanted, context):
        context = replace(context, external_customer=rt.seat_lists.customer_by_external_id(
            wanted.external_id, share_in=_share_key(rt, record)))
    return context


def _guard_container(
    rt: Runtime, record: RevocationRequest, wanted: Occupant
) -> dict[str, str] | None:
    """The subscription/order whose seat list tells who holds the seat, if it can be read.

    A seat id alone is guarded through the subscription/order of an earlier snapshot of
    that seat (the producer refuses one with none unless the request opts out of the
    guard): a seat this system revoked before and that is held again was reassigned and
    must not be revoked on a seat id alone.
    """
    container = container_of(record)
    if container is not None or record.seat_id is None:
        return container
    return container_of_snapshot(rt.store, record.seat_id)


def _revoked_here_before(rt: Runtime, record: RevocationRequest, wanted: Occupant) -> bool:
    if wanted.is_named or record.seat_id is None:
        return False
    return rt.store.last_revocation_of_seat(record.seat_id, excluding=record.id) is not None


def _finished(decision: Decision) -> Finished:
    """The terminal outcome of a decision that is not a DELETE."""
    state = {
        Verdict.REVOKED_BY_US: State.REVOKED,
        Verdict.ALREADY_REVOKED: State.ALREADY_REVOKED,
        Verdict.MISMATCH: State.OCCUPANT_MISMATCH,
        Verdict.NO_ACTIVE_SEAT: State.NO_ACTIVE_SEAT,
        Verdict.REVIEW: State.NEEDS_REVIEW,
        Verdict.NOT_FOUND: State.NEEDS_REVIEW,
    }[decision.verdict]
    seat = decision.seat
    seen = occupant_dict(seat) if seat is not None and seat.status != "revoked" else None
    return Finished(state, decision.why, seat, seen, decision.verified)


def _delete_outcome(
    seat: CustomerSeat,
    first_delete_at: datetime,
    skew: timedelta,
    seen: dict[str, Any] | None,
    verified: bool | None,
) -> Finished:
    if seat.status != "revoked":
        raise ResponseFormatError(f"Polar answered 200 to the DELETE but status={seat.status}")
    if revoked_by_this_job(seat, first_delete_at, skew):
        return Finished(State.REVOKED, "revoked", seat, seen, verified)
    return Finished(State.ALREADY_REVOKED, "revoked_at predates this job", seat, seen, verified)


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
    changes: dict[str, Any] = {
        "state": done.state, "last_error": None, "outcome_detail": done.reason,
        "end_state_verified": done.verified,
        "verified_at": utcnow() if done.verified is not None else None,
    }
    if done.seat is not None:
        changes["seat_snapshot"] = done.seat.snapshot()
    if done.occupant_seen is not None:
        changes["occupant_seen"] = done.occupant_seen
    updated = rt.store.update(record.id, event_detail={"reason": done.reason}, **changes)
    event = f"seat.revoke.{done.state}"
    if done.state in (State.OCCUPANT_MISMATCH, State.NEEDS_REVIEW):
        log.warning(event, reason=done.reason, occupant_seen=done.occupant_seen,
                    verified=done.verified)
    else:
        log.info(event, reason=done.reason, verified=done.verified)
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
            outcome_detail=failure_hint(error, portal=record.mode == "customer_portal",
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


def failure_hint(error: PolarError, *, portal: bool, reason: str) -> str:
    """What an operator should do about a request that failed (pure)."""
    if portal and error.status == 401:
        return ("the customer/member session token was rejected: Polar's portal sessions "
                "expire after one hour. Create a fresh session and run "
                "`seat-revoker retry ID --portal-token-file FILE`")
    if portal and error.status == 403:
        return ("the portal session may not revoke seats: only the customer, or a member "
                "with role owner or billing_manager, may (Polar answered 403)")
    if error.status == 404:
        return "Polar does not know this seat (404): check the seat id and the organization"
    if error.status == 422:
        return "Polar rejected an id (422): seat, subscription and order ids are UUID v4"
    return f"{reason}: {error}"


def _pause_if_fleet_fault(rt: Runtime, record: RevocationRequest, error: PolarError) -> None:
    """Pause the queue instead of failing when every request would fail alike."""
    if not isinstance(error, PolarHTTPError):
        return
    fault = classify_fleet_fault(error.status, error.error, error.detail,
                                 portal=record.mode == "customer_portal")
    if fault is None:
        return
    info = rt.pause.pause(rt.pause_scope, fault, error.status)
    rt.store.update(record.id, state=State.RETRYING, event_detail={"paused": fault.value},
                    last_http_status=error.status, last_error=str(error),
                    lease_expires_at=_retry_lease(rt, rt.pause.probe_seconds))
    log.error("pause.fleet", fault=fault.value, status=error.status, hint=info.hint)
    raise Paused(rt.pause.probe_seconds + random.random(), info.hint)


def _mode(record: RevocationRequest) -> Mode:
    return "customer_portal" if record.mode == "customer_portal" else "organization"


def _lock_key(rt: Runtime, seat_id: str) -> str:
    return rt.settings.redis_key("lock", "seat", seat_id)


def _portal_token(rt: Runtime, record: RevocationRequest) -> SecretStr:
    token = (
        load_portal_token(rt.redis, rt.settings.redis_key("portal-token"), record.portal_token_ref)
        if record.portal_token_ref
        else None
    )
    if token is None:
        raise PolarHTTPError(401, "PortalTokenMissing", "customer session token expired or missing")
    return token


def _running_lease(rt: Runtime) -> datetime:
    return utcnow() + timedelta(seconds=rt.settings.running_lease_seconds)


def _retry_lease(rt: Runtime, delay: float) -> datetime:
    """When the reconciler may assume a planned retry was lost."""
    return utcnow() + timedelta(seconds=delay + rt.settings.running_lease_seconds)


def _skew(rt: Runtime) -> timedelta:
    return timedelta(seconds=rt.settings.clock_skew_seconds)
