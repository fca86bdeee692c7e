"""The sandbox's `/_sandbox/` control routes (seeding, people, sessions, faults, stats).

No auth, not counted in stats. Every body is strict (unknown fields are a 422).
`SandboxControl` (worker/sandbox/control.py) is their typed client.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Body, FastAPI, Query
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.responses import Response

from worker.sandbox.errors import SandboxError, dumps
from worker.sandbox.state import (
    FaultRule,
    MemberRole,
    RateLimit,
    SandboxState,
    Seat,
    SeatSpec,
    SeatStatus,
    SeatVariant,
)

__all__ = ["add_control_routes", "json_response"]


def json_response(obj: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(dumps(obj), status_code=status, media_type="application/json", headers=headers)


def _text(value: uuid.UUID | None) -> str | None:
    return None if value is None else str(value)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ConfigIn(_Strict):
    """Body of /_sandbox/reset and /_sandbox/config; only the given fields change."""

    rate_limit: str | None = None
    tokens: list[str] = []
    revoked_tokens: list[str] = []
    legacy_rerevoke: bool = False
    member_model_enabled: bool = True
    seats_enabled: bool = True
    scopes_missing: bool = False
    background_usage: float = Field(0.0, ge=0, le=1)
    latency_ms: int = Field(0, ge=0)
    seed: int = 0
    versions: list[str] = []

    @field_validator("rate_limit")
    @classmethod
    def _valid_rate(cls, value: str | None) -> str | None:
        if value is not None:
            RateLimit.parse(value)
        return value

    def changes(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.model_fields_set}


class _PersonIn(_Strict):
    subscription_id: uuid.UUID | None = None
    order_id: uuid.UUID | None = None
    email: str | None = None
    customer_id: uuid.UUID | None = None
    member_id: uuid.UUID | None = None
    external_id: str | None = None
    name: str | None = None
    role: MemberRole | None = None
    variant: SeatVariant = SeatVariant.CURRENT

    def _spec(self, status: str, **extra: Any) -> SeatSpec:
        return SeatSpec(
            status=SeatStatus(status),
            subscription_id=_text(self.subscription_id),
            order_id=_text(self.order_id),
            email=self.email,
            customer_id=_text(self.customer_id),
            member_id=_text(self.member_id),
            external_id=self.external_id,
            name=self.name,
            role=self.role,
            variant=self.variant,
            **extra,
        )


class SeatIn(_PersonIn):
    """One seat of /_sandbox/seats."""

    id: uuid.UUID | None = None
    status: Literal["claimed", "pending", "revoked"] = "claimed"
    revoked_at: datetime | None = None

    def spec(self) -> SeatSpec:
        return self._spec(self.status, id=_text(self.id), revoked_at=self.revoked_at)


class SeatsIn(_Strict):
    seats: list[SeatIn]
    owner_customer_id: uuid.UUID | None = None


class AssignIn(_PersonIn):
    """Body of /_sandbox/assign."""

    status: Literal["claimed", "pending"] = "claimed"

    def spec(self) -> SeatSpec:
        return self._spec(self.status)


class CustomerIn(_Strict):
    email: str | None
    external_id: str | None = None
    name: str | None = None
    id: uuid.UUID | None = None


class MemberIn(_Strict):
    customer_id: uuid.UUID
    email: str
    external_id: str | None = None
    name: str | None = None
    role: MemberRole = MemberRole.MEMBER
    id: uuid.UUID | None = None


class CustomerSessionIn(_Strict):
    customer_id: uuid.UUID
    ttl_seconds: float | None = Field(None, ge=0)


class MemberSessionIn(_Strict):
    member_id: uuid.UUID
    ttl_seconds: float | None = Field(None, ge=0)


class FaultIn(_Strict):
    method: Literal["DELETE", "GET"] | None = None
    seat_id: str | None = None
    status: int | None = Field(None, ge=100, le=599)
    body: Any = None
    times: int | None = Field(None, ge=0)
    probability: float | None = Field(None, ge=0, le=1)
    latency_ms: int = Field(0, ge=0)
    hang_s: float = Field(0.0, ge=0)
    apply_then_hang: bool = False
    retry_after: int | None = Field(None, ge=0)


def add_control_routes(app: FastAPI, state: SandboxState) -> None:
    """Mount the `/_sandbox/` routes over `state`."""
    _config_routes(app, state)
    _seat_routes(app, state)
    _people_routes(app, state)
    _fault_and_stats_routes(app, state)


def _config_routes(app: FastAPI, state: SandboxState) -> None:
    @app.post("/_sandbox/reset")
    async def reset(body: Annotated[ConfigIn | None, Body()] = None) -> Response:
        return json_response(state.reset(**(body.changes() if body else {})).to_json())

    @app.post("/_sandbox/config")
    async def configure(body: ConfigIn) -> Response:
        return json_response(state.configure(**body.changes()).to_json())

    @app.get("/_sandbox/config")
    async def get_config() -> Response:
        return json_response(
            {**state.config.to_json(), "organization_id": state.organization_id}
        )


def _seat_routes(app: FastAPI, state: SandboxState) -> None:
    def seats_json(seats: list[Seat]) -> Response:
        return json_response({"seats": [seat.to_json() for seat in seats]})

    @app.post("/_sandbox/seats")
    async def create_seats(body: SeatsIn) -> Response:
        specs = [seat.spec() for seat in body.seats]
        return seats_json(state.create_seats(specs, _text(body.owner_customer_id)))

    @app.get("/_sandbox/seats")
    async def all_seats() -> Response:
        return seats_json(state.all_seats())

    @app.get("/_sandbox/seats/{seat_id}")
    async def one_seat(seat_id: uuid.UUID) -> Response:
        seat = state.seat(str(seat_id))
        if seat is None:
            raise SandboxError.not_found("Seat not found")
        return json_response(seat.to_json())

    @app.post("/_sandbox/seats/{seat_id}/revoke")
    async def revoke(seat_id: uuid.UUID) -> Response:
        """Revoke as another tool of the organization would (not counted as an API call)."""
        return json_response(state.revoke(str(seat_id), check_feature=False).to_json())

    @app.post("/_sandbox/assign")
    async def assign(body: AssignIn) -> Response:
        return json_response(state.assign(body.spec()).to_json())


def _people_routes(app: FastAPI, state: SandboxState) -> None:
    org = state.organization_id

    @app.post("/_sandbox/customers")
    async def create_customer(body: CustomerIn) -> Response:
        customer = state.create_customer(body.email, body.external_id, body.name, _text(body.id))
        return json_response(customer.to_json(org))

    @app.get("/_sandbox/customers")
    async def customers() -> Response:
        return json_response([c.to_json(org) for c in state.customers()])

    @app.post("/_sandbox/members")
    async def create_member(body: MemberIn) -> Response:
        member = state.create_member(
            str(body.customer_id), body.email, name=body.name, external_id=body.external_id,
            role=body.role, member_id=_text(body.id),
        )
        return json_response(member.to_json())

    @app.get("/_sandbox/members")
    async def members(customer_id: Annotated[uuid.UUID | None, Query()] = None) -> Response:
        return json_response([m.to_json() for m in state.members(_text(customer_id))])

    @app.post("/_sandbox/customer-sessions")
    async def customer_session(body: CustomerSessionIn) -> Response:
        token = state.create_customer_session(str(body.customer_id), body.ttl_seconds)
        return json_response({"token": token, "customer_id": str(body.customer_id)})

    @app.post("/_sandbox/member-sessions")
    async def member_session(body: MemberSessionIn) -> Response:
        token = state.create_member_session(str(body.member_id), body.ttl_seconds)
        return json_response({"token": token, "member_id": str(body.member_id)})


def _fault_and_stats_routes(app: FastAPI, state: SandboxState) -> None:
    @app.post("/_sandbox/faults")
    async def add_fault(body: FaultIn) -> Response:
        rule = FaultRule(**body.model_dump())
        state.add_fault(rule)
        return json_response(rule.to_json())

    @app.get("/_sandbox/faults")
    async def list_faults() -> Response:
        return json_response([rule.to_json() for rule in state.faults()])

    @app.delete("/_sandbox/faults")
    async def clear_faults() -> Response:
        state.clear_faults()
        return json_response({"cleared": True})

    @app.get("/_sandbox/stats")
    async def stats() -> Response:
        return json_response(state.stats())

    @app.get("/_sandbox/revocations")
    async def revocations() -> Response:
        return json_response(state.revocations())

    @app.get("/_sandbox/log")
    async def log(since: Annotated[int, Query(ge=0)] = 0) -> Response:
        return json_response(state.log_since(since))
