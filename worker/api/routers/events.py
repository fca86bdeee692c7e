"""``POST /v1/events/offboarding``: signed offboarding webhooks → revocation requests."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from sqlalchemy.exc import IntegrityError

from worker.api.auth import client_of
from worker.api.context import ApiContext, get_context
from worker.api.offboarding import EVENT_TYPE, MappingError, OffboardingEvent, to_requests
from worker.api.refusals import refused
from worker.api.schemas import WebhookAccepted, WebhookIgnored
from worker.intake.conflicts import KeyConflict, key_conflicts
from worker.intake.requests import PersonInput, RevocationInput
from worker.intake.webhooks import WebhookVerificationError
from worker.store.models import WebhookDelivery
from worker.telemetry.logs import get_logger

log = get_logger("seat_revoker.api.events")
router = APIRouter(tags=["events"])
MAX_BODY = 1 << 20
MAX_WEBHOOK_ID = 200  # webhook_deliveries.webhook_id (worker/store/models.py)

_BODY_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": OffboardingEvent.model_json_schema(
            ref_template="#/components/schemas/{model}")}},
    },
    "parameters": [
        {"name": name, "in": "header", "required": True, "schema": {"type": "string"},
         "description": text}
        for name, text in (
            ("webhook-id", "Unique id of the delivery; redeliveries reuse it"),
            ("webhook-timestamp", "Unix seconds; must be within 5 minutes of now"),
            ("webhook-signature", "Space-separated v1,<base64 HMAC-SHA256> signatures"),
        )
    ],
}


def _invalid(loc: tuple[Any, ...], msg: str, kind: str = "value_error") -> RequestValidationError:
    return RequestValidationError([{"loc": loc, "msg": msg, "type": kind}])


@router.post(
    "/v1/events/offboarding",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=WebhookAccepted | WebhookIgnored,
    responses={401: {"description": "Bad, forged or stale signature"},
               409: {"description": "The webhook-id was seen with a different body"},
               413: {"description": "Body over 1 MiB"},
               422: {"description": "Malformed body or webhook-id; the field is named"}},
    openapi_extra=_BODY_DOC,
    summary="Offboarding event (Standard Webhooks signed)",
)
async def offboarding(
    request: Request, context: Annotated[ApiContext, Depends(get_context)]
) -> Any:
    """Verify, validate and enqueue one request per target; answer 202 with their ids.

    Idempotent on ``webhook-id``: a redelivery gets the stored answer and enqueues nothing.
    Nothing is enqueued when the signature, the timestamp or the body is bad.
    """
    body = await request.body()
    if len(body) > MAX_BODY:
        raise HTTPException(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, "body over 1 MiB")
    if not context.verifier.configured:
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "WEBHOOK_SECRETS is not set")
    utf8 = _is_utf8(body)
    try:
        if utf8:
            delivery = context.verifier.verify(body, request.headers)
        else:  # authentic but undecodable is the sender's bug (422), forged is 401
            delivery = context.verifier.verify_bytes(body, request.headers)
    except WebhookVerificationError as exc:
        log.warning("webhook.rejected", reason=exc.reason, client=client_of(request))
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, exc.reason) from None
    if not utf8:
        raise _invalid(("body",), "body is not UTF-8 text", "json_invalid")
    if len(delivery.webhook_id) > MAX_WEBHOOK_ID:
        raise _invalid(("header", "webhook-id"),
                       f"webhook-id is longer than {MAX_WEBHOOK_ID} characters",
                       "string_too_long")
    stored = await run_in_threadpool(_stored_answer, context, delivery.webhook_id)
    if stored is not None:
        log.info("webhook.redelivered", webhook_id=delivery.webhook_id)
        return JSONResponse(stored, status_code=status.HTTP_202_ACCEPTED)
    try:
        payload = json.loads(body)
    except ValueError:
        raise _invalid(("body",), "body is not valid JSON", "json_invalid") from None
    except RecursionError:
        raise _invalid(("body",), "body is not valid JSON: nested too deeply",
                       "json_invalid") from None
    if not isinstance(payload, dict):
        raise _invalid(("body",), "body must be a JSON object", "dict_type")
    kind = payload.get("type")
    if not isinstance(kind, str):
        raise _invalid(("body", "type"), "type must be a string", "string_type")
    if kind != EVENT_TYPE:
        return WebhookIgnored(type=kind[:200])
    try:
        event = OffboardingEvent.model_validate(payload)
        requests = to_requests(event, delivery.webhook_id)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in errors]
        ) from None
    except MappingError as exc:
        raise RequestValidationError(exc.errors) from None
    try:
        answer = await run_in_threadpool(
            accept_delivery, context, delivery.webhook_id, requests
        )
    except DeliveryConflict as exc:
        log.warning("webhook.conflict", webhook_id=delivery.webhook_id,
                    request_id=exc.conflict.request_id)
        return JSONResponse({"detail": exc.conflict.describe()},
                            status_code=status.HTTP_409_CONFLICT)
    except ValueError as exc:  # refused by the producer before anything was written
        log.info("webhook.refused", webhook_id=delivery.webhook_id, error=str(exc)[:200])
        raise refused(exc, ("body", "data", "targets")) from None
    return JSONResponse(answer, status_code=status.HTTP_202_ACCEPTED)


class DeliveryConflict(Exception):
    """A delivery whose webhook-id was seen with other targets or another person (its
    requests exist, its delivery row does not): answered 409, nothing is enqueued."""

    def __init__(self, conflict: KeyConflict) -> None:
        super().__init__(conflict.describe())
        self.conflict = conflict


def _is_utf8(body: bytes) -> bool:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _stored_answer(context: ApiContext, webhook_id: str) -> dict[str, Any] | None:
    with context.store.session() as session:
        row = session.get(WebhookDelivery, webhook_id)
        return None if row is None else dict(row.response)


def accept_delivery(
    context: ApiContext, webhook_id: str, requests: list[RevocationInput | PersonInput]
) -> dict[str, Any]:
    """Enqueue the requests, then record the delivery with its answer.

    Order matters. The requests are recorded and sent first, the delivery row last:

    - Crash between the two: no delivery row, so the sender's retry runs this again. The
      per-target idempotency keys (derived from webhook-id + index) make the store return
      the existing requests and the producer sends nothing new; the answer is the same.
      Recording the delivery first would instead let a crash turn the retry into an empty
      "already done" while no request exists: a lost offboarding.
    - Two concurrent deliveries of one id: both may pass the lookup; the unique
      idempotency keys let only one of them create each request (the other gets
      ``created=False`` and sends nothing), and the primary key on ``webhook_id`` lets only
      one delivery row in. The loser reads the winner's row and answers with it, so both
      answers name the same request ids.
    """
    conflicts = key_conflicts(context.store, requests)
    if conflicts:
        raise DeliveryConflict(conflicts[0])
    results = context.producer.submit_many(requests)
    answer: dict[str, Any] = {
        "webhook_id": webhook_id,
        "request_ids": [result.record.id for result in results],
    }
    try:
        with context.store.session() as session:
            session.add(WebhookDelivery(webhook_id=webhook_id, response=answer))
    except IntegrityError:
        stored = _stored_answer(context, webhook_id)
        if stored is not None:
            return stored
        raise
    log.info(
        "webhook.accepted",
        webhook_id=webhook_id,
        requests=len(results),
        created=sum(1 for r in results if r.created),
    )
    return answer
