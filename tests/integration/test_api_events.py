"""POST /v1/events/offboarding over the real app, real Redis and each database backend.

Signatures are computed here with hmac/hashlib/base64. "Nothing enqueued" is checked
where it matters: no rows in the store and no messages in the Celery queue (LLEN).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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

SECRET = "whsec_" + base64.b64encode(b"events test secret, 32 bytes...!").decode()
OLD_SECRET = "whsec_" + base64.b64encode(b"the previous secret, rotated...!").decode()
API_KEY = "test-api-key-" + "0" * 20


def sign(body: bytes, webhook_id: str, *, secret: str = SECRET,
         timestamp: int | None = None) -> dict[str, str]:
    stamp = int(time.time()) if timestamp is None else timestamp
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{webhook_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    return {"webhook-id": webhook_id, "webhook-timestamp": str(stamp),
            "webhook-signature": "v1," + base64.b64encode(mac).decode(),
            "content-type": "application/json"}


class Harness:
    def __init__(self, client: TestClient, store: Store, redis: Redis, settings: Settings):
        self.client, self.store, self.redis, self.settings = client, store, redis, settings

    def queue_depth(self) -> int:
        return sum(int(self.redis.llen(key)) for key in lane_queue_keys(self.settings))

    def request_count(self) -> int:
        return list_requests(self.store).total

    def post(self, payload: Any, webhook_id: str | None = None, **sign_kwargs: Any) -> Any:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        webhook_id = webhook_id or f"msg_{uuid.uuid4().hex}"
        return self.client.post("/v1/events/offboarding", content=body,
                                headers=sign(body, webhook_id, **sign_kwargs))


@pytest.fixture
def api(database_url: str, redis_url: str, tmp_path: Path) -> Iterator[Harness]:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, database_url=database_url, redis_url=redis_url,
        namespace=f"api-{uuid.uuid4().hex[:10]}",
    )
    api_settings = ApiSettings(  # type: ignore[call-arg]
        _env_file=None, webhook_secrets=f"{SECRET},{OLD_SECRET}", api_keys=API_KEY,
    )
    store = Store.from_url(database_url)
    redis = Redis.from_url(redis_url)
    app = create_app(settings, store=store, api_settings=api_settings)
    try:
        with TestClient(app) as client:
            yield Harness(client, store, redis, settings)
    finally:
        for key in redis.scan_iter(f"{settings.namespace}:*"):
            redis.delete(key)
        redis.close()
        store.engine.dispose()


def offboarded(*targets: dict[str, Any], **data: Any) -> dict[str, Any]:
    return {"type": "employee.offboarded",
            "data": {"person": {"email": "jane@acme.com", "external_id": "E-1042"},
                     "targets": list(targets), "reason": "termination", **data}}


def test_signed_event_is_accepted_and_enqueued(api: Harness) -> None:
    seat, sub, order = (str(uuid.uuid4()) for _ in range(3))
    unguarded = str(uuid.uuid4())
    response = api.post(
        offboarded({"seat_id": seat, "subscription_id": sub}, {"order_id": order},
                   {"seat_id": unguarded, "guard": False}),
        webhook_id="msg_accept",
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["webhook_id"] == "msg_accept" and len(body["request_ids"]) == 3
    assert api.queue_depth() == 3
    first = api.store.get(body["request_ids"][0])
    assert first is not None
    assert (first.seat_id, first.subscription_id, first.occupant_email) == (
        seat, sub, "jane@acme.com")
    assert first.requested_by == "webhook:offboarding" and first.state == "queued"
    by_order = api.store.get(body["request_ids"][1])
    assert by_order is not None and by_order.order_id == order and by_order.seat_id is None
    assert first.guarded is True and by_order.guarded is True
    bare = api.store.get(body["request_ids"][2])
    assert bare is not None and (bare.seat_id, bare.guarded) == (unguarded, False)
    # The person the event named is kept on the record, even without a subscription/order.
    assert (bare.occupant_email, bare.occupant_external_id) == ("jane@acme.com", "E-1042")


def test_rotated_secret_is_accepted(api: Harness) -> None:
    response = api.post(offboarded({"subscription_id": str(uuid.uuid4())}), secret=OLD_SECRET)
    assert response.status_code == 202


def test_redelivery_gets_the_same_answer_and_enqueues_nothing(api: Harness) -> None:
    payload = offboarded({"subscription_id": str(uuid.uuid4())},
                         {"seat_id": str(uuid.uuid4()), "guard": False})
    first = api.post(payload, webhook_id="msg_replay")
    assert first.status_code == 202
    depth, count = api.queue_depth(), api.request_count()
    # Replayed byte for byte (same signature), and re-signed later as a sender's retry does.
    body = json.dumps(payload).encode()
    headers = sign(body, "msg_replay")
    for _ in range(2):
        again = api.client.post("/v1/events/offboarding", content=body, headers=headers)
        assert (again.status_code, again.json()) == (202, first.json())
    later = api.post(payload, webhook_id="msg_replay", timestamp=int(time.time()) + 30)
    assert (later.status_code, later.json()) == (202, first.json())
    assert (api.queue_depth(), api.request_count()) == (depth, count)


def test_concurrent_deliveries_of_one_id_create_one_set_of_requests(api: Harness) -> None:
    payload = offboarded(*({"subscription_id": str(uuid.uuid4())} for _ in range(5)))
    answers: list[Any] = []

    def deliver() -> None:
        answers.append(api.post(payload, webhook_id="msg_race"))

    threads = [threading.Thread(target=deliver) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {a.status_code for a in answers} == {202}
    assert len({json.dumps(a.json(), sort_keys=True) for a in answers}) == 1
    assert api.request_count() == 5 and api.queue_depth() == 5
    with api.store.session() as session:
        assert session.get(WebhookDelivery, "msg_race") is not None


@pytest.mark.parametrize(
    "mutate",
    [
        lambda h: {**h, "webhook-signature": "v1," + base64.b64encode(b"x" * 32).decode()},
        lambda h: {**h, "webhook-id": "msg_other"},
        lambda h: {k: v for k, v in h.items() if k != "webhook-signature"},
        lambda h: {**h, "webhook-timestamp": "soon"},
    ],
    ids=["forged", "id swapped", "unsigned", "bad timestamp"],
)
def test_bad_signatures_get_401_and_enqueue_nothing(api: Harness, mutate: Any) -> None:
    body = json.dumps(offboarded({"subscription_id": str(uuid.uuid4())})).encode()
    response = api.client.post("/v1/events/offboarding", content=body,
                               headers=mutate(sign(body, "msg_bad")))
    assert response.status_code == 401
    assert (api.queue_depth(), api.request_count()) == (0, 0)


def test_wrong_secret_gets_401(api: Harness) -> None:
    other = "whsec_" + base64.b64encode(b"an attacker's guess at a secret!").decode()
    response = api.post(offboarded({"subscription_id": str(uuid.uuid4())}), secret=other)
    assert response.status_code == 401
    assert api.request_count() == 0


@pytest.mark.parametrize("age", [-600, 301, 3600])
def test_stale_or_future_timestamp_gets_401(api: Harness, age: int) -> None:
    response = api.post(offboarded({"subscription_id": str(uuid.uuid4())}),
                        timestamp=int(time.time()) - age)
    assert response.status_code == 401
    assert "tolerance" in response.json()["detail"]
    assert (api.queue_depth(), api.request_count()) == (0, 0)


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (b"{not json", "body"),
        (b"[]", "body"),
        ({"data": {}}, "type"),
        ({"type": "employee.offboarded"}, "data"),
        ({"type": "employee.offboarded", "data": {"targets": [{"seat_id": str(uuid.uuid4())}]}},
         "person"),
        (offboarded(), "targets"),
        (offboarded({"seat_id": "seat-1"}), "seat_id"),
        (offboarded({"subscription_id": str(uuid.uuid4()), "order_id": str(uuid.uuid4())}),
         "targets"),
        (offboarded({"subscription_id": str(uuid.uuid4())}, effective_at="tomorrow"),
         "effective_at"),
        ({"type": "employee.offboarded",
          "data": {"person": {"email": "not-an-email"},
                   "targets": [{"subscription_id": str(uuid.uuid4())}]}}, "email"),
    ],
)
def test_malformed_body_gets_422_naming_the_field(
    api: Harness, payload: Any, field: str
) -> None:
    response = api.post(payload)
    assert response.status_code == 422, response.text
    locations = [list(map(str, e["loc"])) for e in response.json()["detail"]]
    assert any(field in loc for loc in locations), locations
    assert (api.queue_depth(), api.request_count()) == (0, 0)


def test_a_bad_target_rejects_the_whole_event(api: Harness) -> None:
    response = api.post(offboarded({"subscription_id": str(uuid.uuid4())}, {"seat_id": "nope"}))
    assert response.status_code == 422
    assert ["body", "data", "targets", "1", "seat_id"] in [
        list(map(str, e["loc"])) for e in response.json()["detail"]]
    assert (api.queue_depth(), api.request_count()) == (0, 0)


def test_a_bare_seat_nobody_can_guard_rejects_the_whole_event(api: Harness) -> None:
    payload = offboarded({"subscription_id": str(uuid.uuid4())}, {"seat_id": str(uuid.uuid4())})
    response = api.post(payload, webhook_id="msg_unguardable")
    assert response.status_code == 422, response.text
    messages = [e["msg"] for e in response.json()["detail"]]
    assert any("add subscription_id or order_id" in m and "guard" in m for m in messages)
    assert (api.queue_depth(), api.request_count()) == (0, 0)
    with api.store.session() as session:  # not recorded: a corrected redelivery is accepted
        assert session.get(WebhookDelivery, "msg_unguardable") is None
    payload["data"]["targets"][1]["guard"] = False
    fixed = api.post(payload, webhook_id="msg_unguardable")
    assert fixed.status_code == 202 and len(fixed.json()["request_ids"]) == 2


def test_other_event_types_are_acknowledged_and_ignored(api: Harness) -> None:
    response = api.post({"type": "employee.hired", "data": {"anything": True}})
    assert (response.status_code, response.json()) == (
        202, {"ignored": True, "type": "employee.hired"})
    assert (api.queue_depth(), api.request_count()) == (0, 0)
