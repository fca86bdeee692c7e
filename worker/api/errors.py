"""How the API answers what goes wrong: 422 bodies that never echo more than a few hundred
characters of what was sent, and unexpected exceptions logged as one structured event and
answered with a JSON 500 that shows nothing of the internals."""

from __future__ import annotations

import json
import uuid
from typing import Any

from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from worker.telemetry.logs import get_logger

log = get_logger("seat_revoker.api")

MAX_ECHO = 200  # characters of a submitted value shown back in an error
MAX_MESSAGE = 500
MAX_ERRORS = 100


def clip(text: str, limit: int = MAX_ECHO) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _short(value: Any, limit: int = MAX_ECHO) -> Any:
    """``value`` if it is small, else a clipped text form of it (never the whole thing)."""
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return clip(value, limit)
    try:
        text = json.dumps(jsonable_encoder(value), ensure_ascii=False, default=str)
    except (RecursionError, TypeError, ValueError):
        return f"<{type(value).__name__}>"
    return value if len(text) <= limit else clip(text, limit)


def clipped_error(error: dict[str, Any]) -> dict[str, Any]:
    """One FastAPI/pydantic error dict with its echoed parts cut short."""
    out: dict[str, Any] = {
        "loc": [clip(part, MAX_ECHO) if isinstance(part, str) else part
                for part in error.get("loc", ())],
        "msg": clip(str(error.get("msg", "")), MAX_MESSAGE),
        "type": error.get("type", "value_error"),
    }
    if "input" in error:
        out["input"] = _short(error["input"])
    ctx = error.get("ctx")
    if isinstance(ctx, dict):
        out["ctx"] = {str(key): _short(value if isinstance(value, bool | int | float | str)
                                       else str(value)) for key, value in ctx.items()}
    return out


async def validation_failed(request: Request, exc: Exception) -> JSONResponse:
    """422 naming every problem (at most ``MAX_ERRORS``), inputs clipped."""
    assert isinstance(exc, RequestValidationError)
    errors = [clipped_error(dict(e)) for e in list(exc.errors())[:MAX_ERRORS]]
    return JSONResponse({"detail": errors}, status_code=422)


async def not_sent(request: Request, exc: Exception) -> JSONResponse:
    """Redis did not take the messages: 503 saying what was recorded (queued, not sent) and
    that the scheduler sends it once Redis takes messages again; a retry with the same
    idempotency key gets the same records (and sends them if they are still unsent)."""
    from worker.intake.producer import NotSent

    assert isinstance(exc, NotSent)
    body: dict[str, Any] = {
        "detail": clip(str(exc), MAX_MESSAGE * 2),
        "sent": exc.sent,
        "unsent": len(exc.unsent),
        "request_ids": [r.record.id for r in exc.results][:MAX_ERRORS],
    }
    if exc.batch_id:
        body["batch_id"] = exc.batch_id
    log.warning("api.not_sent", path=request.url.path, sent=exc.sent,
                unsent=len(exc.unsent), error=exc.cause)
    return JSONResponse(body, status_code=503, headers={"Retry-After": "5"})


class UnhandledErrors:
    """Pure ASGI middleware: an exception no route handled is logged through structlog as
    one event (``api.unhandled_error``, with the traceback as a field and an ``error_id``)
    and answered ``500 {"detail": "internal server error", "error_id": …}``. It is not
    re-raised, so the server does not print its own plain-text traceback."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            error_id = uuid.uuid4().hex[:16]
            log.exception("api.unhandled_error", error_id=error_id,
                          method=scope.get("method"), path=scope.get("path"),
                          response_started=started)
            if started:  # too late for a 500: the client sees the response cut short
                return
            response = JSONResponse(
                {"detail": "internal server error", "error_id": error_id}, status_code=500
            )
            await response(scope, receive, send)
