"""The scheduler: releases scheduled requests when due and re-sends requests that the broker
may have lost. The record store is the source of truth, so nothing recorded there is lost:

- ``scheduled`` requests whose ``effective_at`` has come are moved to ``queued`` and sent
  (never parked in Redis as a long ETA, which Redis would redeliver after its
  visibility timeout);
- a queued or retrying request whose message is gone — held by a node that died
  (``worker.jobs.nodes``: nodes record themselves and the requests they hold), or neither
  waiting in the broker's queue nor held by a live node on two passes in a row — is sent
  again within seconds, not after a lease;
- a running request whose worker stopped renewing its lease (the worker's heartbeat renews
  it every few seconds, so a short lease never runs out under a live worker) is sent again;
- when Redis comes back empty, its queued messages are simply lost messages: neither in
  the broker nor held, they are sent again on the second pass (one pass of confirmation,
  so a message between the broker and its worker's bookkeeping is not sent twice);
- a queued request whose message was never published (Redis was down or full when it was
  recorded, ``sent_at`` is null) is sent as soon as Redis takes messages again.

Every pass first checks that the namespace is bound to this process's store
(``worker.store.binding.bind_store``): after Redis lost its data, the first process to come binds
it again, and a scheduler on another store stops sending instead of mixing two stores.

Re-sending is safe because tasks are idempotent: a terminal request is skipped, a live one
is serialised by its seat lock. One scheduler pass runs at a time across all processes.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from kombu.exceptions import KombuError
from redis import Redis
from redis.exceptions import RedisError

from config.settings import Settings, redacted_url
from worker.decisions.outcomes import State
from worker.intake.producer import Producer
from worker.intake.sender import NotSent, broker_task_ids
from worker.jobs.heartbeats import record_pass
from worker.jobs.nodes import NodeRegistry
from worker.jobs.seatlock import SeatBusy, kept_lock
from worker.store.engine import StoreError
from worker.store.models import utcnow
from worker.telemetry.logs import get_logger
from worker.telemetry.metrics import lane_queue_keys

log = get_logger("seat_revoker.scheduler")
BATCH = 1000


# A request must be missing from the broker and from every live node this long (and on
# two passes) before its message counts as lost: covers the instant between a producer's
# commit and its publish, and between a node taking a message and recording it.
MISSING_GRACE_SECONDS = 5.0
# A queued request never sent (``sent_at`` null) this long after it was recorded is sent by
# the scheduler: its producer's publish failed (or the producer died in between).
UNSENT_GRACE_SECONDS = 3.0
# The pass lock is kept alive while a pass runs; one left behind (its holder died, or Redis
# restarted from its append-only file mid-pass) stops other passes for this long at most.
PASS_LOCK_SECONDS = 10.0


@dataclass(frozen=True)
class PassResult:
    released: int  # scheduled requests that came due
    requeued: int  # in-flight requests sent again
    redis_was_emptied: bool
    lost: int = 0  # of those, messages found lost (dead node, vanished from the broker)
    unsent: int = 0  # queued requests never sent before (Redis was down or full)


def lost_messages(
    in_flight: Sequence[tuple[str, str]],
    *,
    in_broker: set[str],
    held_live: set[str],
    held_dead: set[str],
    missing_before: set[str],
) -> tuple[list[str], set[str]]:
    """Which in-flight requests lost their message (pure).

    ``in_flight`` is (id, state) of requests not changed for a grace period. A request a
    dead node held is lost at once (unless a live node holds it now); a queued/retrying
    one that is neither in the broker's queue nor held by a live node is lost when it was
    missing on the previous pass too. Running ones are left to their heartbeat lease.
    Returns (ids to send again, ids missing on this pass).
    """
    resend: list[str] = []
    missing: set[str] = set()
    for request_id, state in in_flight:
        if request_id in held_live:
            continue
        if request_id in held_dead:
            resend.append(request_id)
        elif state == State.RUNNING.value or request_id in in_broker:
            continue
        elif request_id in missing_before:
            resend.append(request_id)
        else:
            missing.add(request_id)
    return resend, missing


class Reconciler:
    def __init__(self, producer: Producer) -> None:
        self.producer = producer
        self.settings: Settings = producer.settings
        self.redis: Redis = producer.redis
        self.nodes = NodeRegistry(self.redis, self.settings.redis_key("nodes"))
        self._epoch_key = self.settings.redis_key("epoch")
        self._missing_key = self.settings.redis_key("scheduler", "missing")

    def run_once(self) -> PassResult | None:
        """One pass, unless another process is running one right now."""
        try:
            with kept_lock(self.redis, self.settings.redis_key("scheduler", "pass"),
                           ttl=PASS_LOCK_SECONDS, wait=0, name="scheduler.pass"):
                return self._pass()
        except SeatBusy:
            return None

    def _pass(self) -> PassResult:
        self.producer.verify_store()
        # Redis coming back empty needs nothing of its own: its queued messages are
        # missing from the broker and unheld, so ``requeue_lost`` re-sends them on the
        # next pass (one pass of confirmation keeps a message that is between the broker
        # and its worker's bookkeeping from being sent twice).
        emptied = self._redis_was_emptied()
        released = self.release_due()
        unsent = self.send_unsent()
        lost = self.requeue_lost()
        return PassResult(released, lost + self.requeue_stale(), emptied, lost, unsent)

    def _redis_was_emptied(self) -> bool:
        """True once after Redis lost its data (or on the very first pass)."""
        return bool(self.redis.set(self._epoch_key, uuid.uuid4().hex, nx=True))

    def release_due(self) -> int:
        store, released = self.producer.store, 0
        lease = timedelta(seconds=self.settings.queued_lease_seconds)
        while True:
            now = utcnow()
            due = store.find(states=[State.SCHEDULED], effective_before=now, limit=BATCH)
            if not due:
                return released
            moved = store.transition([r.id for r in due], from_states=[State.SCHEDULED],
                                     to_state=State.QUEUED, detail={"released": "due"},
                                     lease_expires_at=now + lease)
            self.producer.send(moved)
            released += len(moved)
            log.info("scheduler.released", count=len(moved))
            if len(due) < BATCH:
                return released

    def send_unsent(self) -> int:
        """Send the queued requests whose message was never published (Redis was down or
        full when they were recorded or re-queued)."""
        store, sent = self.producer.store, 0
        recorded_before = utcnow() - timedelta(seconds=UNSENT_GRACE_SECONDS)
        while True:
            ids = store.unsent(recorded_before=recorded_before, limit=BATCH)
            if not ids:
                break
            try:
                sent += len(self.producer.send(ids))
            except NotSent as error:
                if sent + error.sent:
                    log.warning("scheduler.sent_unsent", count=sent + error.sent)
                raise
            if len(ids) < BATCH:
                break
        if sent:
            log.warning("scheduler.sent_unsent", count=sent)
        return sent

    def requeue_lost(self) -> int:
        """Send again the requests whose message a dead node held or the broker lost."""
        in_flight = self.producer.store.in_flight(
            updated_before=utcnow() - timedelta(seconds=MISSING_GRACE_SECONDS))
        if not in_flight:
            self.redis.delete(self._missing_key)
            return 0
        held_live, dead = self.nodes.holdings()
        held_dead = set().union(*dead.values()) if dead else set()
        unaccounted = {rid for rid, state in in_flight
                       if rid not in held_live and state != State.RUNNING.value}
        in_broker = (broker_task_ids(self.redis, lane_queue_keys(self.settings))
                     if unaccounted - held_dead else set())
        missing_before = {m.decode() if isinstance(m, bytes) else str(m)
                          for m in self.redis.smembers(self._missing_key)}
        resend, missing = lost_messages(in_flight, in_broker=in_broker, held_live=held_live,
                                        held_dead=held_dead, missing_before=missing_before)
        pipe = self.redis.pipeline()
        pipe.delete(self._missing_key)
        if missing:
            pipe.sadd(self._missing_key, *missing)
            pipe.expire(self._missing_key, int(self.settings.scheduler_interval_seconds * 4) + 1)
        pipe.execute()
        sent = self._send_again(resend, "message lost") if resend else 0
        for node, ids in dead.items():
            self.nodes.forget(node, ids)
            log.warning("scheduler.node_dead", node=node, held=len(ids))
        return sent

    def _send_again(self, ids: list[str], why: str) -> int:
        lease = timedelta(seconds=self.settings.queued_lease_seconds)
        moved = self.producer.store.transition(
            ids, from_states=[State.QUEUED, State.RETRYING, State.RUNNING],
            to_state=State.QUEUED, detail={"requeued": why},
            lease_expires_at=utcnow() + lease)
        self.producer.send(moved)
        if moved:
            log.warning("scheduler.requeued", count=len(moved), reason=why)
        return len(moved)

    def requeue_stale(self) -> int:
        """Send again the in-flight requests whose lease ran out (a running request's lease
        is renewed by its worker's heartbeat, so it runs out only when the worker is gone)."""
        store, requeued = self.producer.store, 0
        lease = timedelta(seconds=self.settings.queued_lease_seconds)
        now = utcnow()
        for states in ([State.QUEUED, State.RETRYING], [State.RUNNING]):
            seen: set[str] = set()
            while True:
                found = store.find(states=states, lease_before=now, limit=BATCH)
                stale = [r for r in found if r.id not in seen]
                if not stale:
                    break
                ids = [r.id for r in stale]
                seen.update(ids)
                # Touch the lease first, so the next pass does not send them yet again.
                moved = store.transition(ids, from_states=states, to_state=State.QUEUED,
                                         detail={"requeued": "lease expired"},
                                         lease_expires_at=utcnow() + lease)
                self.producer.send(moved)
                requeued += len(moved)
                if len(stale) < BATCH:
                    break
        if requeued:
            log.warning("scheduler.requeued", count=requeued)
        return requeued


def run_scheduler(settings: Settings, stop: threading.Event | None = None) -> None:
    """Loop until ``stop`` is set (or forever): one reconciler pass per interval."""
    stop = stop or threading.Event()
    producer = Producer(settings, role="scheduler")
    reconciler = Reconciler(producer)
    log.info("scheduler.started", interval_s=settings.scheduler_interval_seconds)
    trouble: str | None = None  # what broke the last pass, reported once until it heals
    try:
        while not stop.is_set():
            problem: str | None = None
            try:
                result = reconciler.run_once()
                if result and (result.released or result.requeued or result.unsent):
                    log.info("scheduler.pass", released=result.released,
                             requeued=result.requeued, unsent_sent=result.unsent,
                             redis_emptied=result.redis_was_emptied)
            except NotSent as exc:
                problem = f"redis: {exc.cause}"
                if problem != trouble:
                    log.warning("scheduler.redis_unavailable",
                                redis=redacted_url(settings.redis_url), error=exc.cause,
                                hint="unsent requests go out once Redis takes messages")
            except (RedisError, KombuError, OSError) as exc:
                problem = f"redis: {type(exc).__name__}"
                if problem != trouble:
                    log.warning("scheduler.redis_unavailable",
                                redis=redacted_url(settings.redis_url),
                                error=f"{type(exc).__name__}: {exc}")
            except StoreError as exc:  # also a store mismatch: loud on every pass
                problem = f"store: {exc}"
                log.error("scheduler.store_unavailable", error=str(exc))
            except Exception:  # a broken pass must not end the loop
                problem = "unexpected"
                log.exception("scheduler.pass_failed")
            if problem is None:
                record_pass(producer.redis, settings.redis_key("scheduler", "heartbeat"))
            if trouble is not None and problem is None:
                log.warning("scheduler.recovered", after=trouble)
            trouble = problem
            stop.wait(settings.scheduler_interval_seconds)
    finally:
        producer.close()
