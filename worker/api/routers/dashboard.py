"""The ops dashboard: server-rendered HTML (Jinja2), no front-end build.

Login with an API key opens a server-side session named by a signed HttpOnly cookie (see
``worker.api.auth``); logout ends it. Every HTML page is served with a Content-Security-Policy
whose only allowed inline script carries the response's nonce (``worker.api.security``).
The page polls ``/dashboard/state.json`` and reloads itself when something changed: every
2 seconds while work is in flight, every 15 seconds otherwise.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from redis.exceptions import RedisError

from worker.api import auth
from worker.api.context import ApiContext, get_context
from worker.api.routers.revocations import retry_request
from worker.decisions.outcomes import (
    ATTENTION_STATES,
    CANCELLABLE_STATES,
    PERSON_CANCELLABLE_STATES,
    State,
)
from worker.jobs.breaker import OpenBreaker
from worker.jobs.fleetpause import PauseInfo
from worker.jobs.nodes import NodeRegistry
from worker.store.batches import BatchSummary, list_batches
from worker.store.queries import RequestFilter, in_flight_count, last_change, list_requests
from worker.telemetry.logs import get_logger

log = get_logger("seat_revoker.api.dashboard")
router = APIRouter(prefix="/dashboard", include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).parent.parent / "templates")
Context = Annotated[ApiContext, Depends(get_context)]

# Order and colours of the outcome segments in progress bars.
SEGMENTS = [
    (State.REVOKED, "ok"),
    (State.ALREADY_REVOKED, "ok2"),
    (State.NO_ACTIVE_SEAT, "warn"),
    (State.OCCUPANT_MISMATCH, "warn2"),
    (State.NEEDS_REVIEW, "review"),
    (State.FAILED, "bad"),
    (State.CANCELLED, "muted"),
]
ATTENTION = sorted(s.value for s in ATTENTION_STATES)
CANCELLABLE = sorted(s.value for s in CANCELLABLE_STATES)
PERSON_CANCELLABLE = sorted(s.value for s in PERSON_CANCELLABLE_STATES)


def current_user(request: Request, context: Context) -> str:
    """The signed-in name (``worker.api.auth.session_user``), else a redirect to login."""
    user = auth.session_user(request, context)
    if user is None:
        raise HTTPException(status.HTTP_303_SEE_OTHER, headers={"Location": "/dashboard/login"})
    return user


User = Annotated[str, Depends(current_user)]


def actor_of(user: str) -> str:
    """How a dashboard user's actions are recorded in a request's history."""
    return f"dashboard:{user}"


def live_workers(context: ApiContext) -> int | None:
    """Worker nodes alive now (``worker.jobs.nodes``), ``None`` when Redis does not answer."""
    try:
        return len(NodeRegistry(context.redis, context.settings.redis_key("nodes")).live_nodes())
    except RedisError as exc:
        log.warning("dashboard.nodes_unreadable", error=type(exc).__name__)
        return None


def page_values(request: Request, context: ApiContext, user: str) -> dict[str, Any]:
    """What every dashboard page shows around its content: who is signed in, the CSRF
    token of its forms, and the banners (queue paused, no worker alive)."""
    pauses, pause_error = _pauses(context)
    return {
        "breakers": _breakers(context),
        "breaker_enabled": context.settings.breaker_enabled,
        "user": user,
        "csrf": auth.csrf_token(request, context),
        "pauses": pauses,
        "pause_error": pause_error,
        "workers": live_workers(context),
        "retryable": ATTENTION,
        "cancellable": CANCELLABLE,
        "person_cancellable": PERSON_CANCELLABLE,
        "path": request.url.path + (f"?{request.url.query}" if request.url.query else ""),
    }


def local_path(target: str, default: str = "/dashboard") -> str:
    """Where a form may send the browser back to: a dashboard path, nothing else."""
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/dashboard"):
        return default
    return urlunsplit(("", "", parts.path, parts.query, ""))


def go(target: str, notice: str) -> Response:
    """303 to the dashboard path ``target`` with ``notice`` shown on top."""
    parts = urlsplit(local_path(target))
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
             if k != "notice"]
    query.append(("notice", notice))
    return RedirectResponse(urlunsplit(("", "", parts.path, urlencode(query), "")),
                            status_code=status.HTTP_303_SEE_OTHER)


def _login_page(request: Request, error: str | None, status_code: int = 200,
                headers: dict[str, str] | None = None) -> Response:
    return templates.TemplateResponse(request, "login.html", {"error": error},
                                      status_code=status_code, headers=headers)


@router.get("/login", response_class=HTMLResponse)
def login_form(request: Request) -> Response:
    return _login_page(request, None)


@router.post("/login", response_class=HTMLResponse)
def login(
    request: Request, context: Context, api_key: Annotated[str, Form(max_length=500)] = ""
) -> Response:
    client = auth.client_of(request)
    wait = auth.locked_out(context, client)
    if wait is not None:
        log.warning("dashboard.login_throttled", client=client)
        return _login_page(
            request, f"Too many failed sign-ins from this address; try again in {wait} s.",
            status.HTTP_429_TOO_MANY_REQUESTS, {"Retry-After": str(wait)},
        )
    matched = context.api.match_api_key(api_key) if api_key else None
    if matched is None:
        auth.record_failure(context, client)
        log.warning("dashboard.login_failed", client=client,
                    reason="empty API key" if not api_key else "invalid API key")
        return _login_page(request, "That API key is not valid.",
                           status.HTTP_401_UNAUTHORIZED)
    try:
        cookie = auth.new_session(context, matched)
    except auth.SessionStoreDown as exc:
        log.error("dashboard.session_store_unavailable", error=str(exc))
        return _login_page(request, "Sessions cannot be opened: Redis does not answer.",
                           status.HTTP_503_SERVICE_UNAVAILABLE)
    log.info("dashboard.login", client=client, user=context.api.key_name(matched))
    response = RedirectResponse("/dashboard", status_code=status.HTTP_303_SEE_OTHER)
    response.set_cookie(
        auth.SESSION_COOKIE,
        cookie,
        max_age=context.api.session_max_age_seconds,
        httponly=True,
        samesite="strict",
        secure=context.api.session_cookie_secure,
        path="/dashboard",
    )
    return response


@router.post("/logout")
def logout(
    request: Request, context: Context, csrf: Annotated[str, Form(max_length=200)] = ""
) -> Response:
    """End the session server-side (a copied cookie stops working) and drop the cookie."""
    if auth.session_user(request, context) is not None:
        if not auth.csrf_ok(request, context, csrf):
            raise HTTPException(status.HTTP_403_FORBIDDEN, "bad CSRF token; reload the page")
        auth.end_session(request, context)
    response = RedirectResponse("/dashboard/login", status_code=status.HTTP_303_SEE_OTHER)
    response.delete_cookie(auth.SESSION_COOKIE, path="/dashboard")
    return response


@router.get("", response_class=HTMLResponse)
def dashboard(
    request: Request,
    user: User,
    context: Context,
    notice: Annotated[str, Query(max_length=300)] = "",
    batches_offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
    q: Annotated[str, Query(max_length=320)] = "",
) -> Response:
    if q.strip():  # the search moved to the requests page; old links keep working
        return RedirectResponse("/dashboard/requests?" + urlencode({"q": q.strip()}),
                                status_code=status.HTTP_303_SEE_OTHER)
    store = context.store
    summaries, batch_total = list_batches(store, limit=10, offset=batches_offset)
    failures = list_requests(store, RequestFilter(states=ATTENTION), limit=20)
    counts = store.count_by_state()
    return templates.TemplateResponse(
        request,
        "dashboard.html",
        {
            **page_values(request, context, user),
            "batches": [batch_view(s) for s in summaries],
            "batch_total": batch_total,
            "batches_offset": batches_offset,
            "failures": failures,
            "counts": counts,
            "in_flight": in_flight_count(store),
            "fingerprint": _fingerprint(context),
            "notice": notice,
            "states": [s.value for s in State],
        },
    )


@router.get("/people/{request_id}", response_class=HTMLResponse)
def person(request: Request, request_id: str, user: User, context: Context) -> Response:
    """One person offboarding with every seat found, its outcome and the reads."""
    from worker.store.personreport import person_report

    record = context.store.get(request_id)
    if record is None or record.kind != "person":
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such person request")
    return templates.TemplateResponse(request, "person.html", {
        "user": user, "record": record, "report": person_report(context.store, record),
        "children": context.store.children_of(record.id),
        "csrf": auth.csrf_token(request, context)})


def _breakers(context: ApiContext) -> list[OpenBreaker]:
    try:
        return context.breaker.open_breakers()
    except RedisError as exc:
        log.warning("dashboard.breakers_unreadable", error=type(exc).__name__)
        return []


def _pauses(context: ApiContext) -> tuple[list[PauseInfo], str | None]:
    """Pauses in force, or why they could not be read (shown instead of hiding it)."""
    try:
        return context.pause.all(), None
    except RedisError as exc:
        log.warning("dashboard.pauses_unreadable", error=type(exc).__name__)
        return [], f"Could not read the queue's pause state from Redis ({type(exc).__name__})."


def batch_view(summary: BatchSummary) -> dict[str, Any]:
    total = max(summary.total, 1)
    segments = [
        {"state": state.value, "css": css, "n": summary.counts.get(state.value, 0),
         "pct": 100.0 * summary.counts.get(state.value, 0) / total}
        for state, css in SEGMENTS
    ]
    return {
        "batch": summary.batch,
        "counts": summary.counts,
        "finished": summary.finished,
        "total": summary.total,
        "done": summary.done,
        "pct": min(100, round(100 * summary.finished / total)),
        "segments": [s for s in segments if s["n"]],
    }


def _fingerprint(context: ApiContext) -> str:
    counts = context.store.count_by_state()
    changed = last_change(context.store)
    pauses, error = _pauses(context)
    paused = ",".join(f"{p.scope}:{p.fault}:{p.since}" for p in pauses) or (error or "")
    workers = live_workers(context)  # the no-worker banner comes and goes with a reload
    alive = "unknown" if workers is None else str(bool(workers))
    raw = (f"{sorted(counts.items())}|{changed.isoformat() if changed else ''}|{paused}"
           f"|{alive}")
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


@router.get("/state.json")
def state(user: User, context: Context) -> JSONResponse:
    """What the page polls: reload when the fingerprint moves."""
    return JSONResponse(
        {"in_flight": in_flight_count(context.store), "fingerprint": _fingerprint(context)},
        headers={"Cache-Control": "no-store"},
    )


@router.post("/requests/{request_id}/retry")
def retry(
    request: Request,
    request_id: str,
    user: User,
    context: Context,
    csrf: Annotated[str, Form(max_length=200)] = "",
    next_page: Annotated[str, Form(alias="next", max_length=2000)] = "/dashboard",
) -> Response:
    """Send a failed or needs_review request again; the signed-in user is recorded."""
    if not auth.csrf_ok(request, context, csrf):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "bad CSRF token; reload the page")
    try:
        retry_request(context, request_id, actor=actor_of(user))
        notice = f"Request {request_id[:8]} sent again."
    except HTTPException as exc:
        notice = f"Could not retry {request_id[:8]}: {exc.detail}"
    return go(local_path(next_page), notice)
