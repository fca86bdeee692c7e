"""Dashboard sessions and the API's security headers over the real app, real Redis and a
SQLite store: a cookie forged from an API key's hash is refused, logout ends the session for
every copy of the cookie, HTML carries a nonce-based CSP, repeated failures are throttled and
logged without the key."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import logging
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from fastapi import FastAPI
from fastapi.testclient import TestClient
from itsdangerous import URLSafeTimedSerializer
from redis import Redis

from config.settings import Settings
from worker.api import create_app
from worker.api.auth import SESSION_COOKIE
from worker.api.settings import ApiSettings, hash_key
from worker.store.records import Store
from worker.telemetry import logs

pytestmark = pytest.mark.integration

API_KEY = "security-test-key-" + "6" * 20
KEY_HASH = hash_key(API_KEY)


class Harness:
    def __init__(self, settings: Settings, store: Store, redis: Redis) -> None:
        self.settings, self.store, self.redis = settings, store, redis

    def app(self, **api: Any) -> FastAPI:
        """Another API process over the same store and Redis namespace."""
        options: dict[str, Any] = {"api_keys": f"sha256:{KEY_HASH}", **api}
        return create_app(self.settings, store=self.store,
                          api_settings=ApiSettings(_env_file=None, **options))  # type: ignore[call-arg]

    def login(self, client: TestClient) -> str:
        response = client.post("/dashboard/login", data={"api_key": API_KEY},
                               follow_redirects=False)
        assert response.status_code == 303, response.text
        return str(response.cookies[SESSION_COOKIE])


@pytest.fixture
def sec(redis_url: str, tmp_path: Path) -> Iterator[Harness]:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, database_url=f"sqlite:///{tmp_path / 'store.db'}",
        redis_url=redis_url, namespace=f"sec-{uuid.uuid4().hex[:10]}",
    )
    store = Store.from_url(settings.database_url)
    redis = Redis.from_url(redis_url)
    try:
        yield Harness(settings, store, redis)
    finally:
        for key in redis.scan_iter(f"{settings.namespace}:*"):
            redis.delete(key)
        redis.close()
        store.engine.dispose()


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    """JSON log lines of this test (the root logger and structlog restored after)."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    buffer = io.StringIO()
    logs.configure_logging(level="INFO", fmt="json", stream=buffer)
    try:
        yield buffer
    finally:
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        structlog.reset_defaults()


def events(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


def _old_style_cookie(payload: dict[str, Any]) -> str:
    """A cookie signed the way sessions were before: a key derived from the API keys'
    hashes only, which anyone holding the ``sha256:<hex>`` value could compute."""
    key = hmac.new(b"seat-revoker dashboard session", KEY_HASH.encode(), hashlib.sha256).digest()
    return URLSafeTimedSerializer(key, salt="seat-revoker.dashboard").dumps(payload)


def _derived_forgeries() -> list[str]:
    legacy_key = hmac.new(b"seat-revoker dashboard session", KEY_HASH.encode(),
                          hashlib.sha256).digest()
    kid = hmac.new(legacy_key, KEY_HASH.encode(), hashlib.sha256).hexdigest()[:32]
    forged = [_old_style_cookie({"kid": kid}), _old_style_cookie({"sid": "x", "kid": kid})]
    for secret in (KEY_HASH.encode(), legacy_key):
        cookie_key = hmac.new(secret, b"seat-revoker dashboard cookie", hashlib.sha256).digest()
        forged.append(URLSafeTimedSerializer(cookie_key, salt="seat-revoker.dashboard").dumps(
            {"sid": "guessed", "kid": kid}))
    return forged


def test_a_cookie_forged_from_the_key_hash_is_refused(sec: Harness) -> None:
    with TestClient(sec.app()) as client:
        for forged in _derived_forgeries():
            client.cookies.set(SESSION_COOKIE, forged, path="/dashboard")
            page = client.get("/dashboard", follow_redirects=False)
            assert page.status_code == 303 and page.headers["location"] == "/dashboard/login"
            assert client.get("/dashboard/state.json",
                              follow_redirects=False).status_code == 303
        client.cookies.clear()
        # The real session is signed with the namespace's generated secret, in Redis.
        sec.login(client)
        assert client.get("/dashboard").status_code == 200
    secret = sec.redis.get(sec.settings.redis_key("session-secret"))
    assert secret is not None and len(secret) >= 32 and KEY_HASH.encode() not in secret


def test_api_processes_share_the_generated_secret(sec: Harness) -> None:
    with TestClient(sec.app()) as first, TestClient(sec.app()) as second:
        cookie = sec.login(first)
        second.cookies.set(SESSION_COOKIE, cookie, path="/dashboard")
        assert second.get("/dashboard").status_code == 200


def test_session_secret_setting_is_used_when_set(sec: Harness) -> None:
    with TestClient(sec.app(session_secret="s" * 40)) as client:
        sec.login(client)
        assert client.get("/dashboard").status_code == 200
    assert sec.redis.get(sec.settings.redis_key("session-secret")) is None


def test_logout_invalidates_a_copied_cookie(sec: Harness) -> None:
    with TestClient(sec.app()) as client, TestClient(sec.app()) as thief:
        cookie = sec.login(client)
        thief.cookies.set(SESSION_COOKIE, cookie, path="/dashboard")
        assert thief.get("/dashboard").status_code == 200
        page = client.get("/dashboard").text
        csrf = re.search(r'action="/dashboard/logout"><input type="hidden" name="csrf" '
                         r'value="([0-9a-f]+)"', page)
        assert csrf is not None
        # Without the form's CSRF token logout is refused (and the session lives on).
        assert client.post("/dashboard/logout", follow_redirects=False).status_code == 403
        out = client.post("/dashboard/logout", data={"csrf": csrf.group(1)},
                          follow_redirects=False)
        assert out.status_code == 303 and out.headers["location"] == "/dashboard/login"
        copied = thief.get("/dashboard", follow_redirects=False)
        assert copied.status_code == 303 and copied.headers["location"] == "/dashboard/login"
        # A new login opens a new session; the old cookie stays dead.
        sec.login(client)
        assert client.get("/dashboard").status_code == 200
        assert thief.get("/dashboard", follow_redirects=False).status_code == 303


def test_removing_a_key_ends_its_sessions(sec: Harness) -> None:
    with TestClient(sec.app()) as client:
        cookie = sec.login(client)
    other = "another-key-" + "8" * 20
    with TestClient(sec.app(api_keys=other)) as client:
        client.cookies.set(SESSION_COOKIE, cookie, path="/dashboard")
        assert client.get("/dashboard", follow_redirects=False).status_code == 303


def _csp(response: Any) -> dict[str, str]:
    policy = response.headers["content-security-policy"]
    return {part.split()[0]: part for part in (p.strip() for p in policy.split(";")) if part}


def test_security_headers_on_every_html_page(sec: Harness) -> None:
    with TestClient(sec.app()) as client:
        login_page = client.get("/dashboard/login")
        sec.login(client)
        dashboard = client.get("/dashboard")
        listed, scheduled = client.get("/dashboard/requests"), client.get("/dashboard/scheduled")
        docs, redoc = client.get("/docs"), client.get("/redoc")
        state = client.get("/dashboard/state.json")
    for page in (login_page, dashboard, listed, scheduled, docs, redoc):
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert page.headers["x-frame-options"] == "DENY"
        assert page.headers["x-content-type-options"] == "nosniff"
        assert page.headers["referrer-policy"] == "no-referrer"
        policy = _csp(page)
        assert "frame-ancestors 'none'" in policy["frame-ancestors"]
        script_src = policy["script-src"]
        assert "'unsafe-inline'" not in script_src and "'unsafe-eval'" not in script_src
        # Every inline script carries this response's nonce, and only that one.
        nonce = re.search(r"'nonce-([^']+)'", script_src)
        assert nonce is not None
        for tag in re.findall(r"<script[^>]*>", page.text):
            assert f'nonce="{nonce.group(1)}"' in tag, tag
    assert re.search(r"<script nonce=", dashboard.text)
    assert _csp(login_page)["script-src"] != _csp(dashboard)["script-src"]  # fresh nonces
    assert state.headers["x-content-type-options"] == "nosniff"
    assert "default-src 'none'" in state.headers["content-security-policy"]


def test_repeated_bad_logins_are_throttled_and_logged_without_the_key(
    sec: Harness, log_lines: io.StringIO
) -> None:
    wrong = "wrong-key-" + "9" * 30
    with TestClient(sec.app(auth_failure_limit=3, auth_failure_window_seconds=60)) as client:
        codes = [client.post("/dashboard/login", data={"api_key": wrong}).status_code
                 for _ in range(4)]
        assert codes == [401, 401, 401, 429]
        locked = client.post("/dashboard/login", data={"api_key": API_KEY},
                             follow_redirects=False)
        assert locked.status_code == 429  # even the right key, until the window ends
        assert 0 < int(locked.headers["retry-after"]) <= 60
        assert "Too many failed sign-ins" in locked.text
        sec.redis.delete(sec.settings.redis_key("auth-failures", "testclient"))
        assert client.post("/dashboard/login", data={"api_key": API_KEY},
                           follow_redirects=False).status_code == 303
    failures = [e for e in events(log_lines) if e["event"] == "dashboard.login_failed"]
    assert len(failures) == 3 and all(e["client"] == "testclient" for e in failures)
    assert any(e["event"] == "dashboard.login_throttled" for e in events(log_lines))
    assert wrong not in log_lines.getvalue() and API_KEY not in log_lines.getvalue()


def test_repeated_bad_api_keys_are_throttled_and_logged_without_the_key(
    sec: Harness, log_lines: io.StringIO
) -> None:
    wrong = {"Authorization": "Bearer " + "not-the-key-" + "0" * 30}
    good = {"Authorization": f"Bearer {API_KEY}"}
    with TestClient(sec.app(auth_failure_limit=3, auth_failure_window_seconds=60)) as client:
        assert client.get("/v1/revocations", headers=good).status_code == 200
        codes = [client.get("/v1/revocations", headers=wrong).status_code for _ in range(4)]
        assert codes == [401, 401, 401, 429]
        throttled = client.get("/v1/revocations", headers=good)
        assert throttled.status_code == 429 and int(throttled.headers["retry-after"]) > 0
    failed = [e for e in events(log_lines) if e["event"] == "api.auth_failed"]
    assert len(failed) == 3
    assert failed[0]["client"] == "testclient" and failed[0]["path"] == "/v1/revocations"
    assert "not-the-key" not in log_lines.getvalue()
