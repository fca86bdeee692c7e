"""Worker restarts mid-job, and the Polar token absent from everything the system writes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from redis import Redis
from sqlalchemy import text

from worker.intake.producer import RevocationInput
from worker.sandbox.app import DEFAULT_SANDBOX_TOKEN
from worker.sandbox.localstack import LocalStack

pytestmark = pytest.mark.integration


def seed(stack: LocalStack, count: int = 1) -> list[str]:
    subscription_id = str(uuid.uuid4())
    seats = stack.control.create_seats(
        [{"subscription_id": subscription_id, "status": "claimed",
          "email": f"p{i}@acme.test"} for i in range(count)]
    )
    return [seat["id"] for seat in seats]


def wait_state(stack: LocalStack, request_id: str, state: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        record = stack.store.get(request_id)
        if record is not None and record.state == state:
            return
        time.sleep(0.02)
    raise TimeoutError(f"request never reached {state}")


def test_pool_process_killed_mid_job_then_the_request_completes(
    sandbox_reset: LocalStack,
) -> None:
    stack = sandbox_reset
    (seat_id,) = seed(stack)
    stack.control.add_fault(method="DELETE", seat_id=seat_id, latency_ms=800, times=1)
    record = stack.producer.submit(RevocationInput(seat_id=seat_id, guard=False)).record
    wait_state(stack, record.id, "running")
    for pid in stack.workers[0].child_pids():
        os.kill(pid, signal.SIGKILL)  # the pool process doing the job dies

    final = stack.wait_terminal([record.id], timeout=60)[0]

    assert final.state == "revoked"
    assert final.attempts >= 2
    assert stack.control.stats()["revocations_by_seat"][seat_id] == 1


def test_node_restarted_mid_job_then_the_request_completes(sandbox_reset: LocalStack) -> None:
    stack = sandbox_reset
    seat_ids = seed(stack, 3)
    stack.control.add_fault(method="DELETE", latency_ms=600)
    records = [stack.producer.submit(RevocationInput(seat_id=s, guard=False)).record
               for s in seat_ids]
    wait_state(stack, records[0].id, "running")
    stack.workers[0].stop()  # warm shutdown mid-job
    stack.workers.pop(0)
    stack.add_worker(concurrency=2)

    finals = stack.wait_terminal([r.id for r in records], timeout=60)

    assert [f.state for f in finals] == ["revoked"] * 3
    revoked = stack.control.stats()["revocations_by_seat"]
    assert all(revoked[s] == 1 for s in seat_ids)


def test_the_token_appears_in_no_log_result_row_or_output(
    sandbox_reset: LocalStack, tmp_path: Path
) -> None:
    stack = sandbox_reset
    token = DEFAULT_SANDBOX_TOKEN
    ok_seat, unauthorized_seat = seed(stack, 2)
    # A 403 whose body echoes the Authorization header, like a careless proxy would (a 401
    # would pause the whole queue: test_fleet_pause.py).
    stack.control.add_fault(method="DELETE", seat_id=unauthorized_seat, status=403,
                            body={"error": "NotPermitted", "detail": f"Bearer {token}"})
    env = {**os.environ, **stack.env, "LOG_FORMAT": "json"}
    cli_outputs = []
    for seat_id in (ok_seat, unauthorized_seat):
        done = subprocess.run(
            [sys.executable, "-m", "worker.cli.main", "revoke", seat_id, "--unguarded", "--wait",
             "--json"],
            env=env, capture_output=True, text=True, timeout=60,
        )
        cli_outputs.append(done.stdout + done.stderr)
        request_id = json.loads(done.stdout)["id"]
        status = subprocess.run(
            [sys.executable, "-m", "worker.cli.main", "status", request_id, "--json"],
            env=env, capture_output=True, text=True, timeout=60,
        )
        cli_outputs.append(status.stdout + status.stderr)
    assert '"state": "revoked"' in cli_outputs[0]
    assert '"last_http_status": 403' in cli_outputs[2]

    with stack.store.engine.connect() as conn:
        rows = [
            str(tuple(row))
            for table in ("revocation_requests", "request_events")
            for row in conn.execute(text(f"SELECT * FROM {table}"))
        ]
    redis = Redis.from_url(stack.settings.redis_url)
    redis_values = [
        str(redis.dump(key)) for key in redis.scan_iter(f"{stack.namespace}:*")
    ]
    worker_logs = stack.logs()
    assert "seat.revoke.failed" in worker_logs and "seat.revoke.revoked" in worker_logs

    for where, content in {
        "worker logs": worker_logs,
        "CLI output": "\n".join(cli_outputs),
        "database rows": "\n".join(rows),
        "redis (broker messages, task results)": "\n".join(redis_values),
    }.items():
        assert token not in content, f"token found in {where}"
