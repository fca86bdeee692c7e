"""REST for the circuit breaker: what is open and held, release, reject (the same desk as
``seat-revoker held|release|reject``; the caller is recorded as who acted)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, status
from pydantic import BaseModel, Field

from worker.api.auth import Caller
from worker.api.context import ApiContext, get_context
from worker.jobs.breakerdesk import Acted, UnknownTarget
from worker.store.models import RevocationRequest

router = APIRouter(prefix="/v1/breaker", tags=["breaker"])
Context = Annotated[ApiContext, Depends(get_context)]


class TargetsIn(BaseModel):
    targets: list[str] = Field(min_length=1, max_length=10_000, description=(
        "Breaker scopes (org, customer:<id>) and/or request ids (a held seat request, or a "
        "person request: its held seats)"))


class ActedOut(BaseModel):
    moved: list[str]
    closed: list[str] = Field(description="Scopes whose breaker closed")
    not_sent: str | None = None


def held_out(record: RevocationRequest) -> dict[str, Any]:
    return {"id": record.id, "scope": record.held_scope, "seat_id": record.seat_id,
            "subscription_id": record.subscription_id, "order_id": record.order_id,
            "email": record.occupant_email, "external_id": record.occupant_external_id,
            "parent_id": record.parent_id, "batch_id": record.batch_id,
            "detail": record.outcome_detail, "held_since": record.updated_at}


@router.get("")
def breaker_state(_: Caller, context: Context) -> dict[str, Any]:
    """Whether the breaker is on, its limits, each open scope and the requests it holds."""
    settings = context.settings
    groups: dict[str, list[dict[str, Any]]] = {}
    for record in context.store.held():
        groups.setdefault(str(record.held_scope), []).append(held_out(record))
    return {
        "enabled": settings.breaker_enabled,
        "limits": {"window_seconds": settings.breaker_window_seconds,
                   "customer_max": settings.breaker_customer_max,
                   "customer_share": settings.breaker_customer_share,
                   "org_max": settings.breaker_org_max},
        "open": [{**asdict(b), "held": len(groups.get(b.scope, []))}
                 for b in context.breaker.open_breakers()],
        "held": groups,
    }


def act(context: ApiContext, verb: str, targets: list[str], actor: str) -> Acted:
    desk = context.desk
    try:
        return (desk.release if verb == "release" else desk.reject)(targets, actor=actor)
    except UnknownTarget as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None


@router.post("/release", response_model=ActedOut, responses={404: {}})
def release(body: TargetsIn, caller: Caller, context: Context) -> ActedOut:
    """Held requests go on (they count in the window); a named scope's breaker closes."""
    return ActedOut(**asdict(act(context, "release", body.targets, caller)))


@router.post("/reject", response_model=ActedOut, responses={404: {}})
def reject(body: TargetsIn, caller: Caller, context: Context) -> ActedOut:
    """Held requests end ``cancelled`` ("rejected at the breaker", with the caller); their
    seats are not revoked."""
    return ActedOut(**asdict(act(context, "reject", body.targets, caller)))
