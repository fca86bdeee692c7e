"""Local Polar stand-in ("the sandbox"): the seat API over HTTP, plus `/_sandbox/` controls.

The Polar routes (`/v1/...`) sit behind `_PolarGate`, a plain ASGI middleware that applies,
in order: Polar-Version check (404), bearer auth (401), rate limit (429, empty body),
global latency, fault rules, then the route. It also keeps the stats and the request log.
Control routes (`/_sandbox/...`) need no auth and are not counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from datetime import datetime
from http import HTTPStatus
from typing import Annotated, Any, Literal

from fastapi import Body, FastAPI, Path, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from worker.background_server import BackgroundServer, bind, quiet_server
from worker.sandbox_control import SandboxControl
from worker.sandbox_state import (
    DEFAULT_SANDBOX_TOKEN,
    ORG_BUCKET,
    FaultRule,
    RateLimit,
    SandboxConfig,
    SandboxError,
    SandboxState,
    Seat,
    SeatSpec,
    SeatStatus,
)

__all__ = [
    "DEFAULT_SANDBOX_TOKEN",
    "SandboxControl",
    "SandboxServer",
    "SandboxState",
    "create_app",
    "serve",
]

ORG_PREFIX = "/v1/customer-seats"
PORTAL_PREFIX = "/v1/customer-portal/seats"
CUSTOMER_SCOPE_KEY = "sandbox.customer_id"
DEFAULT_APPLY_HANG_S = 30.0  # apply_then_hang without hang_s
_JSON = [(b"content-type", b"application/json")]
_UNAUTHORIZED = b'{"error":"Unauthorized","detail":"Unauthorized"}'


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _json(obj: Any, status: int = 200) -> Response:
    return Response(_dumps(obj), status_code=status, media_type="application/json")


def _classify(method: str, path: str) -> tuple[str | None, str, str | None]:
    """(kind "org"|"portal"|None, stats route, seat id from the path)."""
    for prefix, kind in ((ORG_PREFIX, "org"), (PORTAL_PREFIX, "portal")):
        if path == prefix:
            return kind, f"{method} {prefix}", None
        if path.startswith(prefix + "/") and "/" not in path[len(prefix) + 1 :]:
            return kind, f"{method} {prefix}", path[len(prefix) + 1 :] or None
    return None, f"{method} {path}", None


def _bearer(scope: Scope) -> tuple[str | None, str | None]:
    """(bearer token, Polar-Version) from the request headers."""
    token = version = None
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, credentials = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and credentials.strip():
                token = credentials.strip()
        elif name == b"polar-version":
            version = value.decode("latin-1").strip()
    return token, version


def _fault_body(rule: FaultRule, status: int) -> bytes:
    if rule.body is not None:
        return _dumps(rule.body)
    if status == 429:
        return b""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    error = {403: "NotPermitted", 404: "ResourceNotFound"}.get(status, phrase.replace(" ", ""))
    return _dumps({"error": error, "detail": phrase})


async def _respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    all_headers = [*(headers or []), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": all_headers})
    await send({"type": "http.response.body", "body": body})


async def _hang(receive: Receive, seconds: float) -> None:
    """Sleep up to `seconds`, returning early when the client disconnects."""

    async def disconnected() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(disconnected(), seconds)


class _PolarGate:
    """ASGI middleware in front of the `/v1/` routes (see module docstring)."""

    def __init__(self, app: ASGIApp, state: SandboxState) -> None:
        self.app, self.state = app, state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        kind, route, seat_id = _classify(method, path)
        token, version = _bearer(scope)
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        started = time.perf_counter()
        self.state.request_started()
        try:
            await self._gate(scope, receive, send_and_note, kind, token, version, seat_id)
        finally:
            self.state.request_finished(
                method=method,
                path=path,
                route=route,
                status=status,
                token=token,
                seat_id=seat_id,
                started=started,
            )

    async def _gate(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        kind: str | None,
        token: str | None,
        version: str | None,
        seat_id: str | None,
    ) -> None:
        state, config = self.state, self.state.config
        if version is not None and version not in config.versions:
            await _respond(send, 404, b'{"detail":"Not Found"}', _JSON)
            return
        if kind is None:
            await self.app(scope, receive, send)
            return
        customer_id = None
        if token is not None and kind == "portal":
            customer_id = state.session_customer(token)
        authorised = token is not None and (
            state.is_org_token(token) if kind == "org" else customer_id is not None
        )
        if not authorised:
            await _respond(send, 401, _UNAUTHORIZED, [*_JSON, (b"www-authenticate", b"Bearer")])
            return
        assert token is not None
        retry_after = state.hit_rate_limit(ORG_BUCKET if kind == "org" else f"cst:{token}")
        if retry_after is not None:
            await _respond(send, 429, b"", [(b"retry-after", str(retry_after).encode())])
            return
        scope[CUSTOMER_SCOPE_KEY] = customer_id
        if scope["method"] == "DELETE" and seat_id is not None:
            state.count_delete(_canonical_or_raw(seat_id))
        if config.latency_ms:
            await asyncio.sleep(config.latency_ms / 1000)
        rule = state.match_fault(scope["method"], seat_id)
        if rule is None:
            await self.app(scope, receive, send)
        else:
            await self._apply_fault(rule, scope, receive, send)

    async def _apply_fault(
        self, rule: FaultRule, scope: Scope, receive: Receive, send: Send
    ) -> None:
        if rule.latency_ms:
            await asyncio.sleep(rule.latency_ms / 1000)
        if rule.apply_then_hang:
            held: list[Message] = []

            async def hold(message: Message) -> None:
                held.append(message)

            await self.app(scope, receive, hold)
            await _hang(receive, rule.hang_s or DEFAULT_APPLY_HANG_S)
            if rule.status is None:
                for message in held:
                    await send(message)
                return
        elif rule.hang_s and rule.status is not None:
            await _hang(receive, rule.hang_s)
        elif rule.hang_s:
            await asyncio.sleep(rule.hang_s)
        if rule.status is None:
            await self.app(scope, receive, send)
            return
        headers = [] if rule.status == 429 and rule.body is None else list(_JSON)
        if rule.retry_after is not None or rule.status == 429:
            headers.append((b"retry-after", str(rule.retry_after or 1).encode()))
        await _respond(send, rule.status, _fault_body(rule, rule.status), headers)


def _canonical_or_raw(seat_id: str) -> str:
    try:
        return str(uuid.UUID(seat_id))
    except ValueError:
        return seat_id


# -- control bodies ------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ConfigIn(_Strict):
    """Body of /_sandbox/reset and /_sandbox/config; only the given fields change."""

    rate_limit: str | None = None
    tokens: list[str] = []
    legacy_rerevoke: bool = False
    include_member: bool = True
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


def _text(value: uuid.UUID | None) -> str | None:
    return None if value is None else str(value)


class _PersonIn(_Strict):
    subscription_id: uuid.UUID | None = None
    order_id: uuid.UUID | None = None
    email: str | None = None
    customer_id: uuid.UUID | None = None
    member_id: uuid.UUID | None = None
    external_id: str | None = None
    name: str | None = None

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

    email: str
    status: Literal["claimed", "pending"] = "claimed"

    def spec(self) -> SeatSpec:
        return self._spec(self.status)


class SessionIn(_Strict):
    customer_id: uuid.UUID


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


SeatPath = Annotated[uuid.UUID, Path(alias="id")]
UUIDQuery = Annotated[uuid.UUID | None, Query()]


# -- the app -------------------------------------------------------------------------------


def create_app(state: SandboxState | None = None) -> FastAPI:
    """The sandbox ASGI app over `state` (a fresh one if None), at `app.state.sandbox`."""
    state = state or SandboxState()
    app = FastAPI(title="Polar sandbox", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.sandbox = state
    app.add_middleware(_PolarGate, state=state)

    @app.exception_handler(SandboxError)
    async def sandbox_error(_: Request, exc: SandboxError) -> Response:
        return _json({"error": exc.error, "detail": exc.detail}, exc.status)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> Response:
        detail = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        return _json({"error": "RequestValidationError", "detail": jsonable_encoder(detail)}, 422)

    def listing(
        request: Request, subscription_id: uuid.UUID | None, order_id: uuid.UUID | None
    ) -> Response:
        seats = state.list_seats(
            None if subscription_id is None else str(subscription_id),
            None if order_id is None else str(order_id),
            request.scope.get(CUSTOMER_SCOPE_KEY),
        )
        return _json(seats.to_json(state.config.include_member))

    def revoking(request: Request, seat_id: uuid.UUID) -> Response:
        seat = state.revoke(str(seat_id), request.scope.get(CUSTOMER_SCOPE_KEY))
        return _json(seat.to_json(state.config.include_member))

    @app.delete(ORG_PREFIX + "/{id}")
    async def revoke_seat(request: Request, seat_id: SeatPath) -> Response:
        return revoking(request, seat_id)

    @app.get(ORG_PREFIX)
    async def list_seats(
        request: Request, subscription_id: UUIDQuery = None, order_id: UUIDQuery = None
    ) -> Response:
        return listing(request, subscription_id, order_id)

    @app.delete(PORTAL_PREFIX + "/{id}")
    async def portal_revoke_seat(request: Request, seat_id: SeatPath) -> Response:
        return revoking(request, seat_id)

    @app.get(PORTAL_PREFIX)
    async def portal_list_seats(
        request: Request, subscription_id: UUIDQuery = None, order_id: UUIDQuery = None
    ) -> Response:
        return listing(request, subscription_id, order_id)

    _add_control_routes(app, state)
    return app


def _add_control_routes(app: FastAPI, state: SandboxState) -> None:
    def seat_json(seats: list[Seat]) -> Response:
        return _json({"seats": [seat.to_json() for seat in seats]})

    @app.post("/_sandbox/reset")
    async def reset(body: Annotated[ConfigIn | None, Body()] = None) -> Response:
        return _json(state.reset(**(body.changes() if body else {})).to_json())

    @app.post("/_sandbox/config")
    async def configure(body: ConfigIn) -> Response:
        return _json(state.configure(**body.changes()).to_json())

    @app.get("/_sandbox/config")
    async def get_config() -> Response:
        return _json(state.config.to_json())

    @app.post("/_sandbox/seats")
    async def create_seats(body: SeatsIn) -> Response:
        specs = [seat.spec() for seat in body.seats]
        return seat_json(state.create_seats(specs, _text(body.owner_customer_id)))

    @app.get("/_sandbox/seats")
    async def all_seats() -> Response:
        return seat_json(state.all_seats())

    @app.get("/_sandbox/seats/{seat_id}")
    async def one_seat(seat_id: uuid.UUID) -> Response:
        seat = state.seat(str(seat_id))
        if seat is None:
            raise SandboxError.not_found("Seat not found")
        return _json(seat.to_json())

    @app.post("/_sandbox/assign")
    async def assign(body: AssignIn) -> Response:
        return _json(state.assign(body.spec()).to_json())

    @app.post("/_sandbox/customer-sessions")
    async def customer_session(body: SessionIn) -> Response:
        token = state.create_customer_session(str(body.customer_id))
        return _json({"token": token, "customer_id": str(body.customer_id)})

    @app.post("/_sandbox/faults")
    async def add_fault(body: FaultIn) -> Response:
        rule = FaultRule(**body.model_dump())
        state.add_fault(rule)
        return _json(rule.to_json())

    @app.get("/_sandbox/faults")
    async def list_faults() -> Response:
        return _json([rule.to_json() for rule in state.faults()])

    @app.delete("/_sandbox/faults")
    async def clear_faults() -> Response:
        state.clear_faults()
        return _json({"cleared": True})

    @app.get("/_sandbox/stats")
    async def stats() -> Response:
        return _json(state.stats())

    @app.get("/_sandbox/log")
    async def log(since: Annotated[int, Query(ge=0)] = 0) -> Response:
        return _json(state.log_since(since))


# -- running it ----------------------------------------------------------------------------


class SandboxServer(BackgroundServer):
    """The sandbox on 127.0.0.1 in a background thread; a context manager."""

    def __init__(
        self, state: SandboxState | None = None, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.state = state or SandboxState()
        super().__init__(create_app(self.state), host=host, port=port, name="sandbox",
                         lifespan="off", backlog=4096)

    def control(self) -> SandboxControl:
        """A control client for this server (close it when done)."""
        return SandboxControl(self.url)


def serve(
    host: str = "127.0.0.1",
    port: int = 8765,
    rate_limit: str | None = None,
    tokens: list[str] | None = None,
    *,
    legacy_rerevoke: bool = False,
    include_member: bool = True,
    latency_ms: int = 0,
    seed: int = 0,
) -> None:
    """Run the sandbox in the foreground until interrupted."""
    config = SandboxConfig(
        rate_limit=None if rate_limit is None else RateLimit.parse(rate_limit),
        tokens=frozenset(tokens or ()),
        legacy_rerevoke=legacy_rerevoke,
        include_member=include_member,
        latency_ms=latency_ms,
        seed=seed,
    )
    sock = bind(host, port)
    bound_port = sock.getsockname()[1]
    print(f"sandbox listening on http://{host}:{bound_port}", flush=True)
    quiet_server(create_app(SandboxState(config)), lifespan="off", backlog=4096).run(
        sockets=[sock]
    )
