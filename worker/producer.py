"""The producer API: validate, dedupe by idempotency key, record, enqueue.

The CLI, the HTTP API and HR integrations written in Python all come through here::

    from worker.producer import enqueue_revocation
    record = enqueue_revocation(
        "4f1c…", subscription_id="9a0e…", email="jane@acme.com", reason="offboarding"
    )
    record.id, record.state  # → "…", "queued"

Enqueueing a key that exists returns the existing record and sends nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from celery import Celery
from pydantic import SecretStr
from redis import Redis

from config.celery import REVOKE_TASK, celery_config
from config.settings import Settings
from worker.logs import get_logger
from worker.models import RevocationRequest, utcnow
from worker.outcomes import ATTENTION_STATES, State
from worker.portal_tokens import stash_portal_token
from worker.requests import RevocationInput
from worker.seatlists import container_of_snapshot
from worker.store import Store

log = get_logger("seat_revoker.producer")

__all__ = [
    "BatchResult",
    "EnqueueResult",
    "Producer",
    "RevocationInput",
    "UnguardedRequest",
    "enqueue_revocation",
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


@dataclass(frozen=True)
class EnqueueResult:
    record: RevocationRequest
    created: bool  # False: the idempotency key existed and nothing was sent


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
    ) -> None:
        self.settings = settings or Settings()
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
        self._declared = False

    @property
    def redis(self) -> Redis:
        if self._redis is None:
            self._redis = Redis.from_url(self.settings.redis_url)
        return self._redis

    def submit(
        self, request: RevocationInput, *, portal_token: SecretStr | None = None
    ) -> EnqueueResult:
        """Record one request and enqueue it, unless its idempotency key is known."""
        return self.submit_many([request], portal_token=portal_token)[0]

    def submit_batch(
        self,
        requests: Sequence[RevocationInput],
        *,
        name: str | None = None,
        source: str | None = None,
        requested_by: str | None = None,
        lines: Sequence[int] | None = None,
    ) -> BatchResult:
        """Record a batch and all its requests in one transaction, then enqueue the new ones.

        Validate first (``worker.batchfile.parse_batch``): this writes all or nothing.
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
        results = self.submit_many(requests, batch=batch, lines=lines)
        return BatchResult(
            batch_id=batch_id,
            total=len(results),
            created=sum(r.created for r in results),
            duplicates=sum(not r.created for r in results),
            request_ids=[r.record.id for r in results],
        )

    def submit_many(
        self,
        requests: Sequence[RevocationInput],
        *,
        portal_token: SecretStr | None = None,
        batch: dict[str, Any] | None = None,
        lines: Sequence[int] | None = None,
    ) -> list[EnqueueResult]:
        """Record all requests in one transaction, then enqueue the new ones."""
        if any(r.mode == "customer_portal" for r in requests) and portal_token is None:
            raise ValueError("customer-portal mode needs a customer session token")
        token_ref = (
            stash_portal_token(
                self.redis, self.settings.redis_key("portal-token"), portal_token
            )
            if portal_token is not None
            else None
        )
        lease = timedelta(seconds=self.settings.queued_lease_seconds)
        rows = [self._guarded(_row(request, token_ref, batch, lease), request)
                for request in requests]
        results = [
            EnqueueResult(record, created)
            for record, created in self.store.add_requests(rows, batch=batch, lines=lines)
        ]
        self.send([r.record.id for r in results if r.created and r.record.state == State.QUEUED])
        if len(results) > 20:  # one summary line instead of thousands
            log.info("requests.enqueued", batch_id=batch["id"] if batch else None,
                     created=sum(r.created for r in results), total=len(results))
            return results
        for result in results:
            log.info(
                "request.enqueued" if result.created else "request.deduplicated",
                request_id=result.record.id,
                seat_id=result.record.seat_id,
                idempotency_key=result.record.idempotency_key,
                state=result.record.state,
            )
        return results

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

    def send(self, request_ids: Sequence[str]) -> None:
        """Publish one task per request id (the id doubles as the Celery task id).

        Publishes go through kombu's batch API, which pipelines them into Redis: 10,000
        tasks take about a second instead of twenty.
        """
        if not request_ids:
            return
        with self.celery.producer_or_acquire() as producer, producer.batch(max_size=1000):
            for request_id in request_ids:
                self.celery.send_task(
                    REVOKE_TASK,
                    args=[request_id],
                    task_id=request_id,
                    queue=self.settings.queue_name,
                    producer=producer,
                    # The queue is declared with the first message only; Celery's repr of
                    # the arguments is given, not computed (both are per-message costs).
                    **({"declare": []} if self._declared else {}),
                    argsrepr=f"['{request_id}']",
                    kwargsrepr="{}",
                )
                self._declared = True

    def retry(
        self, request_id: str, *, portal_token: SecretStr | None = None
    ) -> RevocationRequest:
        """Send a failed or needs-review request again: same idempotency key, a new attempt,
        a fresh retry budget; its history is kept. ``portal_token`` replaces an expired
        customer/member session. Raises ``ValueError`` unless the request is ``failed`` or
        ``needs_review``."""
        now = utcnow()
        fresh_token: dict[str, Any] = {}
        if portal_token is not None:
            fresh_token["portal_token_ref"] = stash_portal_token(
                self.redis, self.settings.redis_key("portal-token"), portal_token
            )
        moved = self.store.transition(
            [request_id], from_states=ATTENTION_STATES, to_state=State.QUEUED,
            detail={"retry": "manual"}, window_started_at=now,
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
        self.send(moved)
        log.info("request.retried", request_id=request_id)
        record = self.store.get(request_id)
        assert record is not None
        return record

    def cancel(self, request_id: str) -> RevocationRequest:
        """Cancel a request that has not started (scheduled or queued)."""
        moved = self.store.transition(
            [request_id], from_states=[State.SCHEDULED, State.QUEUED],
            to_state=State.CANCELLED, detail={"cancelled": "operator"},
        )
        record = self.store.get(request_id)
        if record is None:
            raise ValueError(f"no request {request_id!r}")
        if not moved:
            raise ValueError(f"request {request_id} is {record.state}; only scheduled or "
                             "queued requests can be cancelled")
        log.info("request.cancelled", request_id=request_id)
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
        "portal_token_ref": token_ref if request.mode == "customer_portal" else None,
    }


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
