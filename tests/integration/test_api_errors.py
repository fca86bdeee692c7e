"""What the API answers to hostile input, over the real app, real Redis and each database
backend: lengths checked at the edge for every stored string (so PostgreSQL never refuses a
row after the seat was revoked), deeply nested and non-UTF-8 bodies, 422 bodies that never
echo a whole upload, and an unexpected error logged as one JSON event by a real
``seat-revoker api`` process, answered with a JSON 500 showing nothing of the internals."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from redis import Redis

from config.settings import Settings
from worker.api import create_app
from worker.api.settings import ApiSettings
from worker.store.models import WebhookDelivery
from worker.store.queries import list_requests
from worker.store.records import Store
from worker.telemetry.metrics import lane_queue_keys

pytestmark = pytest.mark.integration

SECRET = "whsec_" + base64.b64encode(b"errors test secret, 32 bytes...!").decode()
API_KEY = "errors-test-key-" + "2" * 20
AUTH = {"Authorization": f"Bearer {API_KEY}"}


def sign(body: bytes, webhook_id: str) -> dict[str, str]:
    stamp = int(time.time())
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    mac = hmac.new(key, f"{webhook_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    return {"webhook-id": webhook_id, "webhook-timestamp": str(stamp),
            "webhook-signature": "v1," + base64.b64encode(mac).decode(),
            "content-type": "application/json"}


class Harness:
    def __init__(self, client: TestClient, store: Store, redis: Redis, settings: Settings):
        self.client, self.store, self.redis, self.settings = client, store, redis, settings

    def nothing_enqueued(self) -> bool:
        depth = sum(self.redis.llen(key) for key in lane_queue_keys(self.settings))
        return depth == 0 and list_requests(self.store).total == 0

    def webhook(self, payload: Any, webhook_id: str | None = None) -> Any:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        webhook_id = webhook_id or f"msg_{uuid.uuid4().hex}"
        return self.client.post("/v1/events/offboarding", content=body,
                                headers=sign(body, webhook_id))


@pytest.fixture
def api(database_url: str, redis_url: str) -> Iterator[Harness]:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, database_url=database_url, redis_url=redis_url,
        namespace=f"err-{uuid.uuid4().hex[:10]}",
    )
    store = Store.from_url(database_url)
    redis = Redis.from_url(redis_url)
    app = create_app(settings, store=store, api_settings=ApiSettings(  # type: ignore[call-arg]
        _env_file=None, webhook_secrets=SECRET, api_keys=API_KEY))
    try:
        with TestClient(app) as client:
            yield Harness(client, store, redis, settings)
    finally:
        for key in redis.scan_iter(f"{settings.namespace}:*"):
            redis.delete(key)
        redis.close()
        store.engine.dispose()


def offboarded(**data: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"person": {"email": "jane@acme.com"},
                            "targets": [{"subscription_id": str(uuid.uuid4())}], **data}
    return {"type": "employee.offboarded", "data": body}


def locations(response: Any) -> list[list[str]]:
    return [list(map(str, e["loc"])) for e in response.json()["detail"]]


# -- lengths and characters the store cannot hold: 422 at the edge --------------------------


def test_an_overlong_webhook_id_is_422_and_revokes_nothing(api: Harness) -> None:
    response = api.webhook(offboarded(), webhook_id="msg_" + "x" * 197)  # 201 characters
    assert response.status_code == 422, response.text
    assert ["header", "webhook-id"] in locations(response)
    assert api.nothing_enqueued()
    ok = api.webhook(offboarded(), webhook_id="msg_" + "x" * 196)  # 200: the column's size
    assert ok.status_code == 202, ok.text
    again = api.webhook(offboarded(), webhook_id="msg_" + "x" * 196)
    assert again.status_code == 202 and again.json() == ok.json()


@pytest.mark.parametrize(
    ("person", "data", "field"),
    [
        ({"email": "j" * 310 + "@acme.com.x"}, {}, "email"),
        ({"email": "jane@acme.com", "external_id": "E" * 201}, {}, "external_id"),
        ({"email": "jane@acme.com"}, {"reason": "r" * 1001}, "reason"),
        ({"email": "jane\x00@acme.com"}, {}, "email"),
        ({"external_id": "E-\x00"}, {}, "external_id"),
        ({"email": "jane@acme.com"}, {"reason": "left\x00"}, "reason"),
    ],
)
def test_webhook_strings_the_store_cannot_hold_are_422(
    api: Harness, person: dict[str, str], data: dict[str, Any], field: str
) -> None:
    payload = offboarded(**data)
    payload["data"]["person"] = person
    response = api.webhook(payload)
    assert response.status_code == 422, response.text
    assert any(field in loc for loc in locations(response))
    assert api.nothing_enqueued()


@pytest.mark.parametrize(
    ("body", "headers", "field"),
    [
        ({"external_id": "E" * 201}, {}, "external_id"),
        ({"email": "j" * 320 + "@acme.com"}, {}, "email"),
        ({"reason": "r" * 2001}, {}, "reason"),
        ({"key": "k" * 201}, {}, "key"),
        ({}, {"Idempotency-Key": "k" * 201}, "Idempotency-Key"),
        ({"reason": "left\x00"}, {}, "reason"),
        ({"external_id": "E-\x00"}, {}, "external_id"),
    ],
)
def test_rest_strings_the_store_cannot_hold_are_422(
    api: Harness, body: dict[str, Any], headers: dict[str, str], field: str
) -> None:
    payload = {"subscription_id": str(uuid.uuid4()), "email": "jane@acme.com", **body}
    response = api.client.post("/v1/revocations", json=payload, headers={**AUTH, **headers})
    assert response.status_code == 422, response.text
    assert any(field in loc for loc in locations(response))
    assert api.nothing_enqueued()


@pytest.mark.parametrize(
    ("row", "params", "needle"),
    [
        ({"external_id": "E" * 201}, {}, "external_id"),
        ({"key": "k" * 201}, {}, "key"),
        ({"reason": "left\x00"}, {}, "NUL"),
        ({}, {"name": "n" * 201}, "name"),
    ],
)
def test_batch_strings_the_store_cannot_hold_are_422(
    api: Harness, row: dict[str, Any], params: dict[str, str], needle: str
) -> None:
    rows = [{"subscription_id": str(uuid.uuid4()), "email": "jane@acme.com", **row}]
    response = api.client.post("/v1/batches", json=rows, params=params, headers=AUTH)
    assert response.status_code == 422, response.text
    assert needle in response.text
    assert api.nothing_enqueued()


# -- hostile bodies -------------------------------------------------------------------------

DEEP = b"[" * 100_000 + b"]" * 100_000


def test_deeply_nested_json_is_422_not_500(api: Harness) -> None:
    webhook = api.webhook(DEEP)
    assert webhook.status_code == 422, webhook.text
    assert "nested too deeply" in webhook.text
    nested_object = b'{"type": "employee.offboarded", "data": ' + DEEP + b"}"
    assert api.webhook(nested_object).status_code == 422
    batch = api.client.post("/v1/batches", content=DEEP,
                            headers={**AUTH, "content-type": "application/json"})
    assert batch.status_code == 422, batch.text
    assert "nested too deeply" in batch.text
    lines = api.client.post("/v1/batches", content=b'{"seat_id": ' + DEEP + b"}",
                            headers={**AUTH, "content-type": "application/x-ndjson"})
    assert lines.status_code == 422, lines.text
    assert api.nothing_enqueued()


def test_a_signed_body_that_is_not_utf8_is_422_and_a_forged_one_401(api: Harness) -> None:
    body = b'{"type": "employee.offboarded", "data": "\xff\xfe"}'
    signed = api.client.post("/v1/events/offboarding", content=body,
                             headers=sign(body, "msg_latin1"))
    assert signed.status_code == 422, signed.text
    assert "UTF-8" in signed.text
    forged = sign(b"something else", "msg_latin1")
    unsigned = api.client.post("/v1/events/offboarding", content=body, headers=forged)
    assert unsigned.status_code == 401
    assert api.nothing_enqueued()


def test_422_bodies_echo_at_most_a_few_hundred_characters(api: Harness) -> None:
    huge = "x" * 300_000
    single = api.client.post("/v1/revocations", json={"seat_id": huge}, headers=AUTH)
    assert single.status_code == 422 and len(single.content) < 2_000, len(single.content)
    extra = api.client.post("/v1/revocations", json={huge: 1, "seat_id": str(uuid.uuid4())},
                            headers=AUTH)
    assert extra.status_code == 422 and len(extra.content) < 2_000, len(extra.content)
    nested = api.client.post("/v1/revocations",
                             json={"seat_id": [[[["y" * 1000] * 100] * 10]]}, headers=AUTH)
    assert nested.status_code == 422 and len(nested.content) < 2_000, len(nested.content)
    csv_body = ("seat_id,reason\n" + "\n".join(f"{'z' * 20_000},r" for _ in range(200))).encode()
    batch = api.client.post("/v1/batches", content=csv_body,
                            headers={**AUTH, "content-type": "text/csv"})
    assert batch.status_code == 422
    assert len(batch.content) < 100_000, len(batch.content)  # 200 lines, clipped each
    assert len(batch.json()["errors"]) == 200
    assert api.nothing_enqueued()


def test_a_reused_webhook_id_with_another_body_is_409(api: Harness) -> None:
    first = api.webhook(offboarded(), webhook_id="msg_reused")
    assert first.status_code == 202
    # The delivery row is missing, as after a crash between the requests and the row.
    with api.store.session() as session:
        row = session.get(WebhookDelivery, "msg_reused")
        assert row is not None
        session.delete(row)
    other = api.webhook(offboarded(), webhook_id="msg_reused")  # another subscription
    assert other.status_code == 409, other.text
    assert "subscription_id" in other.json()["detail"]
    assert list_requests(api.store).total == 1


# -- an unexpected error in a real `seat-revoker api` process -------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_unhandled_error_is_one_json_log_event_and_a_json_500(
    redis_url: str, tmp_path: Path
) -> None:
    database = tmp_path / "store.db"
    namespace = f"err500-{uuid.uuid4().hex[:8]}"
    port = _free_port()
    names = {name.upper() for name in Settings.model_fields}
    env = {k: v for k, v in os.environ.items() if k.upper() not in names}
    env.update(DATABASE_URL=f"sqlite:///{database}", REDIS_URL=redis_url, NAMESPACE=namespace,
               API_KEYS=API_KEY, LOG_FORMAT="json", LOG_LEVEL="INFO")
    stderr = tmp_path / "api.log"
    with stderr.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "worker.cli.main", "api", "--port", str(port)],
            cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=log_file,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, stderr.read_text()
            assert time.monotonic() < deadline, "the API did not start"
            time.sleep(0.1)
        with sqlite3.connect(database) as connection:  # the store breaks under the API
            connection.execute("ALTER TABLE batches RENAME TO batches_gone")
        response = httpx.get(f"{url}/v1/batches", headers=AUTH, timeout=10)
    finally:
        process.terminate()
        process.wait(timeout=20)
        redis = Redis.from_url(redis_url)
        for key in redis.scan_iter(f"{namespace}:*"):
            redis.delete(key)
        redis.close()

    assert response.status_code == 500
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["detail"] == "internal server error" and set(body) == {"detail", "error_id"}
    assert "batches" not in response.text and "sqlite" not in response.text.lower()
    lines = [line for line in stderr.read_text().splitlines() if line.strip()]
    parsed = [json.loads(line) for line in lines]  # every line is one JSON event
    (event,) = [e for e in parsed if e.get("event") == "api.unhandled_error"]
    assert event["error_id"] == body["error_id"] and event["path"] == "/v1/batches"
    assert event["level"] == "error" and "OperationalError" in event["exception"]
    assert "Traceback" in event["exception"]
