"""The ASGI middleware in front of the sandbox's Polar routes (`/v1/...`).

It applies what Polar's middlewares and auth dependencies do, in Polar's order:

1. `Polar-Version` (server/polar/kit/versioning.py `APIVersionMiddleware`, outermost):
   absent or empty means `2026-04`; a value not served is 404 `{"detail":"Not Found"}`
   before anything else; every other response echoes `polar-version: <version>`.
2. Bearer token (server/polar/auth/middlewares.py): an unknown, expired or revoked token is
   401 `invalid_token`, not counted against anyone's rate budget.
3. Rate limit per subject (server/polar/rate_limit.py; see worker/sandbox/ratelimit.py).
4. Route auth (server/polar/auth/dependencies.py `_Authenticator`): no token or the wrong
   kind of subject is 401 `Unauthorized`; an organization token without the route's scope
   is 403 `insufficient_scope`; a portal member without a billing role is 403
   `NotPermitted` on revoke (server/polar/customer_portal/auth.py). These run before
   parameter validation (422), as FastAPI dependencies do.
5. Sandbox extras: global latency, then fault rules, then the route.

It also keeps the stats and the request log.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
import uuid
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from worker.sandbox.errors import SandboxError, dumps
from worker.sandbox.state import DEFAULT_POLAR_VERSION, FaultRule, MemberRole, SandboxState, Subject

__all__ = ["SUBJECT_SCOPE_KEY", "PolarGate"]

SUBJECT_SCOPE_KEY = "sandbox.subject"
DEFAULT_APPLY_HANG_S = 30.0  # apply_then_hang without hang_s
_JSON = [(b"content-type", b"application/json")]
_BILLING_ROLES = frozenset({MemberRole.OWNER, MemberRole.BILLING_MANAGER})


@dataclass(frozen=True, slots=True)
class ApiRoute:
    """A Polar route the sandbox serves: who may call it and with which scopes."""

    method: str
    pattern: re.Pattern[str]
    name: str  # its key in stats["by_route"]
    portal: bool = False  # customer/member sessions instead of organization tokens
    scopes: tuple[str, ...] = ()  # an organization token needs one of these
    billing: bool = False  # a member session needs role owner or billing_manager
    has_seat_id: bool = False  # the last path segment is a seat id


def _route(method: str, path: str, name: str | None = None, **kw: Any) -> ApiRoute:
    regex = "^" + re.sub(r"\{\w+\}", "([^/]+)", path) + "$"
    return ApiRoute(method, re.compile(regex), name or f"{method} {path}", **kw)


_SEATS_READ = ("customer_seats:read",)  # customer_seat/auth.py
_SEATS_WRITE = ("customer_seats:write",)
ROUTES = (
    _route("GET", "/v1/customer-seats", scopes=_SEATS_READ),
    _route("DELETE", "/v1/customer-seats/{seat_id}", "DELETE /v1/customer-seats",
           scopes=_SEATS_WRITE, has_seat_id=True),
    _route("GET", "/v1/customer-portal/seats", portal=True),
    _route("DELETE", "/v1/customer-portal/seats/{seat_id}", "DELETE /v1/customer-portal/seats",
           portal=True, billing=True, has_seat_id=True),
    _route("GET", "/v1/customers/external/{external_id}",
           scopes=("customers:read", "customers:write")),
    _route("GET", "/v1/customers/{id}", scopes=("customers:read", "customers:write")),
    _route("GET", "/v1/members/?", "GET /v1/members/", scopes=("members:read", "members:write")),
    _route("GET", "/v1/subscriptions/?", "GET /v1/subscriptions/",
           scopes=("subscriptions:read", "subscriptions:write")),
    _route("GET", "/v1/subscriptions/{id}", scopes=("subscriptions:read", "subscriptions:write")),
    _route("GET", "/v1/orders/?", "GET /v1/orders/", scopes=("orders:read",)),
    _route("GET", "/v1/orders/{id}", scopes=("orders:read",)),
)


def classify(method: str, path: str) -> tuple[ApiRoute | None, str | None]:
    """The route serving `method path` and the seat id in its path, if any."""
    for route in ROUTES:
        match = route.pattern.match(path) if route.method == method else None
        if match:
            return route, (match.group(1) if route.has_seat_id else None)
    return None, None


def _headers(scope: Scope) -> tuple[str | None, str | None]:
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
        return dumps(rule.body)
    if status == 429:
        return b""
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Error"
    error = {403: "NotPermitted", 404: "ResourceNotFound"}.get(status, phrase.replace(" ", ""))
    return dumps({"error": error, "detail": phrase})


async def _respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    all_headers = [*(headers or []), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": all_headers})
    await send({"type": "http.response.body", "body": body})


async def _respond_error(send: Send, error: SandboxError) -> None:
    extra = [(k.lower().encode(), v.encode("latin-1")) for k, v in error.headers.items()]
    await _respond(send, error.status, error.body_bytes(), [*_JSON, *extra])


async def _hang(receive: Receive, seconds: float) -> None:
    """Sleep up to `seconds`, returning early when the client disconnects."""

    async def disconnected() -> None:
        while (await receive())["type"] != "http.disconnect":
            pass

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(disconnected(), seconds)


def _canonical_or_raw(seat_id: str) -> str:
    try:
        return str(uuid.UUID(seat_id))
    except ValueError:
        return seat_id


class PolarGate:
    """ASGI middleware in front of the `/v1/` routes (see module docstring)."""

    def __init__(self, app: ASGIApp, state: SandboxState) -> None:
        self.app, self.state = app, state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        method, path = scope["method"], scope["path"]
        route, seat_id = classify(method, path)
        token, version = _headers(scope)
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        started = time.perf_counter()
        self.state.request_started()
        try:
            await self._versioned(scope, receive, send_and_note, route, token, version, seat_id)
        finally:
            self.state.request_finished(
                method=method,
                path=path,
                route=route.name if route else f"{method} {path}",
                status=status,
                token=token,
                seat_id=seat_id,
                started=started,
            )

    async def _versioned(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        route: ApiRoute | None,
        token: str | None,
        version: str | None,
        seat_id: str | None,
    ) -> None:
        resolved = version or DEFAULT_POLAR_VERSION
        if resolved not in self.state.config.versions:
            await _respond(send, 404, b'{"detail":"Not Found"}', _JSON)
            return
        echo = (b"polar-version", resolved.encode("latin-1"))

        async def send_echoing(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), echo]}
            await send(message)

        try:
            subject = self._admit(route, token)
        except SandboxError as error:
            await _respond_error(send_echoing, error)
            return
        except _RateLimited as limited:
            headers = [(b"retry-after", str(limited.retry_after).encode())]
            await _respond(send_echoing, 429, b"", headers)
            return
        await self._serve(scope, receive, send_echoing, route, subject, seat_id)

    def _admit(self, route: ApiRoute | None, token: str | None) -> Subject | None:
        """Authenticate, rate-limit and authorise a request (steps 2-4); raise if refused."""
        subject = None if token is None else self.state.authenticate(token)
        if token is not None and subject is None:
            raise SandboxError.invalid_token()
        if subject is not None:
            retry_after = self.state.hit_rate_limit(subject.rate_key)
            if retry_after is not None:
                raise _RateLimited(retry_after)
        if route is not None:
            _authorise(route, subject, self.state.config.scopes_missing)
        return subject

    async def _serve(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        route: ApiRoute | None,
        subject: Subject | None,
        seat_id: str | None,
    ) -> None:
        scope[SUBJECT_SCOPE_KEY] = subject
        if route is None:
            await self.app(scope, receive, send)
            return
        if scope["method"] == "DELETE" and seat_id is not None:
            self.state.count_delete(_canonical_or_raw(seat_id))
        latency_ms = self.state.config.latency_ms
        if latency_ms:
            await asyncio.sleep(latency_ms / 1000)
        rule = self.state.match_fault(scope["method"], seat_id)
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


class _RateLimited(Exception):
    def __init__(self, retry_after: int) -> None:
        super().__init__(retry_after)
        self.retry_after = retry_after


def _authorise(route: ApiRoute, subject: Subject | None, scopes_missing: bool) -> None:
    """The route's auth dependency: subject kind, then scope or member role."""
    allowed = ("customer", "member") if route.portal else ("organization",)
    if subject is None or subject.kind not in allowed:
        raise SandboxError.unauthorized()
    if subject.kind == "organization" and scopes_missing:
        raise SandboxError.insufficient_scope(route.scopes)
    if route.billing and subject.kind == "member" and subject.role not in _BILLING_ROLES:
        raise SandboxError.not_permitted()
