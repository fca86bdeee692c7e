"""The producer API: validate, dedupe by idempotency key, record, enqueue.

The CLI, the HTTP API and HR integrations written in Python all come through here::

    from worker.intake.producer import enqueue_revocation
    record = enqueue_revocation(
        "4f1c…", subscription_id="9a0e…", email="jane@acme.com", reason="offboarding"
    )
    record.id, record.state  # → "…", "queued"

Enqueueing a key that exists returns the existing record and sends nothing (unless that
record was never sent: then it is sent now).

Every request is recorded before its message is published, and marked ``sent_at`` once
Redis took the message. When Redis is down or full, ``NotSent`` says so in one line; the
records stay queued and unsent, and the scheduler sends them within seconds of Redis
taking messages again. A producer refuses (``StoreMismatch``) when the namespace's workers
use another store than its ``DATABASE_URL``.
"""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from celery import Celery
from kombu.exceptions import KombuError
from pydantic import SecretStr
from redis import Redis
from redis.exceptions import RedisError

from config.celery import REVOKE_TASK, celery_config
from config.settings import PRIORITIES, Priority, Settings, redacted_url
from worker.connections import redis_client
from worker.decisions.outcomes import ATTENTION_STATES, State
from worker.intake.portal_tokens import discard_portal_token, stash_portal_token
from worker.intake.requests import PersonInput, RevocationInput
from worker.polar.seatlists import container_of_snapshot
from worker.store.models import RevocationRequest, utcnow
from worker.store.records import Store, bind_store
from worker.telemetry.logs import get_logger
from worker.telemetry.metrics import lane_queue_keys

log = get_logger("seat_revoker.producer")

__all__ = [
    "BatchResult",
    "EnqueueResult",
    "NotSent",
    "PersonInput",
    "Producer",
    "RevocationInput",
    "UnguardedRequest",
    "enqueue_revocation",
    "offboard_person",
]


class UnguardedRequest(ValueError):
    """A bare seat id whose subscription/order is unknown: nothing can tell who holds it."""

    def __init__(self, seat_id: str) -> None:
        super().__init__(
            f"seat {seat_id}: add subscription_id or order_id (Polar shows who holds a seat "
            "only in its subscription's or order's seat list), or opt out of the occupant "
            "guard with guard=false / --unguarded"
        )
        self.seat_id = seat_id


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
        self.results: list[EnqueueResult] = []
        self.batch_id: str | None = None

    def reworded(self, message: str) -> NotSent:
        again = NotSent(message, unsent=self.unsent, sent=self.sent, cause=self.cause,
                        redis_url=self.redis_url)
        again.results, again.batch_id = self.results, self.batch_id
        return again


@dataclass(frozen=True)
class EnqueueResult:
    record: RevocationRequest
    created: bool  # False: the idempotency key existed and nothing new was recorded
    # True: an earlier submission of the key had been recorded but never sent (Redis was
    # down): it was sent now.
    resent: bool = False


@dataclass(frozen=True)
class BatchResult:
    batch_id: str
    total: int  # rows in the batch (after in-file duplicates collapsed)
    created: int  # new requests enqueued
    duplicates: int  # rows whose idempotency key an earlier request already had
    request_ids: list[str]


class Producer:
    """Holds the store, the broker connection and settings for repeated submissions."""

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

    def submit(
        self, request: RevocationInput, *, portal_token: SecretStr | None = None
    ) -> EnqueueResult:
        """Record one request and enqueue it, unless its idempotency key is known."""
        return self.submit_many([request], portal_token=portal_token)[0]

    def submit_batch(
        self,
        requests: Sequence[RevocationInput | PersonInput],
        *,
        name: str | None = None,
        source: str | None = None,
        requested_by: str | None = None,
        lines: Sequence[int] | None = None,
    ) -> BatchResult:
        """Record a batch and all its requests in one transaction, then enqueue the new ones.

        Validate first (``worker.intake.batchfile.parse_batch``): this writes all or nothing.
        """
        if not requests:
            raise ValueError("a batch needs at least one request")
        batch_id = str(uuid.uuid4())
        batch: dict[str, Any] = {
            "id": batch_id,
            "name": name,
            "source": source,
            "total": len(requests),
            "requested_by": requested_by,
        }
        results = self.submit_many(requests, batch=batch, lines=lines, priority="bulk")
        return BatchResult(
            batch_id=batch_id,
            total=len(results),
            created=sum(r.created for r in results),
            duplicates=sum(not r.created for r in results),
            request_ids=[r.record.id for r in results],
        )

    def offboard(self, person: PersonInput) -> EnqueueResult:
        """Record and enqueue one person request: every seat the person holds in its scope
        is found and revoked by the worker (``worker.jobs.person``). Same idempotency as
        ``submit``: a replay returns the first request."""
        return self.submit_many([person])[0]

    def submit_many(
        self,
        requests: Sequence[RevocationInput | PersonInput],
        *,
        portal_token: SecretStr | None = None,
        batch: dict[str, Any] | None = None,
        lines: Sequence[int] | None = None,
        priority: Priority = "urgent",
    ) -> list[EnqueueResult]:
        """Record all requests in one transaction, then enqueue the new ones. A request
        that names no priority gets ``priority`` (single requests are urgent; a batch's
        rows bulk)."""
        if any(isinstance(r, RevocationInput) and r.mode == "customer_portal"
               for r in requests) and portal_token is None:
            raise ValueError("customer-portal mode needs a customer session token")
        token_ref = self._stash(portal_token) if portal_token is not None else None
        lease = timedelta(seconds=self.settings.queued_lease_seconds)
        rows = [_person_row(request, batch, lease, priority)
                if isinstance(request, PersonInput)
                else self._guarded(_row(request, token_ref, batch, lease, priority), request)
                for request in requests]
        recorded = self.store.add_requests(_same_shape(rows), batch=batch, lines=lines)
        fresh = [record.id for record, created in recorded
                 if created and record.state == State.QUEUED]
        # A duplicate of a request that was recorded but never sent is not done: send it.
        stale = list(dict.fromkeys(
            record.id for record, created in recorded
            if not created and record.state == State.QUEUED and record.sent_at is None))
        try:
            published = set(self.send(fresh + stale))
        except NotSent as error:
            results = [EnqueueResult(record, created) for record, created in recorded]
            raise self._not_sent(error, results, batch) from None
        # A duplicate resent only what it claimed: a concurrent first submission that is
        # still publishing keeps its own message.
        resent = [i for i in stale if i in published]
        results = [EnqueueResult(record, created, resent=record.id in published and not created)
                   for record, created in recorded]
        now = utcnow()
        for result in results:
            if result.record.id in published:
                result.record.sent_at = result.record.sent_at or now
        if len(results) > 20:  # one summary line instead of thousands
            log.info("requests.enqueued", batch_id=batch["id"] if batch else None,
                     created=sum(r.created for r in results), resent=len(resent),
                     total=len(results))
            return results
        for result in results:
            log.info(
                "request.enqueued" if result.created else
                "request.resent" if result.resent else "request.deduplicated",
                request_id=result.record.id,
                seat_id=result.record.seat_id,
                idempotency_key=result.record.idempotency_key,
                state=result.record.state,
            )
        return results

    def _stash(self, portal_token: SecretStr) -> str:
        try:
            return stash_portal_token(
                self.redis, self.settings.redis_key("portal-token"), portal_token
            )
        except RedisError as exc:
            cause = _cause_text(exc)
            raise NotSent(
                f"Redis at {self.redis_shown} is unavailable ({cause}): the customer "
                "session token cannot be kept there, so nothing was recorded; submit again "
                "when Redis answers", unsent=[], sent=0, cause=cause,
                redis_url=self.redis_shown) from None

    def _not_sent(self, error: NotSent, results: list[EnqueueResult],
                  batch: dict[str, Any] | None) -> NotSent:
        """The one line a producer's caller shows when Redis did not take the messages."""
        unsent = set(error.unsent)
        when = "within seconds of Redis taking messages again"
        if batch is not None:
            message = (f"batch {batch['id']}: {error.sent} of {error.sent + len(unsent)} "
                       f"requests sent; Redis at {error.redis_url} did not take the rest "
                       f"({error.cause}). The {len(unsent)} others are recorded as queued, "
                       f"not sent, and the scheduler sends them {when}")
        elif len(results) == 1:
            message = (f"request {results[0].record.id} is recorded (queued, not sent yet): "
                       f"Redis at {error.redis_url} did not take its message "
                       f"({error.cause}). The scheduler sends it {when}")
        else:
            message = (f"{error.sent} of {error.sent + len(unsent)} requests sent; Redis at "
                       f"{error.redis_url} did not take the rest ({error.cause}). They are "
                       f"recorded as queued, not sent, and the scheduler sends them {when}")
        # The caller gets the exception (the CLI prints it as its one line): info here.
        log.info("requests.not_sent", batch_id=batch["id"] if batch else None,
                  sent=error.sent, unsent=len(unsent), redis=error.redis_url,
                  error=error.cause)
        again = error.reworded(message)
        again.results = results
        again.batch_id = batch["id"] if batch else None
        return again

    def _guarded(self, row: dict[str, Any], request: RevocationInput) -> dict[str, Any]:
        """Give a bare seat id the subscription/order this system saw it in, so the worker
        can read who holds it; refuse it when there is none, unless the producer opted out
        of the guard (``guard=False`` or ``ALLOW_UNGUARDED``)."""
        if request.subscription_id or request.order_id:
            return row
        assert request.seat_id is not None, "validated: no container means a seat id"
        container = container_of_snapshot(self.store, request.seat_id)
        if container is not None:
            return {**row, **container}
        if not request.guard or self.settings.allow_unguarded:
            return {**row, "guarded": False}
        raise UnguardedRequest(request.seat_id)

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
            cause = _cause_text(exc)
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

    def publish(self, request_ids: Sequence[str], *, priority: Priority = "urgent") -> None:
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

    def retry(
        self, request_id: str, *, portal_token: SecretStr | None = None,
        actor: str | None = None,
    ) -> RevocationRequest:
        """Send a failed or needs-review request again: same idempotency key, a new attempt,
        a fresh retry budget; its history is kept. ``portal_token`` replaces an expired
        customer/member session. Raises ``ValueError`` unless the request is ``failed`` or
        ``needs_review``."""
        now = utcnow()
        fresh_token: dict[str, Any] = {}
        if portal_token is not None:
            fresh_token["portal_token_ref"] = self._stash(portal_token)
        moved = self.store.transition(
            [request_id], from_states=ATTENTION_STATES, to_state=State.QUEUED,
            detail={"retry": "manual", **({"by": actor} if actor else {})},
            window_started_at=now,
            attempts_before_window=RevocationRequest.attempts,
            lease_expires_at=now + timedelta(seconds=self.settings.queued_lease_seconds),
            finished_at=None, **fresh_token,
        )
        if not moved:
            record = self.store.get(request_id)
            if record is None:
                raise ValueError(f"no request {request_id!r}")
            raise ValueError(f"request {request_id} is {record.state}; only failed or "
                             "needs_review requests retry")
        try:
            self.send(moved)
        except NotSent as error:
            raise error.reworded(
                f"request {request_id} is queued again but not sent: Redis at "
                f"{error.redis_url} did not take its message ({error.cause}). The "
                "scheduler sends it within seconds of Redis taking messages again") from None
        log.info("request.retried", request_id=request_id, by=actor)
        record = self.store.get(request_id)
        assert record is not None
        return record

    def cancel(self, request_id: str, *, actor: str | None = None) -> RevocationRequest:
        """Cancel a request that has not ended and is not running right now: scheduled,
        queued or retrying. A message still in the broker finds it cancelled (terminal) and
        stops: the worker claims a request only while it is not terminal."""
        moved = self.store.transition(
            [request_id], from_states=[State.SCHEDULED, State.QUEUED, State.RETRYING],
            to_state=State.CANCELLED,
            detail={"cancelled": "operator", **({"by": actor} if actor else {})},
        )
        record = self.store.get(request_id)
        if record is None:
            raise ValueError(f"no request {request_id!r}")
        if not moved:
            raise ValueError(f"request {request_id} is {record.state}; only scheduled, "
                             "queued or retrying requests can be cancelled")
        if record.portal_token_ref:
            try:
                discard_portal_token(self.redis, self.settings.redis_key("portal-token"),
                                     record.portal_token_ref)
            except RedisError as exc:  # it expires on its own
                log.warning("portal_token.not_deleted", error=type(exc).__name__)
        log.info("request.cancelled", request_id=request_id, by=actor)
        return record

    def close(self) -> None:
        self.store.engine.dispose()
        if self._redis is not None:
            self._redis.close()


def _row(
    request: RevocationInput,
    token_ref: str | None,
    batch: dict[str, Any] | None,
    queued_lease: timedelta,
    default_priority: Priority,
) -> dict[str, Any]:
    now = utcnow()
    scheduled = request.effective_at is not None and request.effective_at > now
    return {
        "id": str(uuid.uuid4()),
        "idempotency_key": request.idempotency_key(),
        "seat_id": request.seat_id,
        "mode": request.mode,
        "subscription_id": request.subscription_id,
        "order_id": request.order_id,
        "occupant_email": request.email,
        "occupant_member_id": request.member_id,
        "occupant_customer_id": request.customer_id,
        "occupant_external_id": request.external_id,
        "state": (State.SCHEDULED if scheduled else State.QUEUED).value,
        "effective_at": request.effective_at,
        "lease_expires_at": None if scheduled else now + queued_lease,
        "requested_by": request.requested_by,
        "reason": request.reason,
        "batch_id": batch["id"] if batch else None,
        "priority": request.priority or default_priority,
        "portal_token_ref": token_ref if request.mode == "customer_portal" else None,
        "sent_at": None,
    }


# Columns a person row sets that a seat row leaves to their defaults.
_ROW_DEFAULTS: dict[str, Any] = {"kind": "seat", "scope_customer_id": None,
                                 "scope_external_customer_id": None,
                                 "scope_all_customers": False}


def _same_shape(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Seat and person rows with the same keys, so a mixed batch stays one executemany."""
    if all(row.get("kind", "seat") == "seat" for row in rows):
        return rows
    return [{**_ROW_DEFAULTS, **row} for row in rows]


def _person_row(
    request: PersonInput, batch: dict[str, Any] | None, queued_lease: timedelta,
    default_priority: Priority,
) -> dict[str, Any]:
    """A person request: no seat, no subscription/order; the worker finds them."""
    now = utcnow()
    scheduled = request.effective_at is not None and request.effective_at > now
    return {
        "id": str(uuid.uuid4()),
        "idempotency_key": request.idempotency_key(),
        "kind": "person",
        "seat_id": None,
        "mode": "organization",
        "subscription_id": None,
        "order_id": None,
        "occupant_email": request.email,
        "occupant_member_id": request.member_id,
        "occupant_customer_id": None,
        "occupant_external_id": request.external_id,
        "scope_customer_id": request.customer_id,
        "scope_external_customer_id": request.customer_external_id,
        "scope_all_customers": request.all_customers,
        "priority": request.priority or default_priority,
        "state": (State.SCHEDULED if scheduled else State.QUEUED).value,
        "effective_at": request.effective_at,
        "lease_expires_at": None if scheduled else now + queued_lease,
        "requested_by": request.requested_by,
        "reason": request.reason,
        "batch_id": batch["id"] if batch else None,
        "portal_token_ref": None,
        "sent_at": None,
    }


def offboard_person(*, settings: Settings | None = None, **fields: Any) -> RevocationRequest:
    """Validate, dedupe, record and enqueue one person request; returns its record.

    ``fields`` are those of ``PersonInput`` (email, external_id, member_id; customer_id,
    customer_external_id or all_customers=True; key, reason, requested_by, effective_at).
    Raises ``pydantic.ValidationError`` naming the bad field; nothing is written then.
    """
    person = PersonInput(**fields)
    producer = Producer(settings)
    try:
        return producer.offboard(person).record
    finally:
        producer.close()


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


def _cause_text(error: BaseException) -> str:
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


def enqueue_revocation(
    seat_id: str | None = None,
    *,
    settings: Settings | None = None,
    portal_token: SecretStr | None = None,
    **fields: Any,
) -> RevocationRequest:
    """Validate, dedupe, record and enqueue one request; returns its record.

    ``fields`` are those of ``RevocationInput`` (subscription_id, order_id, email,
    member_id, customer_id, external_id, mode, key, reason, requested_by). Raises
    ``pydantic.ValidationError`` naming the bad field; nothing is written then.
    """
    request = RevocationInput(seat_id=seat_id, **fields)
    producer = Producer(settings)
    try:
        return producer.submit(request, portal_token=portal_token).record
    finally:
        producer.close()
