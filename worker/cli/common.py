"""What every command shares: settings, one-line errors and exit codes, JSON output,
finding a request or batch by what an operator types, waiting for an outcome."""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import click
from pydantic import SecretStr, ValidationError

from config.settings import Settings
from worker.cli.display import print_record
from worker.cli.exitcodes import Exit
from worker.decisions.outcomes import State
from worker.jobs.fleetpause import FleetPause, PauseInfo
from worker.jobs.liveness import WorkerWatch
from worker.store.lookup import Ambiguous, NotFound
from worker.store.models import RevocationRequest
from worker.store.records import Store

# The exit statuses (one table for every command: worker/cli/exitcodes.py, README.md).
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_TIMEOUT = Exit.OK, Exit.FAILED, Exit.USAGE, Exit.TIMEOUT
EXIT_NO_WORKER, EXIT_PAUSED, EXIT_NOT_FOUND = Exit.NO_WORKER, Exit.PAUSED, Exit.NOT_FOUND
# Column sizes of the batch's name and source in the store (worker/store/models.py).
MAX_NAME, MAX_SOURCE = 200, 500


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(int(code))


def emit_json(document: Any) -> None:
    """``--json`` of a command about one thing: one JSON document on one line."""
    click.echo(json.dumps(document, default=str))


def emit_json_lines(documents: Any) -> None:
    """``--json`` of a list: JSON Lines, one document per line (nothing for none)."""
    for document in documents:
        click.echo(json.dumps(document, default=str))


def actor() -> str:
    """Who runs this command, recorded with retries and cancellations."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no name for this uid (containers)
        return "cli"


def find_request(store: Store, text: str) -> RevocationRequest:
    """The request an id, a unique id prefix or an idempotency key names; else exit."""
    from worker.store.lookup import resolve_request

    try:
        return resolve_request(store, text)
    except Ambiguous as exc:
        fail(str(exc))
    except NotFound as exc:
        fail(str(exc), EXIT_NOT_FOUND)


def find_batch(store: Store, text: str) -> str:
    """The id of the batch an id or unique id prefix names; else exit."""
    from worker.store.lookup import resolve_batch

    try:
        return resolve_batch(store, text).id
    except Ambiguous as exc:
        fail(str(exc))
    except NotFound as exc:
        fail(str(exc), EXIT_NOT_FOUND)


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        fail("invalid configuration: " + validation_text(exc))


def refusal_text(exc: ValueError) -> str:
    """A producer's refusal (``ValueError`` or ``pydantic.ValidationError``) in one line."""
    if isinstance(exc, ValidationError):
        return validation_text(exc)
    return str(exc).removeprefix("Value error, ")


def validation_text(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "input"
        message = str(error["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}: {message}")
    return "; ".join(parts)


def utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def read_secret_file(path: Path) -> SecretStr:
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}")
    if not value:
        fail(f"{path} is empty")
    return SecretStr(value)


def wait_for(store: Store, request_id: str, timeout: float,
             watch: WorkerWatch | None = None) -> RevocationRequest:
    """The request once it ended, is held at the circuit breaker (itself, or for a person
    every unfinished seat of it: nothing moves until an operator acts), or ``timeout``
    passed; ``NoWorker`` from ``watch``."""
    deadline = time.monotonic() + timeout
    while True:
        record = store.get(request_id)
        assert record is not None
        if State(record.state).is_terminal or time.monotonic() > deadline \
                or held_at_breaker(store, record):
            return record
        if watch is not None:
            watch.check()
        time.sleep(0.2)


def held_at_breaker(store: Store, record: RevocationRequest) -> bool:
    if record.state == State.HELD:
        return True
    if record.kind != "person" or State(record.state).is_terminal:
        return False
    unfinished = [c for c in store.children_of(record.id) if not State(c.state).is_terminal]
    return bool(unfinished) and all(c.state == State.HELD for c in unfinished)


def fail_held(record: RevocationRequest) -> NoReturn:
    """Exit 5 for a request that waits for an operator at the circuit breaker."""
    fail(f"request {record.id} is held at the circuit breaker"
         f"{': ' + record.outcome_detail if record.outcome_detail else ''}; nothing is "
         "revoked until an operator acts: seat-revoker held, then seat-revoker release or "
         "reject", EXIT_PAUSED)


def show(record: RevocationRequest, as_json: bool, history: list[Any] | None = None) -> None:
    if as_json:
        data = record.to_dict()
        if history is not None:
            data["history"] = [
                {"at": e.at.isoformat(), "state": e.state, "attempt": e.attempt,
                 "detail": e.detail}
                for e in history
            ]
        emit_json(data)
    else:
        print_record(record, history)


def print_requests(records: list[RevocationRequest], as_json: bool, *, title: str,
                   columns: tuple[str, ...]) -> None:
    if as_json:
        emit_json_lines(record.to_dict() for record in records)
        return
    from worker.cli.display import print_request_table

    print_request_table(records, title=title, columns=columns)


def still_why(record: RevocationRequest) -> str:
    """What an unfinished request is waiting on, for a timeout's message."""
    if record.state == State.SCHEDULED and record.effective_at:
        return f" (until {record.effective_at.isoformat(timespec='seconds')})"
    if record.state == State.RETRYING:
        last = f"; last error: {record.last_error}" if record.last_error else ""
        return f" (after {record.attempts} attempt(s){last})"
    return ""


def fleet_pause(settings: Settings) -> FleetPause:
    """The queue's pause switch, as the workers build it."""
    from worker.connections import redis_client

    redis = redis_client(settings.redis_url, timeout=5, connect_timeout=5)
    return FleetPause(redis, settings.redis_key("pause"),
                      probe_seconds=settings.pause_probe_seconds)


def read_pauses(settings: Settings) -> list[PauseInfo]:
    from redis.exceptions import RedisError

    try:
        pauses = fleet_pause(settings).all()
    except RedisError as exc:
        fail(f"cannot read the queue's state from Redis ({type(exc).__name__}: {exc})",
             EXIT_FAILED)
    return pauses
