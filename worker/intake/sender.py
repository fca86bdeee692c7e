"""Sending recorded requests to the broker: claim each record, publish its message to
its lane, and say in one line (``NotSent``) when Redis does not take them.

Used by the producer for new requests and by the scheduler for re-sends, so every
message goes out the same way: claimed first (two senders racing on one request
publish one message), to its own lane, marked ``sent_at`` once Redis took it.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

from celery import Celery
from kombu.exceptions import KombuError
from redis import Redis
from redis.exceptions import RedisError

from config.celery import REVOKE_TASK, celery_config
from config.settings import PRIORITIES, Priority, Settings, redacted_url
from worker.connections import redis_client
from worker.store.binding import bind_store
from worker.store.models import utcnow
from worker.store.records import Store
from worker.telemetry.metrics import lane_queue_keys

# Messages published per round trip; each chunk is marked sent once Redis took it.
PUBLISH_CHUNK = 1000
# What a publish to Redis raises when Redis is down, unreachable or refuses writes (full).
PUBLISH_ERRORS = (KombuError, RedisError, OSError)


class NotSent(RuntimeError):
    """Redis did not take (all) the messages: the requests are recorded (queued, not sent)
    and the scheduler sends them within seconds of Redis taking messages again.

    ``unsent`` are their ids, ``sent`` how many went out; ``results`` (``submit_many``) and
    ``batch_id`` (``submit_batch``) say what was recorded."""

    def __init__(self, message: str, *, unsent: Sequence[str], sent: int, cause: str,
                 redis_url: str) -> None:
        super().__init__(message)
        self.unsent = list(unsent)
        self.sent = sent
        self.cause = cause
        self.redis_url = redis_url
        self.results: list[Any] = []  # EnqueueResult
        self.batch_id: str | None = None

    def reworded(self, message: str) -> NotSent:
        again = NotSent(message, unsent=self.unsent, sent=self.sent, cause=self.cause,
                        redis_url=self.redis_url)
        again.results, again.batch_id = self.results, self.batch_id
        return again


class Sender:
    """Holds the store, the broker connection and settings; sends recorded requests."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        store: Store | None = None,
        celery: Celery | None = None,
        role: str = "producer",
    ) -> None:
        self.settings = settings or Settings()
        self.role = role
        self.store = store or Store.from_url(self.settings.database_url)
        self.celery = celery or Celery("seat_revoker_producer")
        if celery is None:
            # No result backend here: the store is where producers read outcomes, and the
            # Redis backend would subscribe to a result channel for every task sent.
            config = celery_config(self.settings)
            config["result_backend"] = None
            config["task_send_sent_event"] = False  # workers still report received/started
            self.celery.config_from_object(config)
        self._redis: Redis | None = None
        self._declared: set[str] = set()
        self._bound = False
        with contextlib.suppress(RedisError):  # Redis down: checked before the first publish
            self.verify_store()

    @property
    def redis(self) -> Redis:
        if self._redis is None:
            self._redis = redis_client(self.settings.redis_url, connect_timeout=5, timeout=30)
        return self._redis

    @property
    def redis_shown(self) -> str:
        return redacted_url(self.settings.redis_url)

    def verify_store(self) -> None:
        """Check that the namespace's workers use this producer's store (binding the
        namespace to it if nobody did). Raises ``StoreMismatch`` naming both stores, or
        ``RedisError`` when Redis cannot be asked."""
        bind_store(self.store, self.redis, self.settings, role=self.role)
        self._bound = True

    def send(self, request_ids: Sequence[str]) -> list[str]:
        """Publish one task per request whose message is due (``sent_at`` null: recorded,
        re-queued or released and not yet published); the id doubles as the Celery task
        id. Returns the ids this call published.

        Each chunk is claimed in the store before it is published (``claim_unsent``), so
        two producers racing on the same request — a duplicate submission while the first
        is still publishing, the scheduler's unsent sweep — send one message, not two.
        Publishes go through kombu's batch API, which pipelines them into Redis: 10,000
        tasks take about a second instead of twenty. Raises ``NotSent`` when Redis does not
        take them (down, or full with ``noeviction``): the claims of what did not go out
        are given back, so the scheduler sends those later. A chunk that failed half-way
        may have left some messages in Redis; those count as sent.
        """
        ids = list(dict.fromkeys(request_ids))
        if not ids:
            return []
        published: list[str] = []
        start, claimed, stamp = 0, list[str](), utcnow()
        try:
            if not self._bound:
                self.verify_store()
            for start in range(0, len(ids), PUBLISH_CHUNK):
                lanes, stamp = self.store.claim_unsent(ids[start : start + PUBLISH_CHUNK])
                claimed = [request_id for request_id, _ in lanes]
                for priority in PRIORITIES:
                    in_lane = [i for i, p in lanes if p == priority]
                    if in_lane:
                        self.publish(in_lane, priority=priority)
                published.extend(claimed)
                claimed = []
        except PUBLISH_ERRORS as exc:
            cause = cause_text(exc)
            landed = self._landed(claimed)  # a pipeline that failed half-way
            if claimed:
                self.store.release_claim([i for i in claimed if i not in landed], stamp)
            published.extend(i for i in claimed if i in landed)
            done = set(published)
            unsent = [i for i in ids[start:] if i not in done]
            raise NotSent(
                f"Redis at {self.redis_shown} did not take {len(unsent)} of {len(ids)} "
                f"messages ({cause}); those requests stay recorded as queued, not sent, and "
                "the scheduler sends them within seconds of Redis taking messages again",
                unsent=unsent, sent=len(published), cause=cause,
                redis_url=self.redis_shown,
            ) from None
        return published

    def _landed(self, chunk: Sequence[str]) -> set[str]:
        """Which of a failed chunk's messages are in the queue anyway (Redis ran a full
        pipeline's commands up to the first one it refused). Messages are pushed at the
        head of the queue's list, so only its first entries are read."""
        if not chunk:
            return set()
        try:
            keys = lane_queue_keys(self.settings)
            return set(chunk) & broker_task_ids(self.redis, keys, limit=2 * len(chunk))
        except (RedisError, OSError):
            return set()

    def publish(self, request_ids: Sequence[str], *, priority: Priority) -> None:
        """Publish one message per id to ``priority``'s lane as it is, without claiming it
        in the store (``send`` claims first). For a message whose record may not exist yet
        or any more."""
        queue = self.settings.lane_queue(priority)
        with self.celery.producer_or_acquire() as producer, producer.batch(max_size=1000):
            for request_id in request_ids:
                self.celery.send_task(
                    REVOKE_TASK,
                    args=[request_id],
                    task_id=request_id,
                    queue=queue,
                    producer=producer,
                    # A queue is declared with its first message only; Celery's repr of
                    # the arguments is given, not computed (both are per-message costs).
                    **({"declare": []} if queue in self._declared else {}),
                    argsrepr=f"['{request_id}']",
                    kwargsrepr="{}",
                )
                self._declared.add(queue)

    def close(self) -> None:
        self.store.engine.dispose()
        if self._redis is not None:
            self._redis.close()


def broker_task_ids(redis: Redis, keys: Iterable[str], *, limit: int | None = None
                    ) -> set[str]:
    """Ids of the tasks waiting in the broker's queue lists (kombu JSON messages); with
    ``limit``, of the newest ``limit`` messages of each list only."""
    found: set[str] = set()
    for key in keys:
        for raw in redis.lrange(key, 0, -1 if limit is None else limit - 1):
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                task_id = json.loads(raw).get("headers", {}).get("id")
                if task_id:
                    found.add(str(task_id))
    return found


def cause_text(error: BaseException) -> str:
    """What Redis said, in one line: the root cause of kombu's wrapped errors."""
    seen: BaseException = error
    while seen.__cause__ is not None and seen.__cause__ is not seen:
        seen = seen.__cause__
    text = " ".join(str(seen).split())
    text = re.sub(r"^Command # \d+ \(.*?\) of pipeline caused error: ", "", text)
    name = type(seen).__name__
    if name == "OutOfMemoryError":
        name = "Redis is full (maxmemory reached, noeviction)"
    return f"{name}: {text}" if text else name
