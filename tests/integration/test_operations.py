"""Operator commands: dead letters and replay, scheduled requests, cancel, the scheduler."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest

from worker.intake.producer import RevocationInput
from worker.sandbox.localstack import LocalStack
from worker.sandbox.procs import WorkerProcess
from worker.store.models import utcnow
from worker.store.queries import RequestFilter, list_requests

pytestmark = pytest.mark.integration


def cli(stack: LocalStack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker.cli.main", *args],
        env={**os.environ, **stack.env}, capture_output=True, text=True, timeout=120,
    )


def seat(stack: LocalStack) -> str:
    email = f"{uuid.uuid4().hex[:6]}@acme.test"
    return str(stack.control.create_seats([{"status": "claimed", "email": email}])[0]["id"])


def test_failed_requests_are_listed_and_retried_with_history_kept(
    sandbox_reset: LocalStack,
) -> None:
    stack = sandbox_reset
    seat_id = seat(stack)
    stack.control.add_fault(method="DELETE", seat_id=seat_id, status=403, times=1,
                            body={"error": "NotPermitted", "detail": "not now"})
    record = stack.producer.submit(RevocationInput(seat_id=seat_id, guard=False)).record
    assert stack.wait_terminal([record.id])[0].state == "failed"

    listed = cli(stack, "failed", "--json")
    assert listed.returncode == 0, listed.stderr
    failed = [json.loads(line) for line in listed.stdout.splitlines()]
    mine = next(r for r in failed if r["id"] == record.id)
    assert mine["last_http_status"] == 403 and "not now" in mine["last_error"]

    retried = cli(stack, "retry", record.id)
    assert retried.returncode == 0, retried.stderr
    final = stack.wait_terminal([record.id])[0]
    assert final.state == "revoked"
    assert final.idempotency_key == record.idempotency_key and final.attempts == 2
    states = [e.state for e in stack.store.history(record.id)]
    assert states == ["queued", "running", "failed", "queued", "running", "revoked"]

    again = cli(stack, "retry", record.id)
    assert again.returncode == 1 and "only failed or needs_review" in again.stderr


def test_retry_needs_an_id_or_all_failed(sandbox_reset: LocalStack) -> None:
    done = cli(sandbox_reset, "retry")
    assert done.returncode == 2 and "--all-failed" in done.stderr


def test_revoke_refuses_a_bare_seat_it_cannot_guard_unless_unguarded(
    sandbox_reset: LocalStack,
) -> None:
    stack = sandbox_reset
    seat_id = seat(stack)
    refused = cli(stack, "revoke", seat_id)
    assert refused.returncode == 2 and "add subscription_id or order_id" in refused.stderr
    assert list_requests(stack.store, RequestFilter(seat_id=seat_id)).total == 0
    done = cli(stack, "revoke", seat_id, "--unguarded", "--wait", "--json")
    assert done.returncode == 0, done.stderr
    record = json.loads(done.stdout)
    assert (record["state"], record["guarded"]) == ("revoked", False)
    status = cli(stack, "status", record["id"])
    assert status.returncode == 0 and "guarded" in status.stdout


def test_scheduled_requests_wait_and_can_be_cancelled(sandbox_reset: LocalStack) -> None:
    stack = sandbox_reset
    kept, dropped = seat(stack), seat(stack)
    # Room for four CLI runs (a second or two each on a loaded machine) before it is due.
    due = utcnow() + timedelta(seconds=14)
    when = due.strftime("%Y-%m-%dT%H:%M:%S%z")
    ids = []
    for seat_id in (kept, dropped):
        done = cli(stack, "revoke", seat_id, "--effective-at", when, "--unguarded")
        assert done.returncode == 0, done.stderr
        ids.append(done.stdout.strip())
    listed = cli(stack, "scheduled", "--json")
    assert {json.loads(line)["id"] for line in listed.stdout.splitlines()} >= set(ids)

    cancelled = cli(stack, "cancel", ids[1])
    assert cancelled.returncode == 0, cancelled.stderr
    assert cli(stack, "cancel", ids[1]).returncode == 1  # not twice

    assert stack.store.get(ids[0]).state == "scheduled"  # type: ignore[union-attr]
    # The scheduler built into the stack's worker releases it when due, not before.
    records = stack.wait_terminal(ids, timeout=60)
    assert records[0].finished_at is not None
    assert records[0].finished_at >= due.replace(microsecond=0)
    assert [r.state for r in records] == ["revoked", "cancelled"]
    assert stack.control.seat(kept)["status"] == "revoked"
    assert stack.control.seat(dropped)["status"] == "claimed"


def test_every_worker_runs_the_scheduler_unless_told_not_to(
    sandbox_reset: LocalStack, tmp_path: Path
) -> None:
    stack = sandbox_reset
    seat_id = seat(stack)
    record = stack.producer.submit(RevocationInput(
        seat_id=seat_id, effective_at=utcnow() + timedelta(seconds=3), guard=False,
    )).record
    assert record.state == "scheduled"
    plain = WorkerProcess(env={**stack.env, "SCHEDULER_INTERVAL_SECONDS": "0.5"},
                          log_path=tmp_path / "plain.log", concurrency=1, name="plain").start()
    opted_out = WorkerProcess(env=stack.env, log_path=tmp_path / "opted-out.log",
                              concurrency=1, name="out", extra_args=["--no-scheduler"]).start()
    try:
        assert stack.wait_terminal([record.id], timeout=60)[0].state == "revoked"
    finally:
        plain.stop()
        opted_out.stop()
    plain_log = (tmp_path / "plain.log").read_text()
    assert '"event": "node.started"' in plain_log and '"scheduler": true' in plain_log
    assert '"scheduler": false' in (tmp_path / "opted-out.log").read_text()
    released = plain_log + stack.logs()
    assert '"scheduler.released"' in released


def test_a_retrying_request_can_be_cancelled_and_its_next_run_stops(
    sandbox_reset: LocalStack,
) -> None:
    stack = sandbox_reset
    seat_id = seat(stack)
    # Polar answers 503 to every DELETE of this seat: the request keeps retrying later.
    stack.control.add_fault(method="DELETE", seat_id=seat_id, status=503, times=1000)
    done = cli(stack, "revoke", seat_id, "--unguarded")
    assert done.returncode == 0, done.stderr
    request_id = done.stdout.strip()
    deadline = time.monotonic() + 60
    while stack.store.get(request_id).state != "retrying":  # type: ignore[union-attr]
        assert time.monotonic() < deadline, "never retrying"
        time.sleep(0.05)
    cancelled = cli(stack, "cancel", request_id[:8])
    if cancelled.returncode == 1 and "is running" in cancelled.stderr:  # between two runs
        time.sleep(0.3)
        cancelled = cli(stack, "cancel", request_id[:8])
    assert cancelled.returncode == 0, cancelled.stderr
    attempts = stack.store.get(request_id).attempts  # type: ignore[union-attr]
    stack.control.clear_faults()  # a further run would now revoke the seat

    def skipped() -> bool:  # the retry's message ran and found the request cancelled
        for line in stack.logs().splitlines():
            if request_id in line and "request.skipped_terminal" in line:
                return True
        return False

    deadline = time.monotonic() + 40
    while not skipped():
        assert time.monotonic() < deadline, "the retry's message never ran"
        time.sleep(0.2)
    record = stack.store.get(request_id)
    assert record is not None and record.state == "cancelled"
    assert record.attempts == attempts  # no attempt after the cancellation
    assert stack.control.seat(seat_id)["status"] == "claimed"
    history = stack.store.history(request_id)
    assert history[-1].state == "cancelled" and str(history[-1].detail["by"]).startswith("cli")
