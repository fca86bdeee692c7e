"""The scheduler: releases scheduled requests when due and re-sends requests that the broker
may have lost. The record store is the source of truth, so nothing recorded there is lost:

- ``scheduled`` requests whose ``effective_at`` has come are moved to ``queued`` and sent
  (never parked in Redis as a long ETA, which Redis would redeliver after its
  visibility timeout);
- an in-flight request (``queued``/``running``/``retrying``) whose lease ran out — its
  worker was SIGKILLed, its message sat unacked on a dead node — is sent again;
- when Redis comes back empty (its epoch marker is gone), every queued or retrying
  request is sent again at once.

Re-sending is safe because tasks are idempotent: a terminal request is skipped, a live one
is serialised by its seat lock. One scheduler pass runs at a time across all processes.
"""

from __future__ import annotations

import contextlib
import threading
import uuid
from dataclasses import dataclass
from datetime import timedelta

from redis import Redis
from redis.exceptions import RedisError

from config.settings import Settings
from worker.logs import get_logger
from worker.models import utcnow
from worker.outcomes import State
from worker.producer import Producer

log = get_logger("seat_revoker.scheduler")
BATCH = 1000


@dataclass(frozen=True)
class PassResult:
    released: int  # scheduled requests that came due
    requeued: int  # in-flight requests sent again
    redis_was_emptied: bool


class Reconciler:
    def __init__(self, producer: Producer) -> None:
        self.producer = producer
        self.settings: Settings = producer.settings
        self.redis: Redis = producer.redis
        self._epoch_key = self.settings.redis_key("epoch")

    def run_once(self) -> PassResult | None:
        """One pass, unless another process is running one right now."""
        lock = self.redis.lock(self.settings.redis_key("scheduler", "pass"), timeout=300,
                               blocking=False)
        if not lock.acquire():
            return None
        try:
            emptied = self._redis_was_emptied()
            return PassResult(self.release_due(), self.requeue_stale(everything=emptied),
                              emptied)
        finally:
            with contextlib.suppress(RedisError):
                lock.release()

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

    def requeue_stale(self, *, everything: bool = False) -> int:
        """Send again the in-flight requests whose lease ran out (all queued/retrying ones
        after Redis was emptied; running ones only once their lease is over)."""
        store, requeued = self.producer.store, 0
        lease = timedelta(seconds=self.settings.queued_lease_seconds)
        now = utcnow()
        groups = [([State.QUEUED, State.RETRYING], None if everything else now),
                  ([State.RUNNING], now)]
        for states, before in groups:
            seen: set[str] = set()
            while True:
                found = store.find(states=states, lease_before=before, limit=BATCH)
                stale = [r for r in found if r.id not in seen]
                if not stale:
                    break
                ids = [r.id for r in stale]
                seen.update(ids)
                # Touch the lease first, so the next pass does not send them yet again.
                moved = store.transition(ids, from_states=states, to_state=State.QUEUED,
                                         detail={"requeued": "lease expired" if not everything
                                                 else "redis emptied"},
                                         lease_expires_at=utcnow() + lease)
                self.producer.send(moved)
                requeued += len(moved)
                if len(stale) < BATCH:
                    break
        if requeued:
            log.warning("scheduler.requeued", count=requeued, redis_emptied=everything)
        return requeued


def run_scheduler(settings: Settings, stop: threading.Event | None = None) -> None:
    """Loop until ``stop`` is set (or forever): one reconciler pass per interval."""
    stop = stop or threading.Event()
    producer = Producer(settings)
    reconciler = Reconciler(producer)
    log.info("scheduler.started", interval_s=settings.scheduler_interval_seconds)
    try:
        while not stop.is_set():
            try:
                result = reconciler.run_once()
                if result and (result.released or result.requeued):
                    log.info("scheduler.pass", released=result.released,
                             requeued=result.requeued, redis_emptied=result.redis_was_emptied)
            except Exception:  # a broken pass must not end the loop (Redis/DB down a while)
                log.exception("scheduler.pass_failed")
            stop.wait(settings.scheduler_interval_seconds)
    finally:
        producer.close()
