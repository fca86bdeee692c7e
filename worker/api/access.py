"""The API's access log and request metrics: one pure ASGI middleware, outermost, so it
sees every answer as the client gets it (a 500 from ``UnhandledErrors`` included).

Each request is one structlog event ``http.request`` (method, route template, path without
its query string, status, duration, client address) in the same pipeline as every other
event; probes, scrapes and the dashboard's polling log at DEBUG. Nothing from headers or
bodies is logged: API keys and cookies never appear. The counters are labelled by route
*template* (``/v1/revocations/{request_id}``), never the raw path, so ids cannot blow up
their cardinality; a path no route matched is ``unmatched``.
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from worker.telemetry.logs import get_logger

log = get_logger("seat_revoker.api.access")
QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics", "/dashboard/state.json"})
WEBHOOK_ROUTES = frozenset({"/v1/events/offboarding"})


class ApiMetrics:
    """``seat_revoker_api_requests_total{route,method,status}``, the webhook's own
    ``seat_revoker_webhook_requests_total{route,status}`` and
    ``seat_revoker_api_request_duration_seconds{route,method}`` in ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "seat_revoker_api_requests", "HTTP requests answered by the API, by route "
            "template, method and status", ["route", "method", "status"], registry=registry)
        self.webhooks = Counter(
            "seat_revoker_webhook_requests", "Offboarding webhook deliveries answered, by "
            "route and status (401: bad signature, 409: reused id, 422: invalid)",
            ["route", "status"], registry=registry)
        self.duration = Histogram(
            "seat_revoker_api_request_duration_seconds", "Time to answer an API request",
            ["route", "method"], registry=registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0))

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.duration.labels(route, method).observe(seconds)
        if route in WEBHOOK_ROUTES:
            self.webhooks.labels(route, str(status)).inc()


def route_of(scope: Scope) -> str:
    """The matched route's template (set on the scope by Starlette's router)."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) and path else "unmatched"


class AccessLog:
    def __init__(self, app: ASGIApp, *, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if nothing answers (the server's own 500)

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            seconds = time.perf_counter() - started
            route = route_of(scope)
            method = str(scope.get("method", ""))
            self.metrics.observe(route, method, status, seconds)
            client = scope.get("client")
            fields = {"method": method, "route": route, "path": scope.get("path"),
                      "status": status, "duration_ms": round(seconds * 1000, 1),
                      "client": client[0] if client else None}
            if status >= 500:
                log.error("http.request", **fields)
            elif route in QUIET_ROUTES and status < 400:
                log.debug("http.request", **fields)
            else:
                log.info("http.request", **fields)
