"""Operations: liveness, readiness and Prometheus metrics (no auth: for probes and scrapers;
they expose counts, never request contents)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from worker.api.context import ApiContext, get_context
from worker.store.engine import StoreError

router = APIRouter(tags=["operations"])
Context = Annotated[ApiContext, Depends(get_context)]


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up (no dependency is checked)."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    responses={503: {"description": "A dependency is down (it is named), or the queue is "
                     "paused (`pauses` gives each pause's fault, hint and since)"}},
)
def readyz(context: Context) -> JSONResponse:
    """Redis answers PING, the database takes a write (``Store.check``: a read-only file, a
    lock or a read-only server shows, not just a dead connection), and no queue pause is in
    force."""
    checks: dict[str, str] = {}
    pauses: list[dict[str, Any]] = []
    try:
        context.redis.ping()
        checks["redis"] = "ok"
        pauses = [{**asdict(p), "message": p.message} for p in context.pause.all()]
        checks["queue"] = "paused" if pauses else "ok"
    except Exception as exc:
        checks["redis"] = f"down: {type(exc).__name__}"
    try:
        context.store.check()
        checks["database"] = "ok"
    except StoreError as exc:
        checks["database"] = f"down: {exc}"
    except Exception as exc:
        checks["database"] = f"down: {type(exc).__name__}"
    down = [name for name, state in checks.items() if state not in ("ok", "paused")]
    status = "unavailable" if down else "paused" if pauses else "ready"
    body: dict[str, Any] = {"status": status, "checks": checks}
    if down:
        body["down"] = down
    if pauses:
        body["pauses"] = pauses
    return JSONResponse(body, status_code=503 if down or pauses else 200)


@router.get("/metrics", response_class=Response,
            responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}})
def metrics(request: Request) -> Response:
    """Prometheus text format: requests by state, Polar calls by status and latency,
    retries, rate-limit waits, queue depth, queue pauses by fault."""
    registry = request.app.state.metrics_registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
