"""Local Polar stand-in ("the sandbox"): Polar's seat and identity API over HTTP, plus
`/_sandbox/` controls.

The Polar routes (`/v1/...`) sit behind `PolarGate` (worker/sandbox/gate.py: version,
auth, rate limit, scopes, latency, faults); the state lives in worker/sandbox/state.py and
the control routes in worker/sandbox/admin.py. Served here (polarsource/polar paths):

* `GET /v1/customer-seats?subscription_id|order_id`, `DELETE /v1/customer-seats/{seat_id}`
  (server/polar/customer_seat/endpoints.py)
* `GET /v1/customer-portal/seats`, `DELETE /v1/customer-portal/seats/{seat_id}`
  (server/polar/customer_portal/endpoints/customer_seat.py)
* `GET /v1/customers/{id}`, `GET /v1/customers/external/{external_id}`
  (server/polar/customer/endpoints.py)
* `GET /v1/members/?customer_id|external_customer_id|role` (server/polar/member/endpoints.py)
* `GET /v1/subscriptions/{id}`, `GET /v1/subscriptions/?customer_id|external_customer_id`,
  `GET /v1/orders/{id}`, `GET /v1/orders/?…` (subscription/ and order/endpoints.py), with
  the fields a seat worker reads: id, status, customer_id (the billing customer), customer,
  seats, metadata.

Ids in paths and id query parameters are pydantic `UUID4`, as in Polar: anything else is
422 `RequestValidationError` with pydantic's error list (server/polar/exception_handlers.py).
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from pydantic import UUID4
from starlette.responses import Response

from worker.api.background_server import BackgroundServer, bind, quiet_server
from worker.sandbox.admin import add_control_routes, json_response
from worker.sandbox.control import SandboxControl
from worker.sandbox.errors import SandboxError
from worker.sandbox.gate import SUBJECT_SCOPE_KEY, PolarGate
from worker.sandbox.state import (
    DEFAULT_SANDBOX_TOKEN,
    SUPPORTED_POLAR_VERSIONS,
    ContainerKind,
    MemberRole,
    RateLimit,
    SandboxConfig,
    SandboxState,
    Subject,
)

__all__ = [
    "DEFAULT_SANDBOX_TOKEN",
    "SandboxControl",
    "SandboxServer",
    "SandboxState",
    "create_app",
    "serve",
]

PAGE_LIMIT_MAX = 100  # server/polar/config.py API_PAGINATION_MAX_LIMIT
UUID4Query = Annotated[UUID4 | None, Query()]
PageQuery = Annotated[int, Query(gt=0)]


def _portal_customer(request: Request) -> str | None:
    """The customer whose seats a portal session sees (None on organization routes)."""
    subject: Subject | None = request.scope.get(SUBJECT_SCOPE_KEY)
    return None if subject is None or subject.kind == "organization" else subject.customer_id


def create_app(state: SandboxState | None = None) -> FastAPI:
    """The sandbox ASGI app over `state` (a fresh one if None), at `app.state.sandbox`."""
    state = state or SandboxState()
    app = FastAPI(title="Polar sandbox", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.sandbox = state
    app.add_middleware(PolarGate, state=state)

    @app.exception_handler(SandboxError)
    async def sandbox_error(_: Request, exc: SandboxError) -> Response:
        return Response(exc.body_bytes(), exc.status, exc.headers, "application/json")

    @app.exception_handler(RequestValidationError)
    async def validation_error(_: Request, exc: RequestValidationError) -> Response:
        body = {"error": "RequestValidationError", "detail": jsonable_encoder(exc.errors())}
        return json_response(body, 422)

    _add_seat_routes(app, state)
    _add_identity_routes(app, state)
    add_control_routes(app, state)
    return app


def _add_seat_routes(app: FastAPI, state: SandboxState) -> None:
    def listing(request: Request, subscription_id: Any, order_id: Any) -> Response:
        seats = state.list_seats(
            None if subscription_id is None else str(subscription_id),
            None if order_id is None else str(order_id),
            _portal_customer(request),
        )
        return json_response(seats.to_json())

    def revoking(request: Request, seat_id: uuid.UUID) -> Response:
        return json_response(state.revoke(str(seat_id), _portal_customer(request)).to_json())

    @app.delete("/v1/customer-seats/{seat_id}")
    async def revoke_seat(request: Request, seat_id: UUID4) -> Response:
        return revoking(request, seat_id)

    @app.get("/v1/customer-seats")
    async def list_seats(
        request: Request, subscription_id: UUID4Query = None, order_id: UUID4Query = None
    ) -> Response:
        return listing(request, subscription_id, order_id)

    @app.delete("/v1/customer-portal/seats/{seat_id}")
    async def portal_revoke_seat(request: Request, seat_id: UUID4) -> Response:
        return revoking(request, seat_id)

    @app.get("/v1/customer-portal/seats")
    async def portal_list_seats(
        request: Request, subscription_id: UUID4Query = None, order_id: UUID4Query = None
    ) -> Response:
        return listing(request, subscription_id, order_id)


def _add_identity_routes(app: FastAPI, state: SandboxState) -> None:
    @app.get("/v1/customers/external/{external_id}")
    async def get_customer_external(external_id: str) -> Response:
        return json_response(state.customer_by_external_id_json(external_id))

    @app.get("/v1/customers/{id}")
    async def get_customer(id: UUID4) -> Response:
        return json_response(state.customer_json(str(id)))

    @app.get("/v1/members/")
    async def list_members(
        customer_id: str | None = None,
        external_customer_id: str | None = None,
        role: MemberRole | None = None,
        page: PageQuery = 1,
        limit: PageQuery = 10,
    ) -> Response:
        # member/endpoints.py list_members: customer_id is a str; not a UUID -> 404.
        if customer_id is not None:
            try:
                customer_id = str(uuid.UUID(customer_id))
            except ValueError:
                raise SandboxError.not_found("Invalid customer ID format") from None
        body = state.members_page(
            customer_id, external_customer_id, role, page, min(limit, PAGE_LIMIT_MAX)
        )
        return json_response(body)

    _add_container_routes(app, state, "subscription", "subscriptions")
    _add_container_routes(app, state, "order", "orders")


def _add_container_routes(
    app: FastAPI, state: SandboxState, kind: ContainerKind, plural: str
) -> None:
    async def get_one(id: UUID4) -> Response:
        return json_response(state.container_json(kind, str(id)))

    async def list_many(
        customer_id: Annotated[list[UUID4] | None, Query()] = None,
        external_customer_id: Annotated[list[str] | None, Query()] = None,
        page: PageQuery = 1,
        limit: PageQuery = 10,
    ) -> Response:
        body = state.containers_page(
            kind,
            [str(i) for i in customer_id or ()],
            external_customer_id or [],
            page,
            min(limit, PAGE_LIMIT_MAX),
        )
        return json_response(body)

    app.add_api_route(f"/v1/{plural}/{{id}}", get_one, methods=["GET"], name=f"get_{kind}")
    app.add_api_route(f"/v1/{plural}/", list_many, methods=["GET"], name=f"list_{plural}")


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
    latency_ms: int = 0,
    seed: int = 0,
    member_model_enabled: bool = True,
    background_usage: float = 0.0,
    seats_enabled: bool = True,
    scopes_missing: bool = False,
    revoked_tokens: list[str] | None = None,
    versions: list[str] | None = None,
    sample_seats: int = 0,
) -> None:
    """Run the sandbox in the foreground until interrupted; with ``sample_seats``, create
    that many claimed seats first and print how to revoke them (``sandbox_walkthrough``)."""
    if not 0.0 <= background_usage <= 1.0:
        raise ValueError("background_usage must be between 0 and 1")
    config = SandboxConfig(
        rate_limit=None if rate_limit is None else RateLimit.parse(rate_limit),
        tokens=frozenset(tokens or ()),
        revoked_tokens=frozenset(revoked_tokens or ()),
        legacy_rerevoke=legacy_rerevoke,
        member_model_enabled=member_model_enabled,
        seats_enabled=seats_enabled,
        scopes_missing=scopes_missing,
        background_usage=background_usage,
        latency_ms=latency_ms,
        seed=seed,
        versions=frozenset(versions) if versions else SUPPORTED_POLAR_VERSIONS,
    )
    from worker.sandbox.walkthrough import sample_specs, walkthrough

    state = SandboxState(config)
    seats = state.create_seats(sample_specs(sample_seats)) if sample_seats else []
    sock = bind(host, port)
    bound_port = sock.getsockname()[1]
    token = DEFAULT_SANDBOX_TOKEN  # always accepted (--token adds others)
    for line in walkthrough(f"http://{host}:{bound_port}", token, config.rate_limit, seats):
        print(line, flush=True)
    quiet_server(create_app(state), lifespan="off", backlog=4096).run(sockets=[sock])
