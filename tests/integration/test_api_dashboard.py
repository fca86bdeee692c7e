"""The dashboard's HTML over the real app, real Redis and a SQLite store (no browser): the
pause and no-worker banners, the "Needs review" tile and rows with their retry button, the
request and batch pages, the filtered and paged request list, prefix search, the scheduled
page with cancel, the report from the session, and who did what."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from redis import Redis

from config.settings import Settings
from worker.api import create_app
from worker.api.settings import ApiSettings
from worker.decisions.outcomes import FleetFault
from worker.intake.producer import Producer
from worker.jobs.fleetpause import FleetPause
from worker.jobs.nodes import NodeRegistry
from worker.store.records import Store

pytestmark = pytest.mark.integration

API_KEY = "dashboard-html-key-" + "5" * 20
NAMED_KEYS = f"ops-alice:{API_KEY}"


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
                     api_settings=ApiSettings(_env_file=None, api_keys=NAMED_KEYS))  # type: ignore[call-arg]
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

    search = dash.client.get("/dashboard", params={"q": "jane@acme.com"}).text  # → requests
    row = search.split(f'data-request-id="{revoked}"', 1)[1].split("</tr>", 1)[0]
    assert "unguarded" in row and "asked " in row and "verified" in row
    assert "/retry" not in row


# -- drill-down ------------------------------------------------------------------------------


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', html)
    assert found, "no CSRF token on the page"
    return found.group(1)


def test_the_signed_in_name_is_the_keys_name_and_no_worker_shows_a_banner(
    dash: Harness,
) -> None:
    html = dash.page()
    assert '<span class="who" id="who" title="signed in">ops-alice</span>' in html
    assert API_KEY not in html
    assert 'id="no-worker"' in html  # nothing beats in this namespace
    registry = NodeRegistry(Redis.from_url(dash.settings.redis_url),
                            dash.settings.redis_key("nodes"))
    before = dash.client.get("/dashboard/state.json").json()["fingerprint"]
    registry.beat("w1|1")
    assert 'id="no-worker"' not in dash.page()
    # The open page reloads itself when a worker appears (or the last one goes).
    assert dash.client.get("/dashboard/state.json").json()["fingerprint"] != before
    registry.leave("w1|1")


def test_request_page_shows_history_with_actor_asked_vs_seen_and_snapshot(
    dash: Harness,
) -> None:
    request_id = dash.seed("failed", last_error="403 NotPermitted", last_http_status=403,
                           reason="left the company",
                           occupant_seen={"email": "someone.else@acme.com"},
                           seat_snapshot={"id": "s", "status": "claimed"})
    page = dash.client.get(f"/dashboard/requests/{request_id}")
    assert page.status_code == 200
    html = page.text
    assert "403 NotPermitted" in html and "left the company" in html
    occupant = html.split('id="occupant"', 1)[1].split("</section>", 1)[0]
    assert "jane@acme.com" in occupant and "someone.else@acme.com" in occupant
    assert '&#34;status&#34;: &#34;claimed&#34;' in html.split('id="snapshot"', 1)[1]
    # Retry from the page: the signed-in user is recorded, the browser comes back here.
    here = f"/dashboard/requests/{request_id}"
    done = dash.client.post(f"{here}/retry", data={"csrf": csrf_of(html), "next": here},
                            follow_redirects=False)
    assert done.status_code == 303
    assert done.headers["location"].startswith(f"/dashboard/requests/{request_id}?notice=")
    last = dash.store.history(request_id)[-1]
    assert (last.state, last.detail["by"]) == ("queued", "dashboard:ops-alice")
    timeline = dash.client.get(f"/dashboard/requests/{request_id}").text.split(
        'id="history"', 1)[1]
    assert "by <b>dashboard:ops-alice</b>" in timeline and "retry" in timeline
    # The 8-character prefix the tables show leads to the page.
    short = dash.client.get(f"/dashboard/requests/{request_id[:8]}", follow_redirects=False)
    assert short.status_code == 303 and short.headers["location"].endswith(request_id)
    assert dash.client.get("/dashboard/requests/ffffffff").status_code == 404


def test_request_list_filters_pages_and_searches_by_prefix(dash: Harness) -> None:
    ids = [dash.seed("revoked") for _ in range(55)]
    failed = dash.seed("failed")
    other = str(uuid.uuid4())
    dash.store.add_requests([{"id": other, "idempotency_key": f"t:{other}",
                              "seat_id": "c0ffee00-0000-4000-8000-000000000000",
                              "state": "queued", "occupant_email": "bob@other.org",
                              "requested_by": "webhook:offboarding"}])
    first = dash.client.get("/dashboard/requests").text
    assert 'id="total">57<' in first and "Next →" in first
    assert first.count("data-request-id=") == 50
    second = dash.client.get("/dashboard/requests", params={"offset": 50}).text
    assert second.count("data-request-id=") == 7 and "← Previous" in second
    only_failed = dash.client.get("/dashboard/requests", params={"state": "failed"}).text
    assert f'data-request-id="{failed}"' in only_failed
    assert only_failed.count("data-request-id=") == 1
    for q in (ids[0][:8], "c0ffee", "@other.org", "BOB@"):
        found = dash.client.get("/dashboard/requests", params={"q": q}).text
        assert found.count("data-request-id=") == 1, q
    webhook = dash.client.get("/dashboard/requests", params={"source": "webhook"}).text
    assert f'data-request-id="{other}"' in webhook and webhook.count("data-request-id=") == 1
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    future = dash.client.get("/dashboard/requests", params={"from": tomorrow}).text
    assert "No request matches" in future
    bad = dash.client.get("/dashboard/requests", params={"state": "bogus"}).text
    assert "unknown state" in bad


def test_batch_page_rows_by_outcome_and_report_from_the_session(dash: Harness) -> None:
    producer = Producer(dash.settings, store=dash.store)
    from worker.intake.requests import RevocationInput

    rows = [RevocationInput(seat_id=str(uuid.uuid4()), guard=False, requested_by="t")
            for _ in range(3)]
    result = producer.submit_batch(rows, name="March leavers", source="t", requested_by="t",
                                   lines=[2, 3, 4])
    producer.close()
    first, second, third = result.request_ids
    dash.store.update(first, state="revoked")
    dash.store.update(second, state="failed", last_error="404 ResourceNotFound")
    overview = dash.page()
    assert f'href="/dashboard/batches/{result.batch_id}"' in overview
    assert f'href="/dashboard/batches/{result.batch_id}/report.csv"' in overview
    html = dash.client.get(f"/dashboard/batches/{result.batch_id}").text
    assert "March leavers" in html and "2</b>/3" in html
    assert html.count("data-request-id=") == 3
    failed_rows = dash.client.get(f"/dashboard/batches/{result.batch_id}",
                                  params={"state": "failed"}).text
    assert failed_rows.count("data-request-id=") == 1 and second in failed_rows
    report = dash.client.get(f"/dashboard/batches/{result.batch_id}/report.csv")
    assert report.status_code == 200 and report.headers["content-type"].startswith("text/csv")
    assert second in report.text and "404 ResourceNotFound" in report.text
    assert dash.client.get(f"/dashboard/batches/{result.batch_id[:8]}",
                           follow_redirects=False).status_code == 303
    # Without the session cookie: no report.
    anonymous = TestClient(dash.client.app).get(
        f"/dashboard/batches/{result.batch_id}/report.csv", follow_redirects=False)
    assert anonymous.status_code == 303 and anonymous.headers["location"] == "/dashboard/login"
    assert third


def test_scheduled_page_lists_effective_at_and_cancels_with_the_actor(dash: Harness) -> None:
    when = datetime.now(UTC) + timedelta(days=2)
    request_id = dash.seed("scheduled", effective_at=when)
    html = dash.client.get("/dashboard/scheduled").text
    row = html.split(f'data-request-id="{request_id}"', 1)[1].split("</tr>", 1)[0]
    assert when.strftime("%Y-%m-%d %H:%M:%S") in row and "/cancel" in row
    done = dash.client.post(f"/dashboard/requests/{request_id}/cancel",
                            data={"csrf": csrf_of(html), "next": "/dashboard/scheduled"})
    assert done.status_code == 200 and "cancelled" in done.text
    record = dash.store.get(request_id)
    assert record is not None and record.state == "cancelled"
    assert dash.store.history(request_id)[-1].detail["by"] == "dashboard:ops-alice"
    refused = dash.client.post(f"/dashboard/requests/{request_id}/cancel",
                               data={"csrf": csrf_of(html), "next": "https://evil.example/"},
                               follow_redirects=False)
    assert refused.headers["location"].startswith("/dashboard?notice=Could+not+cancel")
    forged = dash.client.post(f"/dashboard/requests/{request_id}/cancel",
                              data={"csrf": "0" * 64})
    assert forged.status_code == 403


def test_rest_retry_and_cancel_record_the_key_name(dash: Harness) -> None:
    request_id = dash.seed("retrying")
    done = dash.client.post(f"/v1/revocations/{request_id}/cancel",
                            headers={"Authorization": f"Bearer {API_KEY}"})
    assert done.status_code == 200, done.text
    assert dash.store.history(request_id)[-1].detail["by"] == "api:ops-alice"
    again = dash.client.post(f"/v1/revocations/{request_id}/cancel",
                             headers={"Authorization": f"Bearer {API_KEY}"})
    assert again.status_code == 409
