"""The dashboard's HTML over the real app, real Redis and a SQLite store (no browser): the
pause banner, the "Needs review" tile and the needs-review rows with their retry button."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from redis import Redis

from config.settings import Settings
from worker.api import create_app
from worker.api.settings import ApiSettings
from worker.fleetpause import FleetPause
from worker.outcomes import FleetFault
from worker.producer import Producer
from worker.store import Store

pytestmark = pytest.mark.integration

API_KEY = "dashboard-html-key-" + "5" * 20


class Harness:
    def __init__(self, client: TestClient, store: Store, settings: Settings, redis: Redis):
        self.client, self.store, self.settings = client, store, settings
        self.pause = FleetPause(redis, settings.redis_key("pause"), probe_seconds=30)

    def seed(self, state: str, **changes: object) -> str:
        request_id = str(uuid.uuid4())
        self.store.add_requests([{"id": request_id, "idempotency_key": f"t:{request_id}",
                                  "seat_id": str(uuid.uuid4()), "state": "queued",
                                  "occupant_email": "jane@acme.com"}])
        self.store.update(request_id, state=state, **changes)
        return request_id

    def page(self) -> str:
        response = self.client.get("/dashboard")
        assert response.status_code == 200, response.text
        return response.text


@pytest.fixture
def dash(redis_url: str, tmp_path: Path) -> Iterator[Harness]:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, database_url=f"sqlite:///{tmp_path / 'store.db'}",
        redis_url=redis_url, namespace=f"dash-{uuid.uuid4().hex[:10]}",
    )
    store = Store.from_url(settings.database_url)
    redis = Redis.from_url(redis_url)
    producer = Producer(settings, store=store)
    app = create_app(settings, producer=producer,
                     api_settings=ApiSettings(_env_file=None, api_keys=API_KEY))  # type: ignore[call-arg]
    try:
        with TestClient(app) as client:
            login = client.post("/dashboard/login", data={"api_key": API_KEY},
                                follow_redirects=False)
            assert login.status_code == 303
            yield Harness(client, store, settings, redis)
    finally:
        for key in redis.scan_iter(f"{settings.namespace}:*"):
            redis.delete(key)
        redis.close()
        producer.close()


def test_no_banner_without_a_pause(dash: Harness) -> None:
    html = dash.page()
    assert 'id="paused"' not in html and "Queue paused" not in html
    assert re.search(r'id="needs-review"><small>Needs review</small><b>0</b>', html)


def test_a_pause_shows_a_red_banner_with_its_message(dash: Harness) -> None:
    before = dash.client.get("/dashboard/state.json").json()["fingerprint"]
    info = dash.pause.pause("tok:1:2026-04", FleetFault.TOKEN_INVALID, 401)
    html = dash.page()
    assert 'class="banner paused"' in html and "Queue paused" in html
    assert info.since in html and "POLAR_ACCESS_TOKEN" in html and "seat-revoker resume" in html
    # The page reloads itself when a pause starts or ends.
    assert dash.client.get("/dashboard/state.json").json()["fingerprint"] != before


def test_needs_review_is_counted_listed_and_retryable(dash: Harness) -> None:
    review = dash.seed("needs_review", outcome_detail="two seats of jane match; check the email")
    failed = dash.seed("failed", last_error="404 ResourceNotFound")
    revoked = dash.seed("revoked", guarded=False, requested_seat_id=str(uuid.uuid4()),
                        end_state_verified=True, verified_at=datetime.now(UTC))
    html = dash.page()
    assert re.search(r'id="needs-review"><small>Needs review</small><b>1</b>', html)
    failures = html.split('id="failures"', 1)[1]
    for request_id in (review, failed):
        row = failures.split(f'data-request-id="{request_id}"', 1)[1].split("</tr>", 1)[0]
        assert f"/dashboard/requests/{request_id}/retry" in row
    assert "two seats of jane match; check the email" in failures
    assert f'data-request-id="{revoked}"' not in failures

    search = dash.client.get("/dashboard", params={"q": "jane@acme.com"}).text
    row = search.split(f'data-request-id="{revoked}"', 1)[1].split("</tr>", 1)[0]
    assert "unguarded" in row and "asked " in row and "verified" in row
    assert "/retry" not in row
