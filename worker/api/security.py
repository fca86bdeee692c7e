"""Security headers on every response, and the API docs pages under a strict CSP.

Every response gets ``X-Content-Type-Options: nosniff``, ``X-Frame-Options: DENY`` and
``Referrer-Policy: no-referrer``. HTML gets a Content-Security-Policy whose only allowed
inline scripts and style blocks carry this response's nonce (``request.state.csp_nonce``,
fresh for each request); other responses get ``default-src 'none'``. A route that needs a
different policy (the docs pages load Swagger UI / ReDoc bundles) sets its own
``Content-Security-Policy`` header, which is kept.

The docs pages load Swagger UI and ReDoc from assets packaged with the API
(``fastapi_offline``'s static files, served under ``/docs-assets``): they work offline and
load nothing from another origin.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

DOCS_ASSETS = "/docs-assets"
_ASSET_DIR = Path(fastapi_offline.__file__).parent / "static"
COMMON_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


def html_policy(nonce: str) -> str:
    """The dashboard's policy: same-origin only, inline code only with the nonce. Style
    attributes (progress bar widths) are allowed; they cannot run code."""
    return (
        "default-src 'none'; "
        f"script-src 'nonce-{nonce}'; "
        f"style-src 'nonce-{nonce}'; style-src-attr 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    )


NON_HTML_POLICY = "default-src 'none'; frame-ancestors 'none'"


def docs_policy(nonce: str) -> str:
    """Swagger UI and ReDoc: their packaged bundle from this origin, their inline bootstrap
    by nonce."""
    return (
        "default-src 'none'; "
        f"script-src 'nonce-{nonce}' 'self'; "
        "style-src 'unsafe-inline' 'self'; "
        "img-src 'self' data:; "
        "font-src 'self' data:; connect-src 'self'; worker-src blob:; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    )


class SecurityHeaders:
    """Pure ASGI middleware: a nonce per request, headers on every HTTP response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        nonce = secrets.token_urlsafe(18)
        scope.setdefault("state", {})["csp_nonce"] = nonce

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers: list[tuple[bytes, bytes]] = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                for name, value in COMMON_HEADERS.items():
                    if name.encode() not in present:
                        headers.append((name.encode(), value.encode()))
                if b"content-security-policy" not in present:
                    content_type = next(
                        (value for name, value in headers if name.lower() == b"content-type"),
                        b"",
                    )
                    policy = (html_policy(nonce) if content_type.startswith(b"text/html")
                              else NON_HTML_POLICY)
                    headers.append((b"content-security-policy", policy.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _with_nonce(page: HTMLResponse, nonce: str) -> HTMLResponse:
    body = bytes(page.body).decode().replace("<script", f'<script nonce="{nonce}"')
    return HTMLResponse(body, headers={"Content-Security-Policy": docs_policy(nonce)})


def add_docs(app: FastAPI, *, title: str) -> None:
    """``/docs`` (Swagger UI) and ``/redoc`` with nonced scripts, their own CSP and the
    packaged assets; create the app with ``docs_url=None, redoc_url=None``."""
    openapi_url = app.openapi_url or "/openapi.json"
    app.mount(DOCS_ASSETS, StaticFiles(directory=_ASSET_DIR), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def swagger(request: Request) -> Any:
        page = get_swagger_ui_html(
            openapi_url=openapi_url, title=f"{title} - Swagger UI",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon.png",
        )
        return _with_nonce(page, request.state.csp_nonce)

    @app.get("/redoc", include_in_schema=False)
    def redoc(request: Request) -> Any:
        page = get_redoc_html(openapi_url=openapi_url, title=f"{title} - ReDoc",
                              redoc_js_url=f"{DOCS_ASSETS}/redoc.standalone.js",
                              redoc_favicon_url=f"{DOCS_ASSETS}/favicon.png",
                              with_google_fonts=False)
        return _with_nonce(page, request.state.csp_nonce)
