"""What standard tooling sees while a batch with permanent failures runs: Celery's result
backend and task events say FAILURE for a failed request (Flower reads the same), the
store stays the source of truth, and /metrics shows the failures, the workers and the
scheduler alive. Real worker processes, the sandbox over HTTP, Redis."""

from __future__ import annotations

import re
import threading
import time
import uuid
from typing import Any

import pytest
from celery import Celery
from fastapi.testclient import TestClient

from config.celery import celery_config
from worker.api import create_app
from worker.api.settings import ApiSettings
from worker.intake.requests import RevocationInput
from worker.sandbox.localstack import LocalStack

pytestmark = pytest.mark.integration


def test_permanent_failures_are_failures_to_celery_and_metrics(
    sandbox_reset: LocalStack,
) -> None:
    stack = sandbox_reset
    app = Celery("probe")
    app.config_from_object(celery_config(stack.settings))
    events: list[dict[str, Any]] = []
    receivers: list[Any] = []

    def listen() -> None:  # what Flower does: consume the task events
        with app.connection() as connection:
            receiver = app.events.Receiver(connection, handlers={"*": events.append})
            receivers.append(receiver)
            receiver.capture(limit=None, timeout=None, wakeup=False)

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    time.sleep(1.0)  # the receiver binds its queue before the tasks run
    seats = stack.control.create_seats([{"status": "claimed", "email": "ok@acme.test"}])
    rows = [RevocationInput(seat_id=seats[0]["id"], guard=False, requested_by="t"),
            RevocationInput(seat_id=str(uuid.uuid4()), guard=False, requested_by="t")]
    result = stack.producer.submit_batch(rows, name="tooling", source="t", requested_by="t",
                                         lines=[2, 3])
    ok_id, missing_id = result.request_ids
    final = {r.id: r for r in stack.wait_terminal([ok_id, missing_id])}
    assert (final[ok_id].state, final[missing_id].state) == ("revoked", "failed")
    assert final[missing_id].last_http_status == 404  # the store has the detail

    failed = app.AsyncResult(missing_id)
    deadline = time.monotonic() + 10
    while failed.state != "FAILURE" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert failed.state == "FAILURE"
    assert "ended failed" in str(failed.result)
    assert app.AsyncResult(ok_id).state == "SUCCESS"
    deadline = time.monotonic() + 10
    ended = {"task-failed", "task-succeeded"}

    def kinds() -> dict[str, str]:
        return {e["uuid"]: e["type"] for e in list(events) if e.get("type") in ended}

    while len(kinds()) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    for receiver in receivers:
        receiver.should_stop = True
    assert kinds().get(missing_id) == "task-failed" and kinds().get(ok_id) == "task-succeeded"

    api = create_app(stack.settings, store=stack.store,
                     api_settings=ApiSettings(_env_file=None))  # type: ignore[call-arg]
    with TestClient(api) as client:
        client.get("/v1/revocations")  # 401: counted by route and status
        text = client.get("/metrics").text
    assert re.search(r'^seat_revoker_requests_in_state\{state="failed"\} [1-9]', text, re.M)
    assert re.search(r"^seat_revoker_workers_alive [1-9]", text, re.M)
    heartbeat = re.search(r"^seat_revoker_scheduler_heartbeat_timestamp_seconds (\S+)", text,
                          re.M)
    assert heartbeat and float(heartbeat.group(1)) > time.time() - 60
    assert re.search(r'^seat_revoker_oldest_request_age_seconds\{state="queued"\} ', text,
                     re.M)
    assert re.search(r'^seat_revoker_api_requests_total\{method="GET",route="/v1/revocations",'
                     r'status="401"\} 1\.0', text, re.M)
    assert re.search(r'^seat_revoker_build_info\{python="[^"]+",revision="[^"]+",'
                     r'version="[^"]+"\} 1\.0', text, re.M)
