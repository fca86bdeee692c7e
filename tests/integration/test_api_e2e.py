"""Webhook → request → worker process → sandbox over HTTP → store, read back through the
read API and /metrics. One module-scoped stack (sandbox + worker) per database backend."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from worker.api import create_app
from worker.api.settings import ApiSettings
from worker.sandbox.localstack import LocalStack

pytestmark = pytest.mark.integration

SECRET = "whsec_" + base64.b64encode(b"end to end secret, 32 bytes....!").decode()
API_KEY = "e2e-api-key-" + "2" * 20
AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture
def client(sandbox_reset: LocalStack) -> Iterator[TestClient]:
    stack = sandbox_reset
    app = create_app(stack.settings, producer=stack.producer, api_settings=ApiSettings(
        _env_file=None, webhook_secrets=SECRET, api_keys=API_KEY))  # type: ignore[call-arg]
    with TestClient(app) as test_client:
        yield test_client


def deliver(client: TestClient, payload: dict[str, object], webhook_id: str) -> dict[str, object]:
    body = json.dumps(payload).encode()
    stamp = str(int(time.time()))
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    mac = hmac.new(key, f"{webhook_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    response = client.post("/v1/events/offboarding", content=body, headers={
        "webhook-id": webhook_id, "webhook-timestamp": stamp,
        "webhook-signature": "v1," + base64.b64encode(mac).decode(),
        "content-type": "application/json"})
    assert response.status_code == 202, response.text
    answer: dict[str, object] = response.json()
    return answer


def test_offboarding_event_revokes_the_persons_seats(
    sandbox_reset: LocalStack, client: TestClient
) -> None:
    stack = sandbox_reset
    email = f"{uuid.uuid4().hex[:8]}@acme.test"
    sub_a, sub_b, sub_c = (str(uuid.uuid4()) for _ in range(3))
    seats = stack.control.create_seats([
        {"subscription_id": sub_a, "status": "claimed", "email": email, "external_id": "E-7"},
        {"subscription_id": sub_b, "status": "claimed", "email": email, "external_id": "E-7"},
        {"subscription_id": sub_c, "status": "claimed", "email": "someone.else@acme.test"},
        {"subscription_id": sub_c, "status": "claimed", "email": "third@acme.test"},
    ])
    payload = {"type": "employee.offboarded", "data": {
        "person": {"email": email, "external_id": "E-7"},
        "targets": [
            {"seat_id": seats[0]["id"], "subscription_id": sub_a},  # guarded seat
            {"subscription_id": sub_b},  # resolve the person's seat
            {"seat_id": seats[2]["id"], "subscription_id": sub_c},  # someone else's seat
            {"seat_id": seats[3]["id"], "guard": False},  # seat id only, opted out of the guard
        ],
        "reason": "termination"}}
    answer = deliver(client, payload, f"msg_{uuid.uuid4().hex}")
    request_ids = list(answer["request_ids"])  # type: ignore[call-overload]
    try:
        records = stack.wait_terminal(request_ids, timeout=60)
    except TimeoutError:
        for rid in request_ids:
            rec = stack.store.get(rid)
            print(rid, rec and rec.state, rec and rec.last_error, rec and rec.seat_id)
        print(stack.logs()[-6000:])
        raise
    assert [r.state for r in records] == [
        "revoked", "revoked", "occupant_mismatch", "revoked"]
    assert stack.control.seat(seats[0]["id"])["status"] == "revoked"
    assert stack.control.seat(seats[1]["id"])["status"] == "revoked"
    assert stack.control.seat(seats[2]["id"])["status"] == "claimed"

    # Read back through the API: the person is on every request, the unguarded one says so.
    listed = client.get("/v1/revocations", params={"email": email}, headers=AUTH).json()
    assert {item["id"] for item in listed["items"]} == set(request_ids)
    assert [item["guarded"] for item in sorted(
        listed["items"], key=lambda item: request_ids.index(item["id"]))] == [
        True, True, True, False]
    one = client.get(f"/v1/revocations/{request_ids[1]}", headers=AUTH).json()
    assert one["seat_snapshot"]["id"] == seats[1]["id"]
    assert [h["state"] for h in one["history"]][-1] == "revoked"

    # Redelivery after the work is done: same answer, nothing new sent to Polar.
    deletes = stack.control.stats()["deletes_by_seat"]
    again = deliver(client, payload, str(answer["webhook_id"]))
    assert again == answer
    time.sleep(0.5)
    assert stack.control.stats()["deletes_by_seat"] == deletes

    # /metrics counts outcomes from the store and the (now empty) queue.
    text = client.get("/metrics").text
    assert re.search(r'^seat_revoker_requests_in_state\{state="revoked"\} ([3-9]|[1-9]\d+)\.',
                     text, re.M)
    assert re.search(r"^seat_revoker_queue_depth 0\.0$", text, re.M)
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {
        "redis": "ok", "queue": "ok", "database": "ok"}
