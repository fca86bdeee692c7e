"""REST for single revocations: submit, read, list with filters, retry a failed one."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

from worker.api.auth import Caller
from worker.api.context import ApiContext, get_context
from worker.api.refusals import refused
from worker.api.schemas import (
    KeyConflictOut,
    RevocationIn,
    RevocationOut,
    RevocationPage,
    SubmitOut,
)
from worker.decisions.outcomes import State
from worker.intake.conflicts import KeyConflict, identity_differences, key_conflicts
from worker.intake.producer import EnqueueResult
from worker.intake.requests import PersonInput, RevocationInput
from worker.store.queries import STATE_GROUPS, InvalidCursor, RequestFilter, list_requests

# What the REST routes record: a seat revocation or a person offboarding.
Submitted = TypeVar("Submitted", RevocationInput, PersonInput)

router = APIRouter(prefix="/v1/revocations", tags=["revocations"])
Context = Annotated[ApiContext, Depends(get_context)]
STATE_NAMES = [s.value for s in State] + list(STATE_GROUPS)


def validation_error(exc: ValidationError, prefix: tuple[str | int, ...]) -> RequestValidationError:
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    return RequestValidationError([{**e, "loc": (*prefix, *e["loc"])} for e in errors])


@router.post(
    "",
    response_model=SubmitOut,
    status_code=status.HTTP_201_CREATED,
    responses={
        200: {"model": SubmitOut, "description": "Duplicate: the key existed for the same "
              "request; nothing new is sent"},
        409: {"model": KeyConflictOut, "description": "The idempotency key belongs to a "
              "request about another seat or person; nothing was recorded"},
    },
)
def submit(
    body: RevocationIn,
    response: Response,
    caller: Caller,
    context: Context,
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", max_length=200)
    ] = None,
) -> Any:
    """Record and enqueue one revocation (201), or return the existing one for a known
    idempotency key (200; nothing new is sent). A key already used for another seat or
    person is a conflict (409 naming the stored request and what differs), never a silent
    duplicate."""
    try:
        request = RevocationInput(**body_fields(body, idempotency_key), requested_by=caller)
    except ValidationError as exc:
        raise validation_error(exc, ("body",)) from None
    result = submit_once(context, request, context.producer.submit)
    if isinstance(result, JSONResponse):
        return result
    if not result.created:
        response.status_code = status.HTTP_200_OK
    return SubmitOut(created=result.created, request=RevocationOut.of(result.record))


def body_fields(body: BaseModel, idempotency_key: str | None) -> dict[str, Any]:
    """The body's fields with the ``Idempotency-Key`` header as its key (if both are
    given they must agree)."""
    fields: dict[str, Any] = body.model_dump()
    if idempotency_key:
        if getattr(body, "key", None) and fields["key"] != idempotency_key:
            raise RequestValidationError([{
                "loc": ("header", "Idempotency-Key"), "type": "value_error",
                "msg": "the Idempotency-Key header and the body's key differ; give one"}])
        fields["key"] = idempotency_key
    return fields


def submit_once(
    context: ApiContext, request: Submitted, submit: Callable[[Submitted], EnqueueResult]
) -> EnqueueResult | JSONResponse:
    """Record and enqueue ``request`` unless its idempotency key is stored for another
    request (a 409 naming it and what differs, never a silent duplicate). A refusal of the
    producer (e.g. an unguarded seat id) is a 422."""
    conflicts = key_conflicts(context.store, [request])
    if conflicts:
        return conflict_response(conflicts[0])
    try:
        result = submit(request)
    except ValueError as exc:
        raise refused(exc, ("body",)) from None
    if not result.created:
        # A concurrent submission may have taken the key since the check above.
        differences = identity_differences(request, result.record)
        if differences:
            return conflict_response(KeyConflict(0, result.record.idempotency_key,
                                                 result.record.id, differences))
    return result


def conflict_response(conflict: KeyConflict) -> JSONResponse:
    """409: the key names a stored request about another seat or person."""
    body = KeyConflictOut(
        detail=conflict.describe(),
        idempotency_key=conflict.key,
        request_id=conflict.request_id,
        fields=[name for name, _, _ in conflict.fields],
    )
    return JSONResponse(body.model_dump(), status_code=status.HTTP_409_CONFLICT)


@router.get("", response_model=RevocationPage)
def list_revocations(
    _: Caller,
    context: Context,
    state: Annotated[
        list[str] | None,
        Query(description=f"Repeatable; one of {', '.join(STATE_NAMES)}"),
    ] = None,
    batch_id: Annotated[str | None, Query(max_length=36)] = None,
    seat_id: Annotated[str | None, Query(max_length=36)] = None,
    email: Annotated[str | None, Query(max_length=320)] = None,
    created_from: Annotated[datetime | None, Query(description="Inclusive, ISO 8601")] = None,
    created_to: Annotated[datetime | None, Query(description="Exclusive, ISO 8601")] = None,
    q: Annotated[str | None, Query(
        min_length=1, max_length=320,
        description="Partial search: a request, seat or batch id prefix (the 8 characters "
        "the CLI and dashboard show), part of an email (`@acme.com`: a domain), or an exact "
        "external id or idempotency key")] = None,
    source: Annotated[Literal["cli", "batch", "webhook", "rest", "scim"] | None, Query(
        description="Where the request came from")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    offset: Annotated[int | None, Query(ge=0, le=1_000_000)] = None,
) -> RevocationPage:
    """Requests newest first. Page with ``cursor`` (``next_cursor``) or ``offset``."""
    states = state or []
    unknown = [name for name in states if name not in STATE_NAMES]
    if unknown:
        raise RequestValidationError(
            [{"loc": ("query", "state"), "msg": f"unknown state {unknown[0]!r}",
              "type": "enum"}]
        )
    if cursor is not None and offset is not None:
        raise RequestValidationError(
            [{"loc": ("query", "offset"), "msg": "give cursor or offset, not both",
              "type": "value_error"}]
        )
    where = RequestFilter(
        states=states,
        batch_id=batch_id,
        seat_id=seat_id,
        email=email,
        created_from=_aware(created_from, "created_from"),
        created_to=_aware(created_to, "created_to"),
        text=q,
        source=source,
    )
    try:
        page = list_requests(context.store, where, limit=limit, cursor=cursor, offset=offset)
    except InvalidCursor:
        raise RequestValidationError(
            [{"loc": ("query", "cursor"), "msg": "cursor is not valid", "type": "value_error"}]
        ) from None
    return RevocationPage(
        items=[RevocationOut.of(r) for r in page.items],
        total=page.total,
        next_cursor=page.next_cursor,
        next_offset=page.next_offset,
    )


def _aware(value: datetime | None, name: str) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise RequestValidationError(
            [{"loc": ("query", name), "msg": "needs a timezone (e.g. Z or +00:00)",
              "type": "timezone_aware"}]
        )
    return value


@router.get("/{request_id}", response_model=RevocationOut, responses={404: {}})
def get_revocation(request_id: str, _: Caller, context: Context) -> RevocationOut:
    """One request with its history."""
    record = context.store.get(request_id)
    if record is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such request")
    return RevocationOut.of(record, context.store.history(record.id))


@router.post(
    "/{request_id}/cancel",
    response_model=RevocationOut,
    responses={404: {}, 409: {"description": "The request is running or has ended"}},
)
def cancel(request_id: str, caller: Caller, context: Context) -> RevocationOut:
    """Cancel a scheduled, held, awaiting-approval, queued or retrying request (a retrying
    one stops before its next attempt); a person request also while it runs, with its seat
    requests that have not sent their DELETE. The caller is recorded in its history."""
    return RevocationOut.of(cancel_request(context, request_id, actor=caller))


@router.post(
    "/{request_id}/retry",
    response_model=RevocationOut,
    status_code=status.HTTP_202_ACCEPTED,
    responses={404: {}, 409: {"description": "The request is not failed or needs_review"}},
)
def retry(request_id: str, caller: Caller, context: Context) -> RevocationOut:
    """Send a failed or needs_review request again (same idempotency key, a new attempt).
    For needs_review, fix what ``outcome_detail`` names first."""
    return RevocationOut.of(retry_request(context, request_id, actor=caller))


def retry_request(context: ApiContext, request_id: str, *, actor: str) -> Any:
    """Retry as ``actor`` (recorded in the request's history); 404 or 409 otherwise."""
    if context.store.get(request_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such request")
    try:
        return context.producer.retry(request_id, actor=actor)
    except ValueError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None


def cancel_request(context: ApiContext, request_id: str, *, actor: str) -> Any:
    """Cancel as ``actor`` (``Producer.cancel`` says what can be); 404 or 409 otherwise."""
    if context.store.get(request_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such request")
    try:
        return context.producer.cancel(request_id, actor=actor)
    except ValueError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
