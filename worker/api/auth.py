"""Who may call: bearer API keys for the REST API, a signed session cookie for the dashboard.

The cookie holds a fingerprint of the key's hash (HMAC under the session key), never the
key or its hash, and is checked against the configured keys on every request: removing a
key from ``API_KEYS`` ends its sessions. Dashboard forms carry a CSRF token derived from
the cookie; the cookie is also ``SameSite=Strict`` and ``HttpOnly``.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from itsdangerous import BadSignature, URLSafeTimedSerializer

from worker.api.context import ApiContext, get_context
from worker.api.settings import ApiSettings

SESSION_COOKIE = "seat_revoker_session"
_bearer = HTTPBearer(auto_error=False, description="An API key from API_KEYS")


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"}
    )


def require_api_key(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    context: Annotated[ApiContext, Depends(get_context)],
) -> str:
    """The caller's identity (``api:<8 hex of the key hash>``) or 401."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise _unauthorized("missing bearer API key")
    if not context.api.api_keys:
        raise _unauthorized("no API keys are configured on this server")
    matched = context.api.match_api_key(credentials.credentials)
    if matched is None:
        raise _unauthorized("invalid API key")
    return f"api:{matched[:8]}"


Caller = Annotated[str, Depends(require_api_key)]


def _serializer(api: ApiSettings) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(api.session_key(), salt="seat-revoker.dashboard")


def _fingerprint(api: ApiSettings, key_hash: str) -> str:
    return hmac.new(api.session_key(), key_hash.encode(), hashlib.sha256).hexdigest()[:32]


def new_session(api: ApiSettings, key_hash: str) -> str:
    return _serializer(api).dumps({"kid": _fingerprint(api, key_hash)})


def session_user(request: Request, api: ApiSettings) -> str | None:
    """``dashboard:<8 hex>`` for a valid, unexpired session whose key is still configured."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie or not api.api_keys:
        return None
    try:
        data = _serializer(api).loads(cookie, max_age=api.session_max_age_seconds)
    except BadSignature:
        return None
    kid = data.get("kid") if isinstance(data, dict) else None
    if not isinstance(kid, str):
        return None
    for key_hash in api.api_key_hashes:
        if hmac.compare_digest(_fingerprint(api, key_hash), kid):
            return f"dashboard:{key_hash[:8]}"
    return None


def csrf_token(request: Request, api: ApiSettings) -> str:
    cookie = request.cookies.get(SESSION_COOKIE, "")
    return hmac.new(api.session_key(), b"csrf:" + cookie.encode(), hashlib.sha256).hexdigest()


def csrf_ok(request: Request, api: ApiSettings, token: str) -> bool:
    return hmac.compare_digest(csrf_token(request, api), token)
