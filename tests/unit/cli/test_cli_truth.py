"""What scripts rely on: exit codes, id prefixes, one JSON style, lookups by seat/email,
`batches`, `--version`, cancelling a retrying request. Real Redis, a SQLite store, no
workers (so `--wait` meets "no worker consuming")."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from redis import Redis

from tests.unit.cli.test_cli_ops import Env
from tests.unit.cli.test_cli_ops import env as env  # the fixture
from worker.cli.common import EXIT_NO_WORKER, EXIT_NOT_FOUND, EXIT_USAGE
from worker.jobs.nodes import NodeRegistry
from worker.version import package_version


def seed(env: Env, state: str, request_id: str | None = None, **fields: object) -> str:
    request_id = request_id or str(uuid.uuid4())
    env.store.add_requests([{"id": request_id, "idempotency_key": f"t:{request_id}",
                             "seat_id": fields.pop("seat_id", str(uuid.uuid4())),
                             "state": "queued", **fields}])
    if state != "queued":
        env.store.update(request_id, state=state)
    return request_id


def test_version() -> None:
    from click.testing import CliRunner

    from worker.cli.main import main

    done = CliRunner().invoke(main, ["--version"])
    assert done.exit_code == 0 and done.output.strip() == f"seat-revoker {package_version()}"


def test_status_accepts_the_printed_prefix_and_names_ambiguous_matches(env: Env) -> None:
    one = seed(env, "failed", "abcd1111-0000-4000-8000-000000000001")
    seed(env, "revoked", "abcd2222-0000-4000-8000-000000000002")
    done = env.run("status", one[:8])
    assert done.exit_code == 1 and one in done.output  # failed: exit 1
    ambiguous = env.run("status", "abcd")
    assert ambiguous.exit_code == EXIT_USAGE
    assert "ambiguous" in ambiguous.output and one in ambiguous.output
    assert "abcd2222-0000-4000-8000-000000000002" in ambiguous.output
    missing = env.run("status", "ffff0000")
    assert missing.exit_code == EXIT_NOT_FOUND and "error: no request or batch" in missing.output
    short = env.run("status", "abc")  # too short to be a prefix: not found, not a scan
    assert short.exit_code == EXIT_NOT_FOUND


def test_cancel_and_retry_take_prefixes_and_record_the_actor(env: Env) -> None:
    retrying = seed(env, "retrying")
    done = env.run("cancel", retrying[:8])
    assert done.exit_code == 0, done.output
    record = env.store.get(retrying)
    assert record is not None and record.state == "cancelled"
    last = env.store.history(retrying)[-1]
    assert last.state == "cancelled" and str(last.detail["by"]).startswith("cli")
    assert env.run("cancel", retrying[:8]).exit_code == 1  # not twice
    running = seed(env, "running")
    refused = env.run("cancel", running)
    assert refused.exit_code == 1 and "only scheduled, queued or retrying" in refused.output


def test_cancelled_retrying_request_is_not_run_again(env: Env) -> None:
    from worker.store.models import utcnow

    request_id = seed(env, "retrying")
    assert env.run("cancel", request_id).exit_code == 0
    assert env.store.claim(request_id, lease_until=utcnow()) is None  # the next run stops


def test_requests_finds_by_seat_prefix_email_part_and_state(env: Env) -> None:
    a = seed(env, "failed", seat_id="5eat0001-0000-4000-8000-000000000001",
             occupant_email="Jane.Doe@Acme.com", requested_by="cli")
    b = seed(env, "revoked", seat_id="5eat0002-0000-4000-8000-000000000002",
             occupant_email="joe@other.org", requested_by="api:ops-alice")
    by_seat = env.run("requests", "--seat", "5eat0001", "--json")
    assert [json.loads(line)["id"] for line in by_seat.output.splitlines()] == [a]
    by_domain = env.run("requests", "--email", "@acme.COM", "--json")
    assert [json.loads(line)["id"] for line in by_domain.output.splitlines()] == [a]
    by_state = env.run("requests", "--state", "success", "--json")
    assert [json.loads(line)["id"] for line in by_state.output.splitlines()] == [b]
    by_source = env.run("requests", "--source", "rest", "--json")
    assert [json.loads(line)["id"] for line in by_source.output.splitlines()] == [b]
    human = env.run("requests", "-q", "jane")
    assert human.exit_code == 0 and a[:8] in human.output and b[:8] not in human.output
    assert env.run("requests", "--state", "nope").exit_code == EXIT_USAGE


def test_batches_lists_batches_as_json_lines(env: Env, tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    path.write_text(f"seat_id,guard\n{uuid.uuid4()},false\n{uuid.uuid4()},false\n")
    made = env.run("batch", str(path), "--name", "leavers")
    assert made.exit_code == 0, made.output
    batch_id = made.output.strip().splitlines()[-1]
    listed = env.run("batches", "--json")
    (line,) = listed.output.splitlines()
    data = json.loads(line)
    assert (data["batch_id"], data["name"], data["total"]) == (batch_id, "leavers", 2)
    human = env.run("batches")
    assert batch_id[:8] in human.output and "leavers" in human.output
    status = env.run("status", batch_id[:8], "--json")
    assert json.loads(status.output)["batch_id"] == batch_id
    report = env.run("report", batch_id[:8], "--format", "json")
    assert len(json.loads(report.output)) == 2


def test_wait_with_no_worker_ends_with_its_own_code(env: Env, tmp_path: Path) -> None:
    done = env.run("revoke", str(uuid.uuid4()), "--unguarded", "--wait",
                   "--worker-grace", "1.5", "--timeout", "30")
    assert done.exit_code == EXIT_NO_WORKER, done.output
    assert "no worker is consuming" in done.output and "seat-revoker worker" in done.output
    path = tmp_path / "rows.csv"
    path.write_text(f"seat_id,guard\n{uuid.uuid4()},false\n")
    batch = env.run("batch", str(path), "--wait", "--worker-grace", "1.5", "--timeout", "30")
    assert batch.exit_code == EXIT_NO_WORKER, batch.output


def test_wait_timeout_says_what_the_request_waits_for(env: Env) -> None:
    registry = NodeRegistry(Redis.from_url(env.settings.redis_url),
                            env.settings.redis_key("nodes"))
    registry.beat("fake-node")  # someone consumes: the wait times out instead
    done = env.run("revoke", str(uuid.uuid4()), "--unguarded", "--wait", "--timeout", "0.5")
    assert done.exit_code == 3, done.output
    assert "timed out after 0.5s" in done.output and "seat-revoker status" in done.output
    registry.leave("fake-node")


def test_json_is_one_document_per_line_and_human_status_has_no_reprs(env: Env) -> None:
    request_id = seed(env, "revoked",
                      occupant_seen={"email": "x@acme.com", "status": "claimed"})
    env.store.update(request_id, state="revoked", event_detail={"http": 204, "seat": "s1"})
    as_json = env.run("status", request_id, "--json")
    assert len(as_json.output.strip().splitlines()) == 1
    assert json.loads(as_json.output)["history"]
    human = env.run("status", request_id).output
    assert "{'" not in human and "email=x@acme.com" in human and "http=204" in human
    health = env.run("status", "--json")
    assert len(health.output.strip().splitlines()) == 1


def test_usage_errors_use_the_same_error_line(env: Env) -> None:
    done = env.run("revoke")
    assert done.exit_code == EXIT_USAGE
    assert "error: Missing argument" in done.output and "Error:" not in done.output
    assert env.run("no-such-command").exit_code == EXIT_USAGE


@pytest.mark.parametrize("command", ["failed", "scheduled", "requests", "batches"])
def test_empty_lists_print_no_json_lines(env: Env, command: str) -> None:
    done = env.run(command, "--json")
    assert done.exit_code == 0 and done.output == ""
