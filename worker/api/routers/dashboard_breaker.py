"""Dashboard: the circuit breaker. A page per open breaker scope listing who would lose a
seat (its held requests), with Release and Reject buttons (confirmed; the signed-in user is
recorded as who acted). The red banner on every page links here (``page_values``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, Response

from worker.api import auth
from worker.api.context import ApiContext, get_context
from worker.api.routers.dashboard import User, actor_of, go, page_values, templates
from worker.jobs.breakerdesk import UnknownTarget

router = APIRouter(prefix="/dashboard", include_in_schema=False)
Context = Annotated[ApiContext, Depends(get_context)]


@router.get("/breaker", response_class=HTMLResponse)
def breaker_page(
    request: Request, user: User, context: Context,
    scope: Annotated[str, Query(max_length=200)] = "",
    notice: Annotated[str, Query(max_length=300)] = "",
) -> Response:
    """Every open breaker (or the one ``scope``) and the requests it holds."""
    groups: dict[str, list[object]] = {}
    for record in context.store.held(scope or None):
        groups.setdefault(str(record.held_scope), []).append(record)
    values = page_values(request, context, user)
    shown = [b for b in values["breakers"] if not scope or b.scope == scope]
    for name in groups.keys() - {b.scope for b in shown}:  # held, its breaker since closed
        shown.append(name)
    return templates.TemplateResponse(request, "breaker.html", {
        **values, "scope": scope, "groups": groups, "shown": shown, "notice": notice,
        "settings": context.settings,
    })


def _act(request: Request, context: ApiContext, user: str, csrf: str, verb: str,
         target: str) -> Response:
    if not auth.csrf_ok(request, context, csrf):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "bad CSRF token; reload the page")
    desk = context.desk
    try:
        acted = (desk.release if verb == "release" else desk.reject)([target],
                                                                     actor=actor_of(user))
    except UnknownTarget as exc:
        return go("/dashboard/breaker", f"Could not {verb} {target}: {exc}")
    done = "released" if verb == "release" else "rejected"
    closed = f"; breaker closed for {', '.join(acted.closed)}" if acted.closed else ""
    return go("/dashboard/breaker", f"{len(acted.moved)} held request(s) {done}{closed}.")


@router.post("/breaker/release")
def release(request: Request, user: User, context: Context,
            target: Annotated[str, Form(max_length=200)],
            csrf: Annotated[str, Form(max_length=200)] = "") -> Response:
    return _act(request, context, user, csrf, "release", target)


@router.post("/breaker/reject")
def reject(request: Request, user: User, context: Context,
           target: Annotated[str, Form(max_length=200)],
           csrf: Annotated[str, Form(max_length=200)] = "") -> Response:
    return _act(request, context, user, csrf, "reject", target)
