"""The transports under ``PolarClient`` (``worker.polar.transport``) and its ``BearerAuth``:
what the metrics observer is told, what the throttle sees, and that the token stays in the
Authorization header only."""

from __future__ import annotations

import json

import httpx
import pytest
from pydantic import SecretStr

from worker.polar.auth import BUCKET, BearerAuth, token_bucket
from worker.polar.client import PolarClient
from worker.polar.errors import PolarHTTPError, PolarTransportError
from worker.polar.transport import build_http_client

TOKEN = "polar_oat_TopSecretOrgToken123"
SEAT = {"id": "s1", "status": "revoked", "created_at": "2026-01-01T00:00:00Z"}


class Observed:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int | None]] = []

    def polar_request(self, method: str, status: int | None, seconds: float) -> None:
        assert seconds >= 0
        self.calls.append((method, status))


class Waits(Exception):
    pass


class Gate:
    def __init__(self, refuse: bool = False) -> None:
        self.refuse = refuse
        self.log: list[tuple[str, str]] = []

    def acquire(self, bucket: str) -> None:
        self.log.append(("acquire", bucket))
        if self.refuse:
            raise Waits

    def penalize(self, bucket: str, seconds: float) -> None:
        self.log.append(("penalize", f"{bucket}:{seconds:g}"))


def client(handler: httpx.MockTransport, **options: object) -> PolarClient:
    http = build_http_client("https://polar.test", connect_timeout=1, read_timeout=1,
                             transport=handler, **options)  # type: ignore[arg-type]
    return PolarClient(http, SecretStr(TOKEN))


def test_the_observer_hears_each_call_once_with_its_status_or_none() -> None:
    answers = iter([httpx.Response(200, json=SEAT), httpx.Response(404, json={}),
                    httpx.Response(429, headers={"retry-after": "60"})])
    observed = Observed()
    polar = client(httpx.MockTransport(lambda request: next(answers)), observer=observed)
    polar.revoke_seat("s1")
    for _ in range(2):
        with pytest.raises(PolarHTTPError):
            polar.revoke_seat("s1")

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    broken = client(httpx.MockTransport(refuse), observer=observed)
    with pytest.raises(PolarTransportError):
        broken.list_seats(order_id="o")
    assert observed.calls == [("DELETE", 200), ("DELETE", 404), ("DELETE", 429), ("GET", None)]


def test_a_body_cut_at_the_deadline_is_observed_as_no_answer() -> None:
    class Slow(httpx.SyncByteStream):
        def __iter__(self):  # type: ignore[no-untyped-def]
            import time

            for byte in json.dumps(SEAT).encode():
                time.sleep(0.01)
                yield bytes([byte])

    observed = Observed()
    polar = client(httpx.MockTransport(lambda request: httpx.Response(200, stream=Slow())),
                   observer=observed, total_timeout=0.1)
    with pytest.raises(PolarTransportError, match="in all"):
        polar.revoke_seat("s1")
    assert observed.calls == [("DELETE", None)]


def test_the_throttle_gets_the_bucket_and_a_refused_slot_sends_nothing() -> None:
    sent: list[httpx.Request] = []
    observed = Observed()

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(429)

    gate = Gate()
    polar = client(httpx.MockTransport(answer), throttle=gate, observer=observed)
    with pytest.raises(PolarHTTPError):
        polar.revoke_seat("s1")
    bucket = token_bucket(SecretStr(TOKEN))
    assert gate.log == [("acquire", bucket), ("penalize", f"{bucket}:1")]
    assert sent[0].extensions[BUCKET] == bucket
    gate.refuse = True
    with pytest.raises(Waits):
        polar.revoke_seat("s1")
    assert len(sent) == 1
    assert observed.calls == [("DELETE", 429)]  # a throttled call is not a Polar call


def test_bearer_auth_never_shows_its_token() -> None:
    auth = BearerAuth(SecretStr(TOKEN))
    polar = client(httpx.MockTransport(lambda request: httpx.Response(200, json=SEAT)))
    for text in (repr(auth), str(auth), repr(vars(auth)), repr(polar), repr(vars(polar))):
        assert TOKEN not in text
    assert auth.redact({"echo": f"Bearer {TOKEN}"}) == {"echo": "Bearer ***"}


def test_an_egress_proxy_from_the_environment_is_used_behind_the_same_wrappers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """HTTP(S)_PROXY applies as it would to a plain httpx client (a deployment's egress
    proxy), and calls through it are still throttled and observed. Also guards the httpx
    helper that reads the environment (``worker.polar.transport``) across httpx upgrades."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    seen: list[str] = []

    class Proxy(BaseHTTPRequestHandler):
        def do_DELETE(self) -> None:
            seen.append(self.path)  # a proxy is sent the absolute URL
            body = json.dumps(SEAT).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Proxy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{server.server_port}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        observed, gate = Observed(), Gate()
        http = build_http_client("http://polar.invalid", connect_timeout=2, read_timeout=2,
                                 observer=observed, throttle=gate)
        PolarClient(http, SecretStr(TOKEN)).revoke_seat("s1")
    finally:
        server.shutdown()
    assert seen == ["http://polar.invalid/v1/customer-seats/s1"]
    assert observed.calls == [("DELETE", 200)]
    assert [step for step, _ in gate.log] == ["acquire"]
