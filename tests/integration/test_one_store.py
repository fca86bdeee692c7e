"""One store per deployment, or a loud refusal (issue 9, task 1).

Real Redis (``redis_url``), real SQLite/PostgreSQL stores, real ``seat-revoker`` processes
and the sandbox: the README's producer run from another directory reaches the worker's
store; a producer or worker on another store refuses, naming both; a message for a request
the store does not have is retried, then reported and counted, never dropped silently.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis
from sqlalchemy.engine import make_url

from config.settings import Settings
from worker.intake.producer import Producer
from worker.sandbox.localstack import LocalStack
from worker.sandbox.procs import WorkerProcess
from worker.store.binding import StoreMismatch, binding_key
from worker.store.records import Store

pytestmark = pytest.mark.integration


def settings_for(redis_url: str, database_url: str, namespace: str) -> Settings:
    return Settings(_env_file=None, redis_url=redis_url, database_url=database_url,  # type: ignore[call-arg]
                    namespace=namespace)


@pytest.fixture
def namespace(redis_url: str) -> Iterator[str]:
    name = f"one-store-{uuid.uuid4().hex[:10]}"
    yield name
    redis = Redis.from_url(redis_url)
    for key in redis.scan_iter(f"{name}:*"):
        redis.delete(key)
    redis.close()


def with_password(database_url: str, password: str) -> str:
    """The same database, with a password in the URL (trust auth ignores it; SQLite has
    none)."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        return database_url
    return url.set(password=password).render_as_string(hide_password=False)


def test_a_producer_on_another_store_refuses_naming_both(
    redis_url: str, namespace: str, tmp_path: Path, database_url: str
) -> None:
    first = settings_for(redis_url, f"sqlite:///{tmp_path / 'workers.db'}", namespace)
    Producer(first).close()  # binds the namespace to the workers' store
    other_url = with_password(database_url, "s3cr3t-pw")

    with pytest.raises(StoreMismatch) as refused:
        Producer(settings_for(redis_url, other_url, namespace))

    message = str(refused.value)
    assert str(tmp_path / "workers.db") in message  # theirs
    shown = make_url(other_url)
    assert (shown.database or "") in message  # ours
    assert "s3cr3t-pw" not in message
    assert "DATABASE_URL" in message and "NAMESPACE" in message
    assert "\n" not in message
    # The store it was bound to goes on working.
    again = Producer(first)
    again.close()


def test_the_same_store_under_another_name_is_accepted(
    redis_url: str, namespace: str, tmp_path: Path
) -> None:
    """Same file through a relative and an absolute URL: one store id, no refusal."""
    path = tmp_path / "same.db"
    Producer(settings_for(redis_url, f"sqlite:///{path}", namespace)).close()
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        Producer(settings_for(redis_url, "sqlite:///./same.db", namespace)).close()
    finally:
        os.chdir(cwd)


def cli(env: dict[str, str], *args: str, cwd: Path | None = None,
        unset: tuple[str, ...] = (), timeout: float = 60) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, **env, "LOG_FORMAT": "json"}
    for name in unset:
        environment.pop(name, None)
    return subprocess.run([sys.executable, "-m", "worker.cli.main", *args], env=environment,
                          cwd=cwd, capture_output=True, text=True, timeout=timeout)


def one_line_error(done: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert "Traceback" not in done.stderr, done.stderr
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.fixture
def stack(redis_url: str, tmp_path: Path) -> Iterator[LocalStack]:
    with LocalStack(workdir=tmp_path / "stack", redis_url=redis_url,
                    settings_overrides={"unknown_request_seconds": 4.0,
                                        "scheduler_interval_seconds": 1.0}) as local:
        yield local


def test_worker_and_revoke_on_another_store_refuse_in_one_line(
    stack: LocalStack, tmp_path: Path
) -> None:
    stack.producer  # noqa: B018 - binds the namespace to the stack's store
    other = {**stack.env, "DATABASE_URL": f"sqlite:///{tmp_path / 'elsewhere.db'}"}

    started = time.monotonic()
    worker = cli(other, "worker", "--concurrency=1")
    assert worker.returncode == 2
    line = one_line_error(worker)
    assert "elsewhere.db" in line and "seat-revoker.db" in line
    assert time.monotonic() - started < 30

    revoke = cli(other, "revoke", str(uuid.uuid4()), "--unguarded")
    assert revoke.returncode == 2
    assert "elsewhere.db" in one_line_error(revoke)
    # Nothing was recorded in the stray store either.
    assert Store.from_url(other["DATABASE_URL"]).count_by_state() == {}


def test_readme_producer_from_another_directory_reaches_the_worker(
    stack: LocalStack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Neither process sets DATABASE_URL; they run in different directories: the default
    store is the same file for both (it is not relative to the working directory)."""
    monkeypatch.delenv("DATABASE_URL", raising=False)
    xdg = tmp_path / "xdg-data"
    env = {**{k: v for k, v in stack.env.items() if k != "DATABASE_URL"},
           "XDG_DATA_HOME": str(xdg)}
    here, there = tmp_path / "ops-shell", tmp_path / "hr-scripts"
    here.mkdir()
    there.mkdir()
    worker = WorkerProcess(env=env, log_path=tmp_path / "default-worker.log", concurrency=1,
                           cwd=here, unset=("DATABASE_URL",)).start()
    try:
        seat_id = stack.control.create_seats([{"status": "claimed",
                                               "email": "leaver@acme.test"}])[0]["id"]
        script = ("from worker.intake.producer import enqueue_revocation\n"
                  f"record = enqueue_revocation({seat_id!r}, guard=False)\n"
                  "print(record.id)\n")
        produced = subprocess.run([sys.executable, "-c", script], cwd=there,
                                  env={**os.environ, **env}, capture_output=True, text=True,
                                  timeout=60)
        assert produced.returncode == 0, produced.stderr
        request_id = produced.stdout.strip().splitlines()[-1]
        default_db = xdg / "seat-revoker" / "seat-revoker.db"
        assert default_db.exists()
        assert not (there / "var").exists() and not (here / "var").exists()
        store = Store.from_url(f"sqlite:///{default_db}")
        deadline = time.monotonic() + 60
        while (record := store.get(request_id)) is None or record.state != "revoked":
            assert time.monotonic() < deadline, record
            time.sleep(0.2)
        store.engine.dispose()
    finally:
        worker.stop()


def worker_events(stack: LocalStack) -> list[dict[str, object]]:
    events = []
    for line in stack.logs().splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            continue
    return events


def test_a_request_recorded_late_is_not_dropped(stack: LocalStack) -> None:
    """The message arrives before the record (a commit still landing): the worker waits
    for it instead of dropping the message. No scheduler, so nothing else re-sends it."""
    stack.add_worker(concurrency=1, extra_args=["--no-scheduler"])
    seat_id = stack.control.create_seats([{"status": "claimed",
                                           "email": "late@acme.test"}])[0]["id"]
    request_id = str(uuid.uuid4())
    stack.producer.publish([request_id], priority="urgent")  # the message first ...
    time.sleep(1.5)
    row = {"id": request_id, "idempotency_key": f"late:{request_id}", "seat_id": seat_id,
           "state": "queued", "guarded": False, "sent_at": None}
    stack.store.add_requests([row])  # ... then the record
    record = stack.wait_terminal([request_id], timeout=30)[0]
    assert record.state == "revoked"
    assert any(e.get("event") == "request.not_found_yet" for e in worker_events(stack))


def test_an_unknown_request_is_retried_then_reported_and_counted(stack: LocalStack) -> None:
    stack.add_worker(concurrency=1)
    redis = Redis.from_url(stack.settings.redis_url)
    request_id = str(uuid.uuid4())
    stack.producer.publish([request_id], priority="urgent")
    deadline = time.monotonic() + 40
    while not any(e.get("event") == "request.unknown" for e in worker_events(stack)):
        assert time.monotonic() < deadline, "no request.unknown error logged"
        time.sleep(0.2)
    events = worker_events(stack)
    unknown = [e for e in events if e.get("event") == "request.unknown"]
    assert len(unknown) == 1 and unknown[0]["level"] == "error"
    assert unknown[0]["request_id"] == request_id
    assert float(str(unknown[0]["waited_s"])) >= 4.0
    retries = [e for e in events if e.get("event") == "request.not_found_yet"]
    assert len(retries) >= 2
    assert int(redis.hget(stack.settings.redis_key("metrics", "unknown_requests"),
                          "count") or 0) == 1
    redis.close()


def test_binding_is_claimed_again_after_redis_lost_it(
    redis_url: str, namespace: str, tmp_path: Path
) -> None:
    settings = settings_for(redis_url, f"sqlite:///{tmp_path / 'a.db'}", namespace)
    producer = Producer(settings)
    redis = Redis.from_url(redis_url)
    redis.delete(binding_key(settings))  # Redis restarted empty
    producer.verify_store()
    bound = json.loads(redis.get(binding_key(settings)) or b"{}")
    assert bound["store_id"] == producer.store.store_id()
    assert bound["database_url"] == f"sqlite:///{tmp_path / 'a.db'}"
    producer.close()
    redis.close()
