"""REST API over the real app, real Redis and each database backend: auth, submit,
read, list with filters and pagination (cursor and offset), batches, retry."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from redis import Redis
from sqlalchemy import update

from config.settings import Settings
from worker.api import create_app
from worker.api.settings import ApiSettings
from worker.intake.producer import Producer
from worker.store.models import RevocationRequest
from worker.store.records import Store
from worker.telemetry.metrics import lane_queue_keys

pytestmark = pytest.mark.integration

API_KEY = "rest-test-key-" + "1" * 20
AUTH = {"Authorization": f"Bearer {API_KEY}"}


class Harness:
    def __init__(self, client: TestClient, store: Store, redis: Redis, settings: Settings):
        self.client, self.store, self.redis, self.settings = client, store, redis, settings

    def get(self, path: str, **params: Any) -> Any:
        response = self.client.get(path, params=params, headers=AUTH)
        assert response.status_code == 200, response.text
        return response.json()

    def seed(self, n: int, *, batch: dict[str, Any] | None = None, state: str = "queued",
             email: str | None = None, start: datetime | None = None) -> list[str]:
        """``n`` stored requests (not enqueued), one minute apart from ``start``."""
        rows = [
            {"id": str(uuid.uuid4()), "idempotency_key": f"seed:{uuid.uuid4()}",
             "seat_id": str(uuid.uuid4()), "state": state, "occupant_email": email,
             "batch_id": batch["id"] if batch else None}
            for _ in range(n)
        ]
        self.store.add_requests(rows, batch=batch)
        start = start or datetime.now(UTC)
        with self.store.session() as session:
            for i, row in enumerate(rows):
                session.execute(update(RevocationRequest)
                                .where(RevocationRequest.id == row["id"])
                                .values(created_at=start + timedelta(minutes=i)))
        return [row["id"] for row in rows]


@pytest.fixture
def api(database_url: str, redis_url: str, tmp_path: Path) -> Iterator[Harness]:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, database_url=database_url, redis_url=redis_url,
        namespace=f"api-{uuid.uuid4().hex[:10]}",
    )
    store = Store.from_url(database_url)
    redis = Redis.from_url(redis_url)
    producer = Producer(settings, store=store)
    app = create_app(settings, producer=producer,
                     api_settings=ApiSettings(_env_file=None, api_keys=API_KEY))  # type: ignore[call-arg]
    try:
        with TestClient(app) as client:
            yield Harness(client, store, redis, settings)
    finally:
        for key in redis.scan_iter(f"{settings.namespace}:*"):
            redis.delete(key)
        redis.close()
        producer.close()


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-key-000000000000"}, {"Authorization": f"Basic {API_KEY}"}],
    ids=["none", "wrong", "not bearer"],
)
@pytest.mark.parametrize("path", ["/v1/revocations", "/v1/batches", "/v1/revocations/x"])
def test_rest_needs_a_valid_api_key(api: Harness, headers: dict[str, str], path: str) -> None:
    response = api.client.get(path, headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


def test_submit_creates_then_deduplicates_by_idempotency_key(api: Harness) -> None:
    body = {"seat_id": str(uuid.uuid4()), "reason": "left", "guard": False}
    first = api.client.post("/v1/revocations", json=body,
                            headers={**AUTH, "Idempotency-Key": "hr-1042"})
    assert first.status_code == 201, first.text
    record = first.json()["request"]
    assert first.json()["created"] is True
    assert (record["idempotency_key"], record["state"]) == ("hr-1042", "queued")
    assert record["guarded"] is False and record["requested_seat_id"] is None
    assert (record["outcome_detail"], record["end_state_verified"]) == (None, None)
    assert record["requested_by"].startswith("api:")
    # A single request goes to the urgent lane (kombu's global_keyprefix: namespace + ":").
    assert api.redis.llen(f"{api.settings.namespace}:{api.settings.urgent_queue_name}") == 1
    assert queue_depth(api) == 1
    again = api.client.post("/v1/revocations", json=body,
                            headers={**AUTH, "Idempotency-Key": "hr-1042"})
    assert again.status_code == 200
    assert again.json() == {"created": False, "request": record}
    assert queue_depth(api) == 1
    read = api.get(f"/v1/revocations/{record['id']}")
    assert read["id"] == record["id"] and [h["state"] for h in read["history"]] == ["queued"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"seat_id": "nope"}, "seat_id"),
        ({"subscription_id": str(uuid.uuid4())}, "body"),  # no person: model-level error
        ({"seat_id": str(uuid.uuid4()), "email": "jane@acme.com"}, "body"),  # unguardable
        ({"seat_id": str(uuid.uuid4()), "colour": "red"}, "colour"),
        ({"seat_id": str(uuid.uuid4()), "guard": "sometimes"}, "guard"),
    ],
)
def test_submit_rejects_invalid_requests_naming_the_field(
    api: Harness, body: dict[str, Any], field: str
) -> None:
    response = api.client.post("/v1/revocations", json=body, headers=AUTH)
    assert response.status_code == 422
    assert any(field in map(str, e["loc"]) for e in response.json()["detail"])
    assert api.get("/v1/revocations")["total"] == 0


def test_a_bare_seat_id_nobody_knows_is_refused_unless_unguarded(api: Harness) -> None:
    seat = str(uuid.uuid4())
    refused = api.client.post("/v1/revocations", json={"seat_id": seat}, headers=AUTH)
    assert refused.status_code == 422
    (error,) = refused.json()["detail"]
    assert error["loc"] == ["body"] and "add subscription_id or order_id" in error["msg"]
    assert api.get("/v1/revocations")["total"] == 0 and queue_depth(api) == 0
    accepted = api.client.post("/v1/revocations", json={"seat_id": seat, "guard": False},
                               headers=AUTH)
    assert accepted.status_code == 201 and accepted.json()["request"]["guarded"] is False


def test_needs_review_is_listed_filtered_and_retried(api: Harness) -> None:
    review, failed, revoked = (api.seed(1)[0] for _ in range(3))
    api.store.update(review, state="needs_review", outcome_detail="two seats match jane")
    api.store.update(failed, state="failed", last_error="404 ResourceNotFound")
    api.store.update(revoked, state="revoked", requested_seat_id=str(uuid.uuid4()),
                     end_state_verified=True, verified_at=datetime.now(UTC))

    def ids(**params: Any) -> set[str]:
        return {item["id"] for item in api.get("/v1/revocations", **params)["items"]}

    assert ids(state="needs_review") == {review}
    assert ids(state="attention") == {review, failed}
    assert ids(state="success") == {revoked}
    shown = api.get(f"/v1/revocations/{revoked}")
    assert shown["end_state_verified"] is True and shown["verified_at"]
    assert shown["requested_seat_id"] and shown["guarded"] is True
    detail = api.get(f"/v1/revocations/{review}")
    assert (detail["state"], detail["outcome_detail"]) == ("needs_review", "two seats match jane")

    retried = api.client.post(f"/v1/revocations/{review}/retry", headers=AUTH)
    assert retried.status_code == 202, retried.text
    assert retried.json()["state"] == "queued" and queue_depth(api) == 1
    not_now = api.client.post(f"/v1/revocations/{revoked}/retry", headers=AUTH)
    assert not_now.status_code == 409 and "needs_review" in not_now.json()["detail"]


def test_unknown_request_is_404(api: Harness) -> None:
    assert api.client.get("/v1/revocations/nope", headers=AUTH).status_code == 404
    assert api.client.post("/v1/revocations/nope/retry", headers=AUTH).status_code == 404


def test_list_pages_through_everything_by_cursor_and_by_offset(api: Harness) -> None:
    ids = api.seed(23)
    newest_first = list(reversed(ids))
    seen: list[str] = []
    cursor: str | None = None
    while True:
        page = api.get("/v1/revocations", limit=5, **({"cursor": cursor} if cursor else {}))
        assert page["total"] == 23
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == newest_first
    by_offset: list[str] = []
    offset: int | None = 0
    while offset is not None:
        page = api.get("/v1/revocations", limit=7, offset=offset)
        by_offset += [item["id"] for item in page["items"]]
        offset = page["next_offset"]
    assert by_offset == newest_first


def test_cursor_is_stable_when_new_requests_arrive(api: Harness) -> None:
    start = datetime.now(UTC) - timedelta(hours=1)
    ids = api.seed(6, start=start)
    page = api.get("/v1/revocations", limit=3)
    api.seed(4)  # newer than everything
    rest = api.get("/v1/revocations", limit=10, cursor=page["next_cursor"])
    assert [i["id"] for i in page["items"] + rest["items"]] == list(reversed(ids))


def test_filters(api: Harness) -> None:
    start = datetime(2030, 1, 1, tzinfo=UTC)
    batch = {"id": str(uuid.uuid4()), "name": "leavers", "total": 3}
    in_batch = api.seed(3, batch=batch, start=start)
    failed = api.seed(2, state="failed", email="Jane@Acme.com", start=start + timedelta(days=1))
    revoked = api.seed(1, state="revoked", start=start + timedelta(days=2))

    def ids(**params: Any) -> set[str]:
        return {item["id"] for item in api.get("/v1/revocations", **params)["items"]}

    assert ids(batch_id=batch["id"]) == set(in_batch)
    assert ids(state="failed") == set(failed)
    assert ids(state=["failed", "revoked"]) == set(failed + revoked)
    assert ids(state="terminal") == set(failed + revoked)
    assert ids(state="in_flight") == set(in_batch)
    assert ids(email="jane@acme.com") == set(failed)
    seat = api.store.get(revoked[0])
    assert seat is not None
    assert ids(seat_id=seat.seat_id) == set(revoked)
    assert ids(created_from="2030-01-01T12:00:00Z") == set(failed + revoked)
    assert ids(created_from="2030-01-01T12:00:00Z", created_to="2030-01-02T12:00:00Z") == set(
        failed)
    assert ids(state="failed", email="nobody@acme.com") == set()


@pytest.mark.parametrize(
    "params",
    [{"state": "exploded"}, {"cursor": "garbage"}, {"limit": 0}, {"limit": 501},
     {"created_from": "2030-01-01T00:00:00"}, {"cursor": "WyIxIiwgMV0", "offset": 1}],
)
def test_bad_list_parameters_are_422(api: Harness, params: dict[str, Any]) -> None:
    assert api.client.get("/v1/revocations", params=params, headers=AUTH).status_code == 422


def test_batches_list_and_progress(api: Harness) -> None:
    batch = {"id": str(uuid.uuid4()), "name": "march leavers", "total": 4}
    ids = api.seed(4, batch=batch)
    api.store.update(ids[0], state="revoked")
    api.store.update(ids[1], state="failed", last_error="403 FeatureNotEnabled")
    api.store.update(ids[2], state="needs_review", outcome_detail="check the email")
    listed = api.get("/v1/batches")
    assert listed["total"] == 1
    (item,) = listed["items"]
    assert item["id"] == batch["id"] and item["name"] == "march leavers"
    assert item["counts"] == {"queued": 1, "revoked": 1, "failed": 1, "needs_review": 1}
    assert (item["finished"], item["done"]) == (3, False)
    assert (item["succeeded"], item["needs_attention"]) == (1, 2)
    one = api.get(f"/v1/batches/{batch['id']}")
    assert (one["succeeded"], one["needs_attention"], one["finished"]) == (1, 2, 3)
    assert api.client.get("/v1/batches/nope", headers=AUTH).status_code == 404
    assert api.client.get("/v1/batches/nope/report.csv", headers=AUTH).status_code == 404


def test_batch_upload_rejects_unsupported_content_types(api: Harness) -> None:
    response = api.client.post("/v1/batches", content=b"hello", headers={
        **AUTH, "content-type": "text/plain"})
    assert response.status_code == 415


def queue_depth(api: Harness) -> int:
    """Messages waiting in both lanes."""
    return sum(int(api.redis.llen(key)) for key in lane_queue_keys(api.settings))


def test_batch_upload_as_json_array_then_progress_and_report(api: Harness) -> None:
    sub = str(uuid.uuid4())
    rows = [{"seat_id": str(uuid.uuid4()), "guard": False},
            {"subscription_id": sub, "email": "jane@acme.com"},
            {"subscription_id": sub, "email": "jane@acme.com"}]  # same key: collapsed
    response = api.client.post("/v1/batches", json=rows, params={"name": "leavers"},
                               headers=AUTH)
    assert response.status_code == 201, response.text
    created = response.json()
    assert (created["total"], created["created"], created["duplicates"]) == (2, 2, 1)
    assert queue_depth(api) == 2
    batch = api.get(f"/v1/batches/{created['batch_id']}")
    assert (batch["name"], batch["total"], batch["counts"], batch["done"]) == (
        "leavers", 2, {"queued": 2}, False)
    listed = api.get("/v1/revocations", batch_id=created["batch_id"])
    assert {i["id"] for i in listed["items"]} == set(created["request_ids"])
    report = api.client.get(f"/v1/batches/{created['batch_id']}/report.csv", headers=AUTH)
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/csv")
    lines = report.text.strip().splitlines()
    assert lines[0].startswith("line,request_id,seat_id") and len(lines) == 3


def test_batch_upload_as_csv_and_as_multipart_file(api: Harness) -> None:
    seat_a, seat_b = str(uuid.uuid4()), str(uuid.uuid4())
    csv_body = f"seat_id,reason,guard\n{seat_a},left,false\n".encode()
    response = api.client.post("/v1/batches", content=csv_body,
                               headers={**AUTH, "content-type": "text/csv"})
    assert response.status_code == 201, response.text
    upload = api.client.post(
        "/v1/batches", headers=AUTH,
        files={"file": ("march.csv", f"seat_id,guard\n{seat_b},no\n".encode(), "text/csv")})
    assert upload.status_code == 201, upload.text
    batch = api.get(f"/v1/batches/{upload.json()['batch_id']}")
    assert batch["name"] == "march.csv" and batch["total"] == 1
    assert queue_depth(api) == 2


def test_batch_upload_refused_by_the_producer_enqueues_nothing(api: Harness) -> None:
    rows = [{"seat_id": str(uuid.uuid4()), "guard": False}, {"seat_id": str(uuid.uuid4())}]
    response = api.client.post("/v1/batches", json=rows, headers=AUTH)
    assert response.status_code == 422
    body = response.json()
    assert "add subscription_id or order_id" in body["detail"]
    assert "nothing was enqueued" in body["detail"]
    assert api.get("/v1/revocations")["total"] == 0 and api.get("/v1/batches")["total"] == 0
    assert queue_depth(api) == 0


def test_batch_upload_is_all_or_nothing(api: Harness) -> None:
    rows = [{"seat_id": str(uuid.uuid4())}, {"seat_id": "bad"}, {"email": "x@acme.com"}]
    response = api.client.post("/v1/batches", json=rows, headers=AUTH)
    assert response.status_code == 422
    body = response.json()
    assert [e["line"] for e in body["errors"]] == [2, 3]
    assert "nothing was enqueued" in body["detail"]
    assert api.get("/v1/revocations")["total"] == 0 and api.get("/v1/batches")["total"] == 0
    assert queue_depth(api) == 0


def test_an_idempotency_key_reused_for_another_request_is_409(api: Harness) -> None:
    seat, sub = str(uuid.uuid4()), str(uuid.uuid4())
    body = {"seat_id": seat, "subscription_id": sub, "email": "jane@acme.com"}
    first = api.client.post("/v1/revocations", json=body,
                            headers={**AUTH, "Idempotency-Key": "hr-2001"})
    assert first.status_code == 201, first.text
    record = first.json()["request"]
    for other, field in (
        ({**body, "seat_id": str(uuid.uuid4())}, "seat_id"),
        ({**body, "email": "joe@acme.com"}, "email"),
        ({**body, "subscription_id": str(uuid.uuid4())}, "subscription_id"),
        ({"subscription_id": sub, "email": "jane@acme.com"}, None),  # no seat: same request
    ):
        again = api.client.post("/v1/revocations", json=other,
                                headers={**AUTH, "Idempotency-Key": "hr-2001"})
        if field is None:
            assert again.status_code == 200, again.text
            continue
        assert again.status_code == 409, again.text
        conflict = again.json()
        assert conflict["request_id"] == record["id"] and conflict["fields"] == [field]
        assert "hr-2001" in conflict["detail"] and field in conflict["detail"]
    # The body's own key works the same way; an identical resubmission is still a 200.
    assert api.client.post("/v1/revocations", json={**body, "key": "hr-2001",
                                                    "email": "x@acme.com"},
                           headers=AUTH).status_code == 409
    same = api.client.post("/v1/revocations", json={**body, "email": "Jane@Acme.com"},
                           headers={**AUTH, "Idempotency-Key": "hr-2001"})
    assert same.status_code == 200 and same.json()["request"] == record
    assert api.get("/v1/revocations")["total"] == 1 and queue_depth(api) == 1


def test_header_and_body_keys_must_agree(api: Harness) -> None:
    body = {"seat_id": str(uuid.uuid4()), "guard": False, "key": "body-key"}
    response = api.client.post("/v1/revocations", json=body,
                               headers={**AUTH, "Idempotency-Key": "header-key"})
    assert response.status_code == 422
    assert ["header", "Idempotency-Key"] in [e["loc"] for e in response.json()["detail"]]
    assert api.get("/v1/revocations")["total"] == 0


def test_batch_rows_with_one_key_and_different_content_are_rejected(api: Harness) -> None:
    sub = str(uuid.uuid4())
    rows = [{"subscription_id": sub, "email": "ann@acme.com", "key": "row-1"},
            {"subscription_id": sub, "email": "jane@acme.com", "key": "row-2"},
            {"subscription_id": sub, "email": "joe@acme.com", "key": "row-2"}]
    response = api.client.post("/v1/batches", json=rows, headers=AUTH)
    assert response.status_code == 422, response.text
    (error,) = response.json()["errors"]
    assert error["line"] == 3 and "line 2" in error["message"] and "email" in error["message"]
    assert api.get("/v1/revocations")["total"] == 0 and queue_depth(api) == 0


def test_batch_rows_reusing_a_stored_key_for_other_content_are_409(api: Harness) -> None:
    sub = str(uuid.uuid4())
    stored = api.client.post("/v1/revocations", json={"subscription_id": sub,
                                                      "email": "jane@acme.com"},
                             headers={**AUTH, "Idempotency-Key": "hr-3001"})
    assert stored.status_code == 201
    rows = [{"subscription_id": sub, "email": "ann@acme.com"},
            {"subscription_id": sub, "email": "joe@acme.com", "key": "hr-3001"}]
    response = api.client.post("/v1/batches", json=rows, headers=AUTH)
    assert response.status_code == 409, response.text
    (error,) = response.json()["errors"]
    assert error["line"] == 2 and "hr-3001" in error["message"]
    assert stored.json()["request"]["id"] in error["message"]
    assert api.get("/v1/revocations")["total"] == 1 and api.get("/v1/batches")["total"] == 0
    assert queue_depth(api) == 1
    # Naming the stored request again is fine: the batch maps onto it.
    same = [rows[0], {"subscription_id": sub, "email": "jane@acme.com", "key": "hr-3001"}]
    accepted = api.client.post("/v1/batches", json=same, headers=AUTH)
    assert accepted.status_code == 201, accepted.text
    assert (accepted.json()["created"], accepted.json()["duplicates"]) == (1, 1)


def test_list_finds_by_partial_search_and_source(api: Harness) -> None:
    """The REST list takes what the dashboard's search takes: an id prefix, part of an
    email or a domain; and the source a request came from."""
    mine = api.seed(2, email="jane.doe@acme.test")
    api.seed(1, email="bob@other.test")
    batch = {"id": str(uuid.uuid4()), "name": "b", "total": 1}
    (in_batch,) = api.seed(1, batch=batch, email="kim@acme.test")
    assert {r["id"] for r in api.get("/v1/revocations", q="@acme.test")["items"]} == \
        {*mine, in_batch}
    # Newest first: seed() makes each row a minute newer than the one before.
    assert [r["id"] for r in api.get("/v1/revocations", q="jane.doe")["items"]] == \
        [mine[1], mine[0]]
    prefix = api.get("/v1/revocations", q=mine[0][:8])["items"]
    assert [r["id"] for r in prefix] == [mine[0]]
    assert [r["id"] for r in api.get("/v1/revocations", source="batch")["items"]] == \
        [in_batch]
    wrong = api.client.get("/v1/revocations", params={"source": "fax"}, headers=AUTH)
    assert wrong.status_code == 422
