"""Bulk offboarding end to end: batch files through the CLI, workers, sandbox and store."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from worker.sandbox.localstack import LocalStack
from worker.store.batches import batch_progress, report_rows

pytestmark = pytest.mark.integration
TOKEN_HEADER = {"Authorization": "Bearer polar_oat_sandbox_local"}


@pytest.fixture(scope="module")
def two_nodes(
    stack_database: str | None, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalStack]:
    """Two worker nodes sharing one token's budget of 20/second, as in production."""
    with LocalStack(
        workdir=tmp_path_factory.mktemp("batches"),
        database_url=stack_database,
        redis_url=redis_url,
        rate_limit="20/second",
        sandbox_rate_limit="20/second",
        settings_overrides={"polar_read_timeout": 2.0, "retry_inline_max_wait": 2.0},
    ) as stack:
        stack.add_worker(concurrency=2, name="node1")
        stack.add_worker(concurrency=2, name="node2")
        yield stack


def cli(stack: LocalStack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker.cli.main", *args],
        env={**os.environ, **stack.env}, capture_output=True, text=True, timeout=300,
    )


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    fields = sorted({key for row in rows for key in row})
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_mixed_batch_ends_with_the_right_counts(two_nodes: LocalStack, tmp_path: Path) -> None:
    stack = two_nodes
    stack.control.reset(rate_limit="20/second")
    sub_a, sub_b = str(uuid.uuid4()), str(uuid.uuid4())
    seats = stack.control.create_seats(
        [{"subscription_id": sub_a, "status": "claimed", "email": f"a{i}@acme.test"}
         for i in range(12)]
        + [{"subscription_id": sub_b, "status": "claimed", "email": f"b{i}@acme.test",
            "external_id": f"E-{i}"} for i in range(6)]
        + [{"subscription_id": sub_a, "status": "revoked", "email": "gone@acme.test"}]
    )
    a, _b, revoked = seats[:12], seats[12:18], seats[18]
    # a[0]'s seat was revoked and given to someone new since the file was written.
    stack.control._call("DELETE", f"/v1/customer-seats/{a[0]['id']}", headers=TOKEN_HEADER)
    stack.control.assign("successor@acme.test", subscription_id=sub_a)
    rows: list[dict[str, Any]] = (
        [{"seat_id": a[0]["id"], "subscription_id": sub_a, "email": "a0@acme.test"}]
        + [{"seat_id": s["id"], "guard": "false"} for s in a[1:8]]  # seat ids only
        + [{"subscription_id": sub_a, "email": f"a{i}@acme.test"} for i in range(8, 12)]
        + [{"subscription_id": sub_b, "external_id": f"E-{i}"} for i in range(6)]
        + [{"seat_id": revoked["id"], "subscription_id": sub_a, "email": "gone@acme.test"}]
        + [{"subscription_id": sub_a, "email": "never.had.one@acme.test"}]
        + [{"seat_id": a[1]["id"], "guard": "false"}]  # duplicate of an earlier row
        + [{"seat_id": str(uuid.uuid4()), "guard": "false"}]  # not found
    )
    path = write_csv(tmp_path / "offboard.csv", rows)

    done = cli(stack, "batch", str(path), "--wait", "--json", "--name", "mixed")

    assert done.returncode == 1, done.stderr  # one row failed: scripts must see it
    assert "did not end in success" in done.stderr
    summary = json.loads(done.stdout)
    assert summary["done"] is True
    assert summary["total"] == len(rows) - 1  # the duplicate collapsed
    assert summary["counts"] == {
        "revoked": 7 + 4 + 6, "occupant_mismatch": 1, "already_revoked": 1,
        "no_active_seat": 1, "failed": 1,
    }
    stats = stack.control.stats()
    assert stats["rate_limited"] == 0
    assert all(n == 1 for n in stats["revocations_by_seat"].values())
    assert stack.control.seat(a[0]["id"])["email"] == "successor@acme.test"
    # Seat lists were read once per subscription, not once per row.
    assert stats["by_route"]["GET /v1/customer-seats"] <= 4
    assert stats["requests"] <= len(rows) + 4

    report = cli(stack, "report", summary["batch_id"], "--format", "csv")
    assert report.returncode == 0, report.stderr
    lines = list(csv.DictReader(io.StringIO(report.stdout)))
    stored = report_rows(stack.store, summary["batch_id"])
    assert len(lines) == len(stored) == len(rows) - 1
    for line, row in zip(lines, stored, strict=True):
        assert line["request_id"] == row["request_id"]
        assert line["outcome"] == row["outcome"] == stack.store.get(row["request_id"]).state
    revoked_rows = [line for line in lines if line["outcome"] == "revoked"]
    assert all(line["seat_status"] == "revoked" for line in revoked_rows)

    status = cli(stack, "status", summary["batch_id"], "--json")
    assert json.loads(status.stdout)["counts"] == summary["counts"]


def test_a_malformed_file_enqueues_nothing_and_names_the_lines(
    two_nodes: LocalStack, tmp_path: Path
) -> None:
    stack = two_nodes
    good = str(uuid.uuid4())
    path = tmp_path / "bad.csv"
    path.write_text(
        "seat_id,subscription_id,email\n"
        f"{good},,\n"
        "not-a-uuid,,\n"
        f",{uuid.uuid4()},\n"
        f"{good},{uuid.uuid4()},not-an-email\n"
    )
    before = stack.store.count_by_state()

    done = cli(stack, "batch", str(path))

    assert done.returncode == 2
    assert "line 3: seat_id: 'not-a-uuid' is not a UUID" in done.stderr
    assert "line 4:" in done.stderr and "line 5:" in done.stderr
    assert "nothing was enqueued" in done.stderr
    assert stack.store.count_by_state() == before


def test_rows_sharing_a_key_with_different_seats_reject_the_file(
    two_nodes: LocalStack, tmp_path: Path
) -> None:
    stack = two_nodes
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    path = write_csv(tmp_path / "same-key.csv", [
        {"seat_id": first, "guard": "false", "key": "leaver-17"},
        {"seat_id": second, "guard": "false", "key": "leaver-17"},
    ])
    before = stack.store.count_by_state()

    done = cli(stack, "batch", str(path), "--wait", "--json")

    assert done.returncode == 2, done.stdout
    assert "line 3: key 'leaver-17' is also used on line 2" in done.stderr
    assert first in done.stderr and second in done.stderr
    assert "nothing was enqueued" in done.stderr and "duplicates collapsed" not in done.stderr
    assert stack.store.count_by_state() == before


def test_dry_run_forecasts_without_deleting(two_nodes: LocalStack, tmp_path: Path) -> None:
    stack = two_nodes
    stack.control.reset(rate_limit="20/second")
    sub = str(uuid.uuid4())
    held, gone = stack.control.create_seats([
        {"subscription_id": sub, "status": "claimed", "email": "held@acme.test"},
        {"subscription_id": sub, "status": "revoked", "email": "gone@acme.test"},
    ])
    path = tmp_path / "plan.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in [
        {"subscription_id": sub, "email": "held@acme.test"},
        {"seat_id": gone["id"], "subscription_id": sub, "email": "gone@acme.test"},
        {"seat_id": held["id"], "subscription_id": sub, "email": "other@acme.test"},
        {"subscription_id": sub, "email": "nobody@acme.test"},
    ]))

    done = cli(stack, "batch", str(path), "--dry-run", "--json")

    assert done.returncode == 0, done.stderr
    verdicts = [row["verdict"] for row in json.loads(done.stdout)["rows"]]
    assert verdicts == ["would_revoke", "already_revoked", "occupant_mismatch",
                        "no_active_seat"]
    stats = stack.control.stats()
    assert stats["by_route"] == {"GET /v1/customer-seats": 1}
    assert stack.control.seat(held["id"])["status"] == "claimed"


def test_a_429_burst_pauses_both_nodes(two_nodes: LocalStack) -> None:
    stack = two_nodes
    stack.control.reset(rate_limit=None)
    sub = str(uuid.uuid4())
    seats = stack.control.create_seats(
        [{"subscription_id": sub, "status": "claimed", "email": f"x{i}@acme.test"}
         for i in range(40)]
    )
    # The first DELETE gets a 429 with retry-after 3: every worker must hold off.
    stack.control.add_fault(method="DELETE", status=429, retry_after=3, times=1)
    from worker.intake.requests import RevocationInput

    result = stack.producer.submit_batch(
        [RevocationInput(seat_id=s["id"], guard=False) for s in seats])
    stack.wait_terminal(result.request_ids, timeout=120)

    log = stack.control.log()
    deletes = [e for e in log if e["method"] == "DELETE"]
    first_429 = next(e for e in deletes if e["status"] == 429)
    # Requests already on the wire when the 429 was answered may land just after it; after
    # that, nobody may send anything until retry-after has passed.
    in_flight = 0.3
    early = [e for e in deletes
             if first_429["time"] + in_flight < e["time"] < first_429["time"] + 2.9]
    assert not early, f"{len(early)} requests during the shared cooldown"
    assert any(e["time"] >= first_429["time"] + 2.9 for e in deletes)
    progress = batch_progress(stack.store, result.batch_id)
    assert progress is not None and progress.counts == {"revoked": 40}


def test_two_nodes_stay_under_the_shared_limit(two_nodes: LocalStack) -> None:
    stack = two_nodes
    stack.control.reset(rate_limit="20/second")
    seats = stack.control.create_seats(
        [{"status": "claimed", "email": f"y{i}@acme.test"} for i in range(160)]
    )
    from worker.intake.requests import RevocationInput

    result = stack.producer.submit_batch(
        [RevocationInput(seat_id=s["id"], guard=False) for s in seats])
    records = stack.wait_terminal(result.request_ids, timeout=120)

    assert {r.state for r in records} == {"revoked"}
    stats = stack.control.stats()
    assert stats["rate_limited"] == 0
    assert stats["requests"] == 160
    per_node = [
        sum('"seat.revoke.revoked"' in line for line in w.log_path.read_text().splitlines())
        for w in stack.workers
    ]
    assert all(count > 0 for count in per_node), per_node
