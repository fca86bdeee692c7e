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

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from pydantic import SecretStr
from redis.exceptions import RedisError

from config.settings import Priority, Settings
from worker.decisions.outcomes import (
    ATTENTION_STATES,
    CANCELLABLE_STATES,
    PERSON_CANCELLABLE_STATES,
    State,
)
from worker.intake.portal_tokens import discard_portal_token, stash_portal_token
from worker.intake.requests import PersonInput, RevocationInput
from worker.intake.rows import person_row, same_shape, seat_row
from worker.intake.sender import NotSent, Sender, cause_text
from worker.polar.seats import container_of_snapshot
from worker.store.models import RevocationRequest, utcnow
from worker.telemetry.logs import get_logger

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


class Producer(Sender):
    """Validated requests in, records and messages out: dedupe by idempotency key,
    record, then send (``Sender``). Also retries and cancellations by operators."""

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
        rows = [person_row(request, batch, lease, priority)
                if isinstance(request, PersonInput)
                else self._guarded(seat_row(request, token_ref, batch, lease, priority), request)
                for request in requests]
        recorded = self.store.add_requests(same_shape(rows), batch=batch, lines=lines)
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
            cause = cause_text(exc)
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
            return {**row, **container.columns()}
        if not request.guard or self.settings.allow_unguarded:
            return {**row, "guarded": False}
        raise UnguardedRequest(request.seat_id)

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
        """Cancel a request before it revokes anything: scheduled, held, awaiting approval,
        queued or retrying (a message still in the broker finds it cancelled, terminal, and
        stops); a person request also while it runs. A person request's seat requests that
        have not sent their DELETE end cancelled too, recorded with the same actor
        (``Store.cancel_children``); one already sending its DELETE finishes on its own, a
        worker about to DELETE for one finds it cancelled (``Store.begin_delete``), and the
        person request records no new one (``Store.add_requests(parent_id=…)``)."""
        record = self.store.get(request_id)
        if record is None:
            raise ValueError(f"no request {request_id!r}")
        person = record.kind == "person"
        moved = self.store.transition(
            [request_id], from_states=PERSON_CANCELLABLE_STATES if person
            else CANCELLABLE_STATES, to_state=State.CANCELLED,
            detail={"cancelled": "operator", **({"by": actor} if actor else {})},
        )
        record = self.store.get(request_id)
        assert record is not None
        if not moved:
            raise ValueError(f"request {request_id} is {record.state}; only scheduled, "
                             "queued or retrying requests can be cancelled (also held or "
                             "awaiting_approval ones, and a person request while it runs)")
        children = self.store.cancel_children(request_id) if person else []
        if record.portal_token_ref:
            try:
                discard_portal_token(self.redis, self.settings.redis_key("portal-token"),
                                     record.portal_token_ref)
            except RedisError as exc:  # it expires on its own
                log.warning("portal_token.not_deleted", error=type(exc).__name__)
        log.info("request.cancelled", request_id=request_id, by=actor,
                 **({"children_cancelled": len(children)} if person else {}))
        return record

    def cancel_note(self, record: RevocationRequest) -> str:
        """What a cancelled person request's seat requests came to, in one line ("" for a
        seat request)."""
        if record.kind != "person":
            return ""
        states = [State(child.state) for child in self.store.children_of(record.id)]
        cancelled = sum(s is State.CANCELLED for s in states)
        going = sum(not s.is_terminal for s in states)
        done = len(states) - cancelled - going
        return (f"{cancelled} seat request(s) cancelled with it, {going} had sent their "
                f"DELETE and finish on their own, {done} had ended before")


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
