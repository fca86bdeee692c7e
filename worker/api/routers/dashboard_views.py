"""Dashboard drill-down pages: every request with filters and paging, one request (its
history as a timeline, who was asked for and who was seen, the seat snapshot), one batch
(progress, rows by outcome, its report from the browser session) and the scheduled
requests with a cancel button. Server-rendered like the overview (``dashboard.py``), same
session, CSRF and CSP."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse

from worker.api import auth
from worker.api.context import ApiContext, get_context
from worker.api.routers.dashboard import (
    SEGMENTS,
    User,
    actor_of,
    batch_view,
    go,
    local_path,
    page_values,
    templates,
)
from worker.api.routers.revocations import cancel_request
from worker.decisions.outcomes import State
from worker.store.batches import batch_progress, get_batch, report_csv, report_rows
from worker.store.lookup import (
    SOURCES,
    Ambiguous,
    NotFound,
    resolve_batch,
    resolve_request,
    source_of,
)
from worker.store.queries import (
    STATE_GROUPS,
    RequestFilter,
    batch_lines,
    batches_of_request,
    list_requests,
    scheduled_requests,
)

router = APIRouter(prefix="/dashboard", include_in_schema=False)
Context = Annotated[ApiContext, Depends(get_context)]
PAGE_SIZE = 50
STATE_OPTIONS = [s.value for s in State] + list(STATE_GROUPS)
Offset = Annotated[int, Query(ge=0, le=1_000_000)]


def _day(value: str, name: str, *, end: bool = False) -> datetime | None:
    """A ``YYYY-MM-DD`` (UTC day; ``end``: the day after, an exclusive bound) or a full
    ISO time from a filter field; 400 naming the field otherwise."""
    if not value:
        return None
    try:
        if len(value) == 10:
            moment = datetime.combine(date.fromisoformat(value), time(), tzinfo=UTC)
            return moment + timedelta(days=1) if end else moment
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise HTTPException(status.HTTP_400_BAD_REQUEST,
                            f"{name}: give a date (YYYY-MM-DD) or an ISO time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@router.get("/requests", response_class=HTMLResponse)
def requests_page(
    request: Request,
    user: User,
    context: Context,
    q: Annotated[str, Query(max_length=320)] = "",
    state: Annotated[str, Query(max_length=40)] = "",
    batch: Annotated[str, Query(max_length=36)] = "",
    source: Annotated[str, Query(max_length=20)] = "",
    created_from: Annotated[str, Query(alias="from", max_length=40)] = "",
    created_to: Annotated[str, Query(alias="to", max_length=40)] = "",
    offset: Offset = 0,
    notice: Annotated[str, Query(max_length=300)] = "",
) -> Response:
    """Every request, newest first; filters AND together. ``q``: an id or seat-id prefix,
    part of an email (``@acme.com``: a domain), an external id or an idempotency key."""
    problems = []
    if state and state not in STATE_OPTIONS:
        problems.append(f"unknown state {state!r}")
    if source and source not in SOURCES:
        problems.append(f"unknown source {source!r}")
    batch_id = None
    if batch:
        try:
            batch_id = resolve_batch(context.store, batch).id
        except (Ambiguous, NotFound) as exc:
            problems.append(str(exc))
    where = RequestFilter(
        states=[state] if state and not problems else [],
        batch_id=batch_id, text=q.strip() or None,
        source=source if source in SOURCES else None,
        created_from=_day(created_from, "from"), created_to=_day(created_to, "to", end=True),
    )
    page = list_requests(context.store, where, limit=PAGE_SIZE, offset=offset)
    if problems:
        page = type(page)(items=[], total=0)
    filters = {"q": q.strip(), "state": state, "batch": batch, "source": source,
               "from": created_from, "to": created_to}
    return templates.TemplateResponse(request, "requests.html", {
        **page_values(request, context, user),
        "page": page, "offset": offset, "page_size": PAGE_SIZE, "filters": filters,
        "query": {k: v for k, v in filters.items() if v},
        "problems": problems, "notice": notice, "state_options": STATE_OPTIONS,
        "sources": SOURCES,
    })


@router.get("/requests/{request_id}", response_class=HTMLResponse)
def request_page(
    request: Request,
    request_id: str,
    user: User,
    context: Context,
    notice: Annotated[str, Query(max_length=300)] = "",
) -> Response:
    """One request: state, history with who and why, asked vs seen, snapshot, links."""
    try:
        record = resolve_request(context.store, request_id)
    except Ambiguous as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None
    except NotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such request") from None
    if record.id != request_id:  # a prefix or key: the page lives at the full id
        return RedirectResponse(f"/dashboard/requests/{record.id}",
                                status_code=status.HTTP_303_SEE_OTHER)
    history = context.store.history(record.id)
    batches = [{"batch": b, "lines": batch_lines(context.store, b.id, record.id)}
               for b in batches_of_request(context.store, record.id)]
    asked = {"email": record.occupant_email, "member_id": record.occupant_member_id,
             "customer_id": record.occupant_customer_id,
             "external_id": record.occupant_external_id}
    return templates.TemplateResponse(request, "request.html", {
        **page_values(request, context, user),
        "r": record, "history": [_event_view(e) for e in history], "batches": batches,
        "asked": {k: v for k, v in asked.items() if v},
        "seen": record.occupant_seen or {},
        "snapshot": _pretty(record.seat_snapshot),
        "error_detail": _pretty(record.error_detail),
        "source": source_of(record), "notice": notice,
    })


def _pretty(value: Any) -> str | None:
    return json.dumps(value, indent=2, sort_keys=True, default=str) if value else None


def _event_view(event: Any) -> dict[str, Any]:
    """A history entry for the timeline: who did it (``by`` in the detail, else the
    system) and the rest of the detail as ``key: value`` pairs."""
    detail = dict(event.detail or {})
    actor = detail.pop("by", None)
    return {"at": event.at, "state": event.state, "attempt": event.attempt,
            "actor": actor, "detail": [(k, v if isinstance(v, str) else json.dumps(v))
                                       for k, v in detail.items()]}


@router.post("/requests/{request_id}/cancel")
def cancel(
    request: Request,
    request_id: str,
    user: User,
    context: Context,
    csrf: Annotated[str, Form(max_length=200)] = "",
    next_page: Annotated[str, Form(alias="next", max_length=2000)] = "/dashboard",
) -> Response:
    """Cancel a request that has not started its DELETE (a person request with its seat
    requests that have not); the signed-in user is recorded."""
    if not auth.csrf_ok(request, context, csrf):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "bad CSRF token; reload the page")
    try:
        record = cancel_request(context, request_id, actor=actor_of(user))
        note = context.producer.cancel_note(record)
        notice = f"Request {request_id[:8]} cancelled" + (f": {note}." if note else ".")
    except HTTPException as exc:
        notice = f"Could not cancel {request_id[:8]}: {exc.detail}"
    return go(local_path(next_page), notice)


@router.get("/batches/{batch_id}", response_class=HTMLResponse)
def batch_page(
    request: Request,
    batch_id: str,
    user: User,
    context: Context,
    state: Annotated[str, Query(max_length=40)] = "",
    offset: Offset = 0,
    notice: Annotated[str, Query(max_length=300)] = "",
) -> Response:
    """One batch: progress and counts, its rows filtered by outcome and paged."""
    try:
        batch = resolve_batch(context.store, batch_id)
    except Ambiguous as exc:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, str(exc)) from None
    except NotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such batch") from None
    if batch.id != batch_id:
        return RedirectResponse(f"/dashboard/batches/{batch.id}",
                                status_code=status.HTTP_303_SEE_OTHER)
    summary = batch_progress(context.store, batch.id)
    assert summary is not None
    if state and state not in STATE_OPTIONS:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"unknown state {state!r}")
    where = RequestFilter(batch_id=batch.id, states=[state] if state else [])
    page = list_requests(context.store, where, limit=PAGE_SIZE, offset=offset)
    return templates.TemplateResponse(request, "batch.html", {
        **page_values(request, context, user),
        "b": batch_view(summary), "progress": summary, "page": page, "offset": offset,
        "page_size": PAGE_SIZE, "state": state, "query": {"state": state} if state else {},
        "notice": notice, "segments": SEGMENTS,
    })


@router.get("/batches/{batch_id}/report.csv")
def batch_report(batch_id: str, user: User, context: Context) -> StreamingResponse:
    """The batch report (the same CSV as ``/v1/batches/{id}/report.csv``) for a signed-in
    browser: the session cookie, not a bearer key."""
    if get_batch(context.store, batch_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such batch")
    return StreamingResponse(
        report_csv(report_rows(context.store, batch_id)),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="batch-{batch_id}.csv"',
                 "Cache-Control": "no-store"},
    )


@router.get("/scheduled", response_class=HTMLResponse)
def scheduled_page(
    request: Request,
    user: User,
    context: Context,
    offset: Offset = 0,
    notice: Annotated[str, Query(max_length=300)] = "",
) -> Response:
    """Scheduled requests, soonest first, each with its ``effective_at`` and a cancel
    button."""
    items, total = scheduled_requests(context.store, limit=PAGE_SIZE, offset=offset)
    return templates.TemplateResponse(request, "scheduled.html", {
        **page_values(request, context, user),
        "items": items, "total": total, "offset": offset, "page_size": PAGE_SIZE,
        "query": {}, "notice": notice, "now": datetime.now(UTC),
    })
