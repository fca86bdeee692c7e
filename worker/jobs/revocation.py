"""Carry out one revocation request: the service behind the thin Celery task.

    load record ─ terminal? → done (redelivery is a no-op)
       │ queue paused? → RetryLater
       │ no seat id? find the person's seat in the subscription/order (guard.locate)
       │ per-seat lock (two workers never DELETE one seat at once)
       │ claim: state=running, attempts+1
       │ guard: read the seat list when the job names the person (or when this system
       │        revoked the seat before) and judge the occupant (guard.judge)
       │ breaker: reserve the revocation's place in its customer's and the organization's
       │        window, or hold it (state ``held``, no DELETE) (brakes)
       │ DELETE, with short in-process retries (polarstep)
       ▼
    outcome stored (outcome); a wait comes back as ``RetryLater`` for a Celery retry

``SeatRevocation`` is the seam: it takes its I/O (store, Polar client, seat lists, locks,
fleet pause, clock) as parameters, so it runs against fakes in ``tests/unit``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import Any, Protocol

from pydantic import SecretStr
from redis import Redis

from worker.decisions.breaker import Check
from worker.decisions.breaker import Verdict as BreakerVerdict
from worker.decisions.identity import occupant_dict
from worker.decisions.occupant import Decision, Verdict, revoked_by_this_job
from worker.decisions.outcomes import State
from worker.intake.portal_tokens import load_portal_token
from worker.jobs.brakes import Brakes, Held, RedisBrakes
from worker.jobs.guard import Access, Guard, GuardStore, SeatListReader, finished
from worker.jobs.outcome import Finished, Outcome, OutcomeStore, Refused, RetryLater
from worker.jobs.person import nudge_parent, run_person
from worker.jobs.polarstep import Halted, PolarStep
from worker.jobs.runtime import Runtime
from worker.jobs.seatlock import SeatBusy, seat_lock
from worker.polar.client import Mode
from worker.polar.errors import ResponseFormatError
from worker.polar.ratelimit import urgent_lane
from worker.polar.seats import CustomerSeat, container_of
from worker.store.models import RevocationRequest, utcnow
from worker.telemetry.logs import bind_task_context, get_logger

log = get_logger("seat_revoker.revocation")

PORTAL_TOKEN_GONE = Refused(
    error="the customer session token is missing or expired in Redis",
    hint="the customer/member session token for this request is gone (it is kept for a "
    "day at most, and Polar's portal sessions expire after one hour). Create a fresh "
    "session and run `seat-revoker retry ID --portal-token-file FILE`",
)


class RequestStore(GuardStore, OutcomeStore, Protocol):
    def claim(self, request_id: str, *, lease_until: datetime) -> RevocationRequest | None: ...

    def renew_lease(self, request_id: str, *, until: datetime) -> bool: ...

    def begin_delete(self, request_id: str, *, at: datetime) -> bool: ...

    def cancel_children(self, parent_id: str, *, child_id: str | None = None
                        ) -> list[str]: ...


class DeleteStopped(Exception):
    """The request (or its person request) was cancelled: no DELETE is sent."""


class SeatDeleter(Protocol):
    def revoke_seat(self, seat_id: str, *, mode: Mode = "organization",
                    portal_token: SecretStr | None = None) -> CustomerSeat: ...


class Beats(Protocol):
    def also(self, name: str, beat: Callable[[], object]) -> None: ...


class SeatLocks(Protocol):
    """Per-seat mutual exclusion across the fleet."""

    def hold(self, seat_id: str) -> AbstractContextManager[Beats]:
        """Held (and kept alive) for the block; raises ``SeatBusy``."""
        ...

    def take(self, seat_id: str) -> bool:
        """Take without blocking and keep until the lock's TTL runs out."""
        ...


class RedisSeatLocks:
    def __init__(self, redis: Redis, key: Callable[[str], str], ttl: float) -> None:
        self.redis = redis
        self.key = key
        self.ttl = ttl

    def hold(self, seat_id: str) -> AbstractContextManager[Beats]:
        return seat_lock(self.redis, self.key(seat_id), ttl=self.ttl)

    def take(self, seat_id: str) -> bool:
        lock = self.redis.lock(self.key(seat_id), timeout=self.ttl, blocking_timeout=0,
                               thread_local=False)
        return bool(lock.acquire())


class SeatRevocation:
    """One seat request, start to stored outcome: the orchestration and nothing else.

    Mode and portal token are settled once per run (``Access``); every Polar call goes
    through ``PolarStep`` (inline retries, throttle waits, fleet pause, failure plan); every
    terminal state through ``Outcomes``. ``run`` returns the stored record, or
    ``RetryLater`` for the task to turn into a Celery retry.
    """

    def __init__(
        self, *, store: RequestStore, polar: SeatDeleter, seat_lists: SeatListReader,
        locks: SeatLocks, step: PolarStep, portal_tokens: Callable[[str], SecretStr | None],
        skew: timedelta, brakes: Brakes, clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.brakes = brakes
        self.polar = polar
        self.locks = locks
        self.step = step
        self.outcomes = step.outcomes
        self.guard = Guard(seat_lists, store, skew=skew)
        self.portal_tokens = portal_tokens
        self.skew = skew
        self.clock = clock

    @classmethod
    def of(cls, rt: Runtime, sleep: Callable[[float], None] = time.sleep) -> SeatRevocation:
        """The service over this process's clients."""
        settings = rt.settings
        return cls(
            store=rt.store, polar=rt.polar, seat_lists=rt.seat_lists,
            locks=RedisSeatLocks(rt.redis, lambda seat_id: settings.redis_key(
                "lock", "seat", seat_id), settings.seat_lock_seconds),
            step=PolarStep.of(rt, sleep),
            portal_tokens=lambda ref: load_portal_token(
                rt.redis, settings.redis_key("portal-token"), ref),
            skew=timedelta(seconds=settings.clock_skew_seconds),
            brakes=RedisBrakes.of(rt),
        )

    def run(self, record: RevocationRequest) -> Outcome:
        access = self._access(record)
        if isinstance(access, Refused):
            return self.outcomes.finished(record, access)
        if record.seat_id is None:
            resolved = self._resolve_seat(record, access)
            if isinstance(resolved, Halted):
                return resolved.outcome
            record = resolved
        assert record.seat_id is not None
        try:
            with self.locks.hold(record.seat_id) as beats:
                claimed = self.store.claim(record.id, lease_until=self.outcomes.running_lease())
                if claimed is None:
                    log.info("request.skipped_terminal")
                    final = self.store.get(record.id)
                    assert final is not None
                    return final
                # The lease follows this worker's liveness: renewed while it works, so it
                # can be short and still never run out under a live worker.
                beats.also("lease", lambda: self.store.renew_lease(
                    claimed.id, until=self.outcomes.running_lease()))
                bind_task_context(attempt=claimed.attempts)
                log.info("seat.revoke.started", mode=claimed.mode, guarded=claimed.guarded)
                return self._attempt(claimed, access)
        except SeatBusy:
            log.info("seat.lock.busy")
            return RetryLater(2.0 + random.random(), "another worker is revoking this seat")

    def _access(self, record: RevocationRequest) -> Access | Refused:
        if record.mode != "customer_portal":
            return Access("organization")
        token = self.portal_tokens(record.portal_token_ref) if record.portal_token_ref else None
        return Access("customer_portal", token) if token is not None else PORTAL_TOKEN_GONE

    def _resolve_seat(
        self, record: RevocationRequest, access: Access
    ) -> RevocationRequest | Halted:
        """Find the seat of the named person in the subscription/order's (shared) seat
        list: the request with its seat id set, or ``Halted`` once it is finished
        (``no_active_seat``, ``needs_review``, a failure) or must wait."""
        container = container_of(record)
        assert container is not None, "validated at enqueue: no seat id means a container"
        decision = self.step.run(record, lambda: self.guard.locate(record, container, access))
        if isinstance(decision, Halted):
            return decision
        if decision.verdict is not Verdict.PROCEED:
            return Halted(self.outcomes.finished(record, finished(decision)))
        assert decision.seat is not None
        log.info("seat.resolved", resolved_seat_id=decision.seat.id)
        bind_task_context(seat_id=decision.seat.id)
        return self.store.update(record.id, seat_id=decision.seat.id,
                                 event_detail={"resolved": decision.seat.id})

    def _attempt(self, record: RevocationRequest, access: Access) -> Outcome:
        try:
            done = self.step.run(record, self._revoke(record, access))
        except Held as held:
            return self._hold(record, held.check)
        except DeleteStopped:
            return self._stopped(record)
        if isinstance(done, Halted):
            return done.outcome
        return self.outcomes.finished(record, done)

    def _hold(self, record: RevocationRequest, check: Check) -> RevocationRequest:
        """Held at the breaker: no DELETE, not failed, waiting for an operator."""
        why = f"held at the breaker: {check.describe()}"
        if check.tripped:
            log.error("breaker.tripped", scope=check.scope, limit=check.limit, used=check.used,
                      hint="revocations of this scope are held until an operator runs "
                           "`seat-revoker release` or `seat-revoker reject`")
        log.warning("seat.revoke.held", scope=check.scope, limit=check.limit)
        return self.store.update(
            record.id, state=State.HELD, held_scope=check.scope, outcome_detail=why,
            lease_expires_at=None,
            event_detail={"held": {"scope": check.scope, "limit": check.limit,
                                   "used": check.used}})

    def _revoke(self, record: RevocationRequest, access: Access) -> Callable[[], Finished]:
        """One try of guard + DELETE (``PolarStep`` may call it again)."""
        container = self.guard.container(record)
        assert record.seat_id is not None
        seat_id: str = record.seat_id
        first_delete_at = record.first_delete_at
        # The batch's shared seat list may serve as the guard on the first try only; any
        # retry (this request's state may have changed) reads afresh.
        share_in = self.guard.share_key(record) if record.attempts == 1 else None

        def once() -> Finished:
            nonlocal first_delete_at, share_in, seat_id
            verified: bool | None = None
            seen: dict[str, Any] | None = None
            decision: Decision | None = None
            if container is not None:
                decision = self.guard.judge(record, container, seat_id, access,
                                            first_delete_at=first_delete_at,
                                            share_in=share_in)
                share_in = None
                if decision.verdict is not Verdict.PROCEED:
                    return finished(decision)
                assert decision.seat is not None
                if decision.seat.id != seat_id:
                    seat_id = self._switch_seat(record, seat_id, decision.seat.id)
                seen = occupant_dict(decision.seat)
                verified = decision.verified
            if first_delete_at is None:  # one that sent its DELETE has its place already
                check = self.brakes.admit(record, container, decision)
                if check.verdict is not BreakerVerdict.GO:
                    raise Held(check)
            # The last look before the DELETE, a compare-and-set against a cancel: an
            # operator who cancelled this request or its person request wins, or the DELETE.
            now = self.clock()
            if not self.store.begin_delete(record.id, at=now):
                raise DeleteStopped(record.id)
            first_delete_at = first_delete_at or now
            revoked = self.polar.revoke_seat(seat_id, mode=access.mode,
                                             portal_token=access.portal_token)
            return delete_outcome(revoked, first_delete_at, self.skew, seen, verified)

        return once

    def _stopped(self, record: RevocationRequest) -> RevocationRequest:
        """Refused its DELETE: the request was cancelled, or its person request was (then
        it is cancelled with it, with the person's actor, if the sweep has not yet)."""
        if record.parent_id is not None:
            self.store.cancel_children(record.parent_id, child_id=record.id)
        final = self.store.get(record.id)
        assert final is not None
        log.info("seat.revoke.cancelled", state=final.state,
                 reason="cancelled before its DELETE was sent")
        return final

    def _switch_seat(self, record: RevocationRequest, stale: str, held: str) -> str:
        """The seat id named is someone else's now, but the person holds ``held`` in the
        same subscription/order: that is the seat to revoke. Both ids stay on the record."""
        # Held until the lock expires: long enough for one DELETE, and a redelivery of the
        # request after that re-reads the list before deleting anything.
        if not self.locks.take(held):
            raise SeatBusy(held)
        self.store.update(record.id, seat_id=held,
                          requested_seat_id=record.requested_seat_id or stale,
                          event_detail={"seat_switched": {"from": stale, "to": held}})
        log.warning("seat.switched", requested_seat_id=stale, seat_id=held,
                    reason="the seat id named is held by someone else; the person holds this one")
        bind_task_context(seat_id=held)
        return held


def delete_outcome(
    seat: CustomerSeat, first_delete_at: datetime, skew: timedelta,
    seen: dict[str, Any] | None, verified: bool | None,
) -> Finished:
    """What Polar's answer to the DELETE means (a 200 that is not ``revoked`` is an error)."""
    if seat.status != "revoked":
        raise ResponseFormatError(f"Polar answered 200 to the DELETE but status={seat.status}")
    if revoked_by_this_job(seat, first_delete_at, skew):
        return Finished(State.REVOKED, "revoked", seat, seen, verified)
    return Finished(State.ALREADY_REVOKED, "revoked_at predates this job", seat, seen, verified)


def task_result(record: RevocationRequest) -> dict[str, Any]:
    """The small JSON result a task returns (the store stays the source of truth)."""
    return {"request_id": record.id, "seat_id": record.seat_id, "outcome": record.state}


def run_revocation(
    rt: Runtime, request_id: str, *, sleep: Callable[[float], None] = time.sleep
) -> dict[str, Any] | RetryLater:
    """One run of a stored request (seat or person): its result, or ``RetryLater``."""
    record = rt.store.get(request_id)
    if record is None:
        # Never dropped silently: its producer's commit may still be landing; after
        # UNKNOWN_REQUEST_SECONDS it is logged as `request.unknown` (error) and counted.
        wait = rt.unknown_request_wait(request_id)
        if wait is not None:
            return RetryLater(wait, "request not in the store (yet)")
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
        return RetryLater(admission.wait + random.random(), "queue paused")
    if admission.probe:
        log.info("pause.probe")
    with urgent_lane(record.priority == "urgent"):  # its Polar calls overtake bulk work
        if record.kind == "person":
            outcome = run_person(rt, record, sleep)
        else:
            outcome = SeatRevocation.of(rt, sleep).run(record)
    if isinstance(outcome, RetryLater):
        return outcome
    if State(outcome.state).is_terminal:
        rt.forget_portal_token(record.portal_token_ref)  # of no use any more
        if record.parent_id:
            nudge_parent(rt, record.parent_id)
    if admission.probe:
        # Polar answered this request without a fleet-wide fault (that returns RetryLater).
        info = rt.pause.get(rt.pause_scope)
        if info is not None and rt.pause.resume(rt.pause_scope):
            log.warning("pause.resumed", fault=info.fault, since=info.since)
    return task_result(outcome)

