"""The dashboard in a real headless Chromium (Debian's /usr/bin/chromium via Playwright):
log in, watch a batch progress to done, retry a failed request, drill into the batch (rows
by outcome, the report downloaded with the session) and the request (its timeline names
who retried it), cancel a scheduled request, look at it all at phone width. Screenshots go
to tests/artifacts/.

Real parts throughout: the API in a uvicorn thread, a worker process, the sandbox over
HTTP, Redis and a SQLite store. Never runs ``playwright install``.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from worker.api import ApiServer, create_app
from worker.api.settings import ApiSettings
from worker.decisions.outcomes import State
from worker.intake.producer import Producer
from worker.sandbox.localstack import LocalStack

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
API_KEY = "browser-test-key-" + "4" * 20
USER = "ops-alice"

sync_api = pytest.importorskip("playwright.sync_api")
if not os.path.exists(CHROMIUM):
    pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium)", allow_module_level=True)


@pytest.fixture
def stack(tmp_path: Path, redis_url: str) -> Iterator[LocalStack]:
    with LocalStack(workdir=tmp_path, redis_url=redis_url) as local:
        local.add_worker(concurrency=2)
        yield local
        for key in local.producer.redis.scan_iter(f"{local.namespace}:*"):
            local.producer.redis.delete(key)


@pytest.fixture
def server(stack: LocalStack) -> Iterator[ApiServer]:
    producer = Producer(stack.settings, store=stack.store)
    app = create_app(stack.settings, producer=producer, api_settings=ApiSettings(
        _env_file=None, api_keys=f"{USER}:{API_KEY}"))  # type: ignore[call-arg]
    with ApiServer(app) as running:
        yield running
    producer.close()


def test_dashboard_shows_progress_and_retries_a_failure(
    stack: LocalStack, server: ApiServer
) -> None:
    sub = str(uuid.uuid4())
    people = [f"person{i}@acme.test" for i in range(16)]
    seats = stack.control.create_seats(
        [{"subscription_id": sub, "status": "claimed", "email": e} for e in people])
    doomed = seats[-1]["id"]
    # One permanent failure (403 once), and Polar slow enough to watch the batch move.
    stack.control.add_fault(method="DELETE", seat_id=doomed, status=403, times=1)
    stack.control.configure(latency_ms=300)
    rows = [{"seat_id": s["id"], "subscription_id": sub, "email": s["email"]} for s in seats]

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            console_errors: list[str] = []
            page.on("console", lambda message: console_errors.append(message.text)
                    if message.type == "error" else None)
            page.goto(f"{server.url}/dashboard")
            assert page.url.endswith("/dashboard/login")
            page.fill("#api_key", "wrong-key-wrong-key-wrong")
            page.click("button[type=submit]")
            assert page.locator(".error").is_visible()
            page.fill("#api_key", API_KEY)
            page.click("button[type=submit]")
            page.wait_for_url(f"{server.url}/dashboard")

            created = httpx.post(
                f"{server.url}/v1/batches", json=rows, params={"name": "March leavers"},
                headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30).json()
            batch_id = created["batch_id"]
            failed_id = created["request_ids"][-1]
            page.reload()
            row = page.locator(f"tr.batch[data-batch-id='{batch_id}']")
            row.wait_for()
            seen_in_progress = row.get_attribute("data-done") == "false"
            # The page reloads itself while work is in flight: no reload from the test.
            page.wait_for_selector(f"tr.batch[data-batch-id='{batch_id}'][data-done='true']",
                                   timeout=60_000)
            assert seen_in_progress, "the batch finished before the page first showed it"
            assert "16/16" in row.locator(".progress-text").inner_text()

            failure = page.locator(f"#failures tr[data-request-id='{failed_id}']")
            failure.wait_for(timeout=20_000)
            assert "403" in failure.inner_text()
            page.screenshot(path=str(ARTIFACTS / "dashboard-before-retry.png"), full_page=True)
            failure.locator("button.retry").click()
            page.wait_for_url("**/dashboard?notice=*")
            assert "sent again" in page.locator(".notice").inner_text()
            record = _wait_state(stack, failed_id, State.REVOKED)
            assert record.attempts == 2
            page.wait_for_selector(f"#failures tr[data-request-id='{failed_id}']",
                                   state="detached", timeout=30_000)

            page.fill("input[name=q]", people[0])
            page.press("input[name=q]", "Enter")
            page.wait_for_url("**/dashboard/requests?q=*")
            assert page.locator("#total").inner_text() == "1"
            page.goto(f"{server.url}/dashboard/requests?source=batch&state=success")
            assert page.locator("#total").inner_text() == "16"  # the retried one succeeded
            page.screenshot(path=str(ARTIFACTS / "dashboard-requests.png"), full_page=True)
            page.goto(f"{server.url}/dashboard")
            page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)

            _drill_down(page, server, stack, batch_id, failed_id)
            # The page's script and styles run under its Content-Security-Policy.
            assert not [e for e in console_errors if "Content Security Policy" in e]

            # Phone width: nothing wider than the screen but the tables' own scroll boxes.
            phone = browser.new_page(viewport={"width": 390, "height": 844})
            phone.context.add_cookies(page.context.cookies())
            for path, name in ((f"/dashboard/batches/{batch_id}", "phone-batch"),
                               (f"/dashboard/requests/{failed_id}", "phone-request"),
                               ("/dashboard", "phone-overview")):
                phone.goto(f"{server.url}{path}")
                width = phone.evaluate("document.documentElement.scrollWidth")
                assert width <= 390, f"{path} is {width}px wide at phone width"
                phone.screenshot(path=str(ARTIFACTS / f"dashboard-{name}.png"), full_page=True)
            phone.close()
            # The page's script and styles run under its Content-Security-Policy.
            assert not [e for e in console_errors if "Content Security Policy" in e]

            # Signing out ends the session: the dashboard asks for a key again.
            page.click("header button[type=submit]")
            page.wait_for_url(f"{server.url}/dashboard/login")
            page.goto(f"{server.url}/dashboard")
            assert page.url.endswith("/dashboard/login")
        finally:
            browser.close()


def _drill_down(page: Any, server: ApiServer, stack: LocalStack, batch_id: str,
                failed_id: str) -> None:
    """Batch page → a row → its request page (timeline with the retry's actor); the
    report downloads with the session; a scheduled request is cancelled."""
    page.click(f"tr.batch[data-batch-id='{batch_id}'] a[href='/dashboard/batches/{batch_id}']")
    page.wait_for_url(f"**/dashboard/batches/{batch_id}")
    assert "16/16" in page.locator("#batch .progress-text").inner_text()
    page.click("a[data-outcome='revoked']")
    page.wait_for_url("**?state=revoked")
    assert page.locator("#rows tr[data-request-id]").count() == 16
    with page.expect_download() as download:
        page.click("#batch a.report")
    saved = ARTIFACTS / "batch-report.csv"
    download.value.save_as(saved)
    assert failed_id in saved.read_text() and saved.read_text().startswith("line,request_id")
    page.screenshot(path=str(ARTIFACTS / "dashboard-batch.png"), full_page=True)

    page.click(f"#rows tr[data-request-id='{failed_id}'] td a")
    page.wait_for_url(f"**/dashboard/requests/{failed_id}")
    timeline = page.locator("#history").inner_text()
    assert "failed" in timeline and "403" in timeline and "revoked" in timeline
    assert f"by dashboard:{USER}" in timeline  # the retry, with who pressed it
    assert page.locator("#who").inner_text() == USER
    page.screenshot(path=str(ARTIFACTS / "dashboard-request.png"), full_page=True)

    from datetime import timedelta

    from worker.intake.requests import RevocationInput
    from worker.store.models import utcnow

    later = stack.producer.submit(RevocationInput(
        seat_id=str(uuid.uuid4()), guard=False, requested_by="cli",
        effective_at=utcnow() + timedelta(days=3))).record
    page.click("header nav a[href='/dashboard/scheduled']")
    row = page.locator(f"#scheduled tr[data-request-id='{later.id}']")
    assert later.effective_at is not None
    assert later.effective_at.strftime("%Y-%m-%d %H:%M") in row.inner_text()
    page.screenshot(path=str(ARTIFACTS / "dashboard-scheduled.png"), full_page=True)
    questions: list[str] = []
    page.once("dialog", lambda dialog: (questions.append(dialog.message), dialog.accept()))
    row.locator("button.cancel").click()
    page.wait_for_url("**/dashboard/scheduled?notice=*")
    assert "cancelled" in page.locator(".notice").inner_text()
    assert questions and later.id[:8] in questions[0]  # asked before cancelling
    assert _wait_state(stack, later.id, State.CANCELLED).state == "cancelled"
    assert stack.store.history(later.id)[-1].detail["by"] == f"dashboard:{USER}"


def _wait_state(stack: LocalStack, request_id: str, state: State,
                timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = stack.store.get(request_id)
        if record is not None and record.state == state:
            return record
        time.sleep(0.1)
    raise AssertionError(f"{request_id} not {state} after {timeout}s: {record and record.state}")
