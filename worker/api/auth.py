"""Who may call: bearer API keys for the REST API, a server-side session for the dashboard.

Dashboard sessions:

- Signed with a secret that is not derived from anything configured: ``SESSION_SECRET``
  when set, else a random secret generated once and kept in Redis under the namespace
  (``<namespace>:session-secret``, ``SET NX``) so every API process shares it. Knowing an
  API key's hash (the ``sha256:<hex>`` form ``API_KEYS`` accepts) gives no way to forge a
  cookie.
- Each login opens a session with a random id, recorded in Redis for
  ``SESSION_MAX_AGE_SECONDS``; the cookie names it. Logging out deletes it, so a copy of the
  cookie is worthless afterwards. Without Redis nobody is signed in (fail closed).
- The cookie also holds a fingerprint of the key's hash (HMAC under the session secret,
  never the key or its hash), checked against the configured keys on every request:
  removing a key from ``API_KEYS`` ends its sessions.
- Forms carry a CSRF token derived from the session id; the cookie is ``SameSite=Strict``
  and ``HttpOnly``.

Failed logins and bad API keys are logged (client address and path, never the key) and
counted per client in Redis: after ``AUTH_FAILURE_LIMIT`` failures within
``AUTH_FAILURE_WINDOW_SECONDS`` that client gets 429 until the window ends.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from itsdangerous import BadSignature, URLSafeTimedSerializer
from redis.exceptions import RedisError

from worker.api.context import ApiContext, get_context
from worker.telemetry.logs import get_logger

log = get_logger("seat_revoker.api.auth")
SESSION_COOKIE = "seat_revoker_session"
_bearer = HTTPBearer(auto_error=False, description="An API key from API_KEYS")


class SessionStoreDown(RuntimeError):
    """Redis, where sessions and the generated session secret live, does not answer."""


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"}
    )


def client_of(request: Request) -> str:
    """The peer address (the API does not trust proxy headers)."""
    return request.client.host if request.client else "unknown"


# -- failed attempts ------------------------------------------------------------------------


def _failures_key(context: ApiContext, client: str) -> str:
    return context.settings.redis_key("auth-failures", client)


def locked_out(context: ApiContext, client: str) -> int | None:
    """Seconds until ``client`` may try again, or ``None`` when it is not locked out.

    Redis trouble does not lock anybody out (the key check still runs)."""
    key = _failures_key(context, client)
    try:
        pipe = context.redis.pipeline()
        pipe.get(key)
        pipe.ttl(key)
        failures, ttl = pipe.execute()
    except RedisError as exc:
        log.warning("auth.throttle_unavailable", error=type(exc).__name__)
        return None
    if failures is None or int(failures) < context.api.auth_failure_limit:
        return None
    return max(int(ttl), 1)


def record_failure(context: ApiContext, client: str) -> None:
    """Count one failed attempt of ``client`` in the current window."""
    key = _failures_key(context, client)
    try:
        pipe = context.redis.pipeline()
        pipe.incr(key)
        pipe.expire(key, context.api.auth_failure_window_seconds, nx=True)
        pipe.execute()
    except RedisError as exc:
        log.warning("auth.throttle_unavailable", error=type(exc).__name__)


def too_many(retry_after: int) -> HTTPException:
    return HTTPException(
        status.HTTP_429_TOO_MANY_REQUESTS,
        f"too many failed attempts from this address; try again in {retry_after} s",
        headers={"Retry-After": str(retry_after)},
    )


# -- REST: bearer API keys ------------------------------------------------------------------


def require_api_key(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    context: Annotated[ApiContext, Depends(get_context)],
) -> str:
    """The caller's identity (``api:<8 hex of the key hash>``), 401, or 429 while the
    client is locked out after repeated bad keys."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise _unauthorized("missing bearer API key")
    if not context.api.api_keys:
        raise _unauthorized("no API keys are configured on this server")
    client = client_of(request)
    wait = locked_out(context, client)
    if wait is not None:
        log.warning("api.auth_throttled", client=client, path=request.url.path)
        raise too_many(wait)
    matched = context.api.match_api_key(credentials.credentials)
    if matched is None:
        record_failure(context, client)
        log.warning("api.auth_failed", client=client, path=request.url.path,
                    reason="invalid API key")
        raise _unauthorized("invalid API key")
    return f"api:{context.api.key_name(matched).replace('key ', '', 1)}"


Caller = Annotated[str, Depends(require_api_key)]


# -- dashboard sessions ---------------------------------------------------------------------


def session_secret(context: ApiContext) -> bytes:
    """``SESSION_SECRET``, else the namespace's random secret in Redis (created once)."""
    if context.api.session_secret is not None:
        return context.api.session_secret.get_secret_value().encode()
    key = context.settings.redis_key("session-secret")
    try:
        value = context.redis.get(key)
        if value is None:
            context.redis.set(key, secrets.token_hex(32), nx=True)
            value = context.redis.get(key)
    except RedisError as exc:
        raise SessionStoreDown(type(exc).__name__) from exc
    if not isinstance(value, bytes):
        raise SessionStoreDown("the session secret vanished from Redis")
    return value


def _derived(secret: bytes, purpose: str) -> bytes:
    return hmac.new(secret, f"seat-revoker dashboard {purpose}".encode(), hashlib.sha256).digest()


def _serializer(secret: bytes) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(_derived(secret, "cookie"), salt="seat-revoker.dashboard")


def _fingerprint(secret: bytes, key_hash: str) -> str:
    return hmac.new(_derived(secret, "key"), key_hash.encode(), hashlib.sha256).hexdigest()[:32]


def _session_key(context: ApiContext, sid: str) -> str:
    # The id is hashed so a look at Redis does not hand out usable cookies' ids.
    return context.settings.redis_key("session", hashlib.sha256(sid.encode()).hexdigest())


def new_session(context: ApiContext, key_hash: str) -> str:
    """Open a session for the key with hash ``key_hash``; the cookie's value."""
    secret = session_secret(context)
    sid = secrets.token_urlsafe(32)
    kid = _fingerprint(secret, key_hash)
    try:
        context.redis.set(_session_key(context, sid), kid,
                          ex=context.api.session_max_age_seconds)
    except RedisError as exc:
        raise SessionStoreDown(type(exc).__name__) from exc
    return _serializer(secret).dumps({"sid": sid, "kid": kid})


def _cookie_data(request: Request, context: ApiContext) -> tuple[bytes, str, str] | None:
    """(secret, session id, key fingerprint) of a validly signed, unexpired cookie."""
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie or not context.api.api_keys:
        return None
    try:
        secret = session_secret(context)
    except SessionStoreDown as exc:
        log.warning("dashboard.session_store_unavailable", error=str(exc))
        return None
    try:
        data: Any = _serializer(secret).loads(cookie, max_age=context.api.session_max_age_seconds)
    except BadSignature:
        log.warning("dashboard.bad_session_cookie", client=client_of(request))
        return None
    sid = data.get("sid") if isinstance(data, dict) else None
    kid = data.get("kid") if isinstance(data, dict) else None
    if not isinstance(sid, str) or not isinstance(kid, str):
        return None
    return secret, sid, kid


def session_user(request: Request, context: ApiContext) -> str | None:
    """Who is signed in — the key's name from ``API_KEYS`` (``ops-alice:<key>``), else
    ``key <8 hex>`` — for a live session (not logged out, not expired) whose key is still
    configured; ``None`` otherwise."""
    found = _cookie_data(request, context)
    if found is None:
        return None
    secret, sid, kid = found
    try:
        live = context.redis.get(_session_key(context, sid))
    except RedisError as exc:
        log.warning("dashboard.session_store_unavailable", error=type(exc).__name__)
        return None
    if not isinstance(live, bytes) or not hmac.compare_digest(live, kid.encode()):
        return None
    for key_hash in context.api.api_key_hashes:
        if hmac.compare_digest(_fingerprint(secret, key_hash), kid):
            return context.api.key_name(key_hash)
    return None


def end_session(request: Request, context: ApiContext) -> None:
    """Forget the cookie's session server-side: copies of the cookie stop working."""
    found = _cookie_data(request, context)
    if found is None:
        return
    try:
        context.redis.delete(_session_key(context, found[1]))
    except RedisError as exc:
        log.warning("dashboard.session_store_unavailable", error=type(exc).__name__)


def csrf_token(request: Request, context: ApiContext) -> str:
    found = _cookie_data(request, context)
    if found is None:
        return ""
    secret, sid, _ = found
    return hmac.new(_derived(secret, "csrf"), sid.encode(), hashlib.sha256).hexdigest()


def csrf_ok(request: Request, context: ApiContext, token: str) -> bool:
    expected = csrf_token(request, context)
    return bool(expected) and hmac.compare_digest(expected, token)
