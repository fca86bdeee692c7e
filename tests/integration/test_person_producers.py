"""A person offboarding from every producer: batch file rows with a person and a scope,
the signed webhook with a scope and no targets, and REST. Real workers and the sandbox."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from worker.api import create_app
from worker.api.settings import ApiSettings
from worker.intake.batchfile import BatchFileError, parse_batch
from worker.sandbox.localstack import LocalStack

pytestmark = pytest.mark.integration

SECRET = "whsec_" + base64.b64encode(b"person producers secret, 32 b..!").decode()
API_KEY = "people-api-key-" + "3" * 20
AUTH = {"Authorization": f"Bearer {API_KEY}"}


@pytest.fixture
def client(sandbox_reset: LocalStack) -> Iterator[TestClient]:
    app = create_app(sandbox_reset.settings, producer=sandbox_reset.producer,
                     api_settings=ApiSettings(_env_file=None, webhook_secrets=SECRET,
                                              api_keys=API_KEY))  # type: ignore[call-arg]
    with TestClient(app) as test_client:
        yield test_client


def customer_with(stack: LocalStack, people: list[str]) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:6]
    customer = stack.control.create_customer(f"b.{tag}@acme.test", external_id=f"C-{tag}")
    emails = {p: f"{p}.{tag}@acme.test" for p in people}
    containers = [{"subscription_id": str(uuid.uuid4())}, {"order_id": str(uuid.uuid4())}]
    seats = stack.control.create_seats(
        [{**c, "email": e} for c in containers for e in emails.values()],
        owner_customer_id=customer["id"])
    return {"customer": customer, "emails": emails,
            "seats": {p: sorted(s["id"] for s in seats if s["email"] == e)
                      for p, e in emails.items()}}


def revoked(stack: LocalStack) -> list[str]:
    return sorted(entry["seat_id"] for entry in stack.control.revocations())


def test_batch_rows_with_a_person_and_a_scope(sandbox_reset: LocalStack) -> None:
    stack = sandbox_reset
    world = customer_with(stack, ["ada", "bob", "cy"])
    ext = world["customer"]["external_id"]
    cy_seat = next(seat for seat in map(stack.control.seat, world["seats"]["cy"])
                   if seat["subscription_id"])
    container = cy_seat["subscription_id"]
    text = ("email,customer_external_id,all_customers,reason,subscription_id\n"
            f"{world['emails']['ada']},{ext},,left,\n"
            f"{world['emails']['bob']},{ext},,left,\n"
            f"{world['emails']['ada']},{ext},,left,\n"
            f"{world['emails']['cy']},,,moved team,{container}\n")
    parsed = parse_batch(text.encode(), fmt="csv", requested_by="hr")
    assert parsed.duplicates == 1 and len(parsed.rows) == 3

    batch = stack.producer.submit_batch(parsed.requests, name="people")
    done = stack.wait_terminal(batch.request_ids, timeout=90)

    assert [r.state for r in done] == ["revoked"] * 3, [r.outcome_detail for r in done]
    assert [r.kind for r in done] == ["person", "person", "seat"]
    assert all(r.batch_id == batch.batch_id for r in done)
    assert revoked(stack) == sorted(world["seats"]["ada"] + world["seats"]["bob"]
                                    + [cy_seat["id"]])
    assert stack.producer.store.count_by_state(batch.batch_id) == {"revoked": 3}


def test_batch_refuses_rows_mixing_person_and_seat_columns() -> None:
    bad = ("email,customer_id,subscription_id,all_customers\n"
           f"a@acme.test,,{uuid.uuid4()},true\n"
           "b@acme.test,,,\n")
    with pytest.raises(BatchFileError) as caught:
        parse_batch(bad.encode(), fmt="csv")
    text = str(caught.value)
    assert "line 2: all_customers: not for a seat row" in text
    assert "line 3:" in text and "exactly one scope" in text


def deliver(client: TestClient, payload: dict[str, Any], webhook_id: str) -> Any:
    body = json.dumps(payload).encode()
    stamp = str(int(time.time()))
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    mac = hmac.new(key, f"{webhook_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    return client.post("/v1/events/offboarding", content=body, headers={
        "webhook-id": webhook_id, "webhook-timestamp": stamp,
        "webhook-signature": "v1," + base64.b64encode(mac).decode(),
        "content-type": "application/json"})


def test_webhook_with_a_person_and_a_scope_but_no_targets(
    sandbox_reset: LocalStack, client: TestClient,
) -> None:
    stack = sandbox_reset
    world = customer_with(stack, ["ada", "bob"])
    event = {"type": "employee.offboarded", "data": {
        "person": {"email": world["emails"]["ada"]},
        "scope": {"customer_id": world["customer"]["id"]}, "reason": "termination"}}
    webhook_id = f"msg_{uuid.uuid4().hex}"

    first = deliver(client, event, webhook_id)
    again = deliver(client, event, webhook_id)

    assert first.status_code == again.status_code == 202, first.text
    assert first.json()["request_ids"] == again.json()["request_ids"]
    (request_id,) = first.json()["request_ids"]
    parent = stack.wait_terminal([request_id], timeout=60)[0]
    assert parent.state == "revoked" and parent.requested_by == "webhook:offboarding"
    assert revoked(stack) == world["seats"]["ada"]

    neither = deliver(client, {"type": "employee.offboarded", "data": {
        "person": {"email": world["emails"]["bob"]}}}, f"msg_{uuid.uuid4().hex}")
    assert neither.status_code == 422 and "scope" in neither.text


def test_rest_offboards_a_person_and_reports_the_seats(
    sandbox_reset: LocalStack, client: TestClient,
) -> None:
    stack = sandbox_reset
    world = customer_with(stack, ["ada", "bob"])
    body = {"email": world["emails"]["ada"], "customer_id": world["customer"]["id"]}

    created = client.post("/v1/people", json=body, headers=AUTH)
    replay = client.post("/v1/people", json=body, headers=AUTH)
    assert created.status_code == 201 and replay.status_code == 200, created.text
    request_id = created.json()["request"]["request_id"]
    assert replay.json()["request"]["request_id"] == request_id
    stack.wait_terminal([request_id], timeout=60)

    report = client.get(f"/v1/people/{request_id}", headers=AUTH).json()
    assert report["state"] == "revoked" and report["verified"] is True
    assert sorted(s["seat_id"] for s in report["seats"]) == world["seats"]["ada"]
    assert all(s["state"] == "revoked" and s["revoked_at"] for s in report["seats"])
    assert revoked(stack) == world["seats"]["ada"]
    found = client.get("/v1/people", params={"email": world["emails"]["ada"].upper()},
                       headers=AUTH).json()
    assert [r["request_id"] for r in found] == [request_id]

    bad = client.post("/v1/people", json={"email": world["emails"]["bob"]}, headers=AUTH)
    assert bad.status_code == 422 and "exactly one scope" in bad.text
    assert client.post("/v1/people", json=body).status_code == 401


def test_dashboard_shows_one_person_with_its_seats(
    sandbox_reset: LocalStack, client: TestClient,
) -> None:
    stack = sandbox_reset
    world = customer_with(stack, ["ada", "bob"])
    created = client.post("/v1/people", headers=AUTH, json={
        "email": world["emails"]["ada"], "customer_id": world["customer"]["id"]})
    request_id = created.json()["request"]["request_id"]
    stack.wait_terminal([request_id], timeout=60)
    assert client.post("/dashboard/login", data={"api_key": API_KEY},
                       follow_redirects=False).status_code == 303

    page = client.get(f"/dashboard/people/{request_id}")
    assert page.status_code == 200, page.text
    assert world["emails"]["ada"] in page.text and "✓ verified" in page.text
    for child in stack.producer.store.children_of(request_id):
        assert child.id[:8] in page.text and child.seat_id[:8] in page.text
    search = client.get("/dashboard", params={"q": world["emails"]["ada"]})
    assert f"/dashboard/people/{request_id}" in search.text
    assert client.get(f"/dashboard/people/{uuid.uuid4()}").status_code == 404
