"""REST for person offboarding: submit a person and a scope, read what was found.

``POST /v1/people`` records a person request (the worker finds every seat the person holds
in the scope and revokes each); ``GET /v1/people/{id}`` is its report: every seat found,
its outcome, the request that revoked it and the verification reads.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from worker.api.auth import Caller
from worker.api.context import ApiContext, get_context
from worker.api.routers.revocations import body_fields, submit_once, validation_error
from worker.intake.requests import PersonInput
from worker.store.personreport import person_report

router = APIRouter(prefix="/v1/people", tags=["people"])
Context = Annotated[ApiContext, Depends(get_context)]


class PersonIn(BaseModel):
    """A person (email, external_id, member_id) and exactly one scope."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"email": "jane@acme.com", "customer_external_id": "acme", "reason": "left"}]})

    email: str | None = Field(None, max_length=320)
    external_id: str | None = Field(None, max_length=200)
    member_id: str | None = Field(None, max_length=100)
    customer_id: str | None = Field(None, max_length=100)
    customer_external_id: str | None = Field(None, max_length=200)
    all_customers: bool = False
    key: str | None = Field(None, max_length=200)
    reason: str | None = Field(None, max_length=2000)
    effective_at: str | None = Field(None, max_length=40)


@router.post("", status_code=status.HTTP_201_CREATED)
def offboard(
    body: PersonIn,
    response: Response,
    caller: Caller,
    context: Context,
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", max_length=200)
    ] = None,
) -> Any:
    """Record and enqueue a person offboarding (201), or return the existing one for a
    known idempotency key (200). A key used for another request is a 409."""
    try:
        person = PersonInput(**body_fields(body, idempotency_key), requested_by=caller)
    except ValidationError as exc:
        raise validation_error(exc, ("body",)) from None
    result = submit_once(context, person, context.producer.offboard)
    if isinstance(result, JSONResponse):
        return result
    if not result.created:
        response.status_code = status.HTTP_200_OK
    return {"created": result.created, "request": person_report(context.store,
                                                                 result.record)}


@router.get("/{request_id}", responses={404: {}})
def read(request_id: str, _: Caller, context: Context) -> dict[str, Any]:
    """A person request with every seat found and its outcome."""
    record = context.store.get(request_id)
    if record is None or record.kind != "person":
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such person request")
    return person_report(context.store, record)


@router.get("")
def find(
    _: Caller,
    context: Context,
    email: Annotated[str | None, Query(max_length=320)] = None,
    external_id: Annotated[str | None, Query(max_length=200)] = None,
) -> list[dict[str, Any]]:
    """Person requests for an address or an external id, newest first, with their seats."""
    if not email and not external_id:
        raise RequestValidationError([{"loc": ("query", "email"), "type": "value_error",
                                       "msg": "give email or external_id"}])
    return [person_report(context.store, record) for record in
            context.store.person_requests(email=email or None,
                                          external_id=external_id or None)]
