"""Read-only commands (`status ID`, `failed`, `report`, `requests`, `batches`, `scheduled`)
never create or migrate the store: a store without its schema, or with an older or newer
one, is a one-line error (exit 2) naming the store and who creates or upgrades it."""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import text

from config.settings import Settings
from worker.cli.main import main
from worker.store.engine import StoreError
from worker.store.records import Store

READ_ONLY = [
    ["status", "0000"],
    ["failed"],
    ["report", "0000"],
    ["report", "--person", "jane@acme.com"],
    ["requests"],
    ["batches"],
    ["scheduled"],
]


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    names = {name.upper() for name in Settings.model_fields}
    for var in list(os.environ):
        if var.upper() in names:
            monkeypatch.delenv(var)
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setenv("NAMESPACE", f"ro-{uuid.uuid4().hex[:10]}")
    path = tmp_path / "store.db"
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{path}")
    return path


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def tables(path: Path) -> list[str]:
    with sqlite3.connect(path) as connection:
        return [row[0] for row in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")]


@pytest.mark.parametrize("args", READ_ONLY, ids=" ".join)
def test_on_an_empty_file_a_read_only_command_says_who_creates_the_schema(
    database: Path, args: list[str]
) -> None:
    database.touch()
    done = run(*args)
    assert done.exit_code == 2, done.output
    assert done.output.count("\n") == 1 and "Traceback" not in done.output
    assert done.output.startswith(f"error: the store sqlite:///{database} has no schema yet")
    assert "seat-revoker worker" in done.output and "seat-revoker api" in done.output
    assert tables(database) == []  # nothing created, nothing migrated


def test_a_missing_file_is_not_created(database: Path) -> None:
    done = run("failed")
    assert done.exit_code == 2, done.output
    assert "has no schema yet" in done.output
    assert not database.exists()


def test_a_schema_behind_says_a_worker_or_the_api_upgrades_it(database: Path) -> None:
    Store.from_url(f"sqlite:///{database}").engine.dispose()
    with sqlite3.connect(database) as connection:
        connection.execute("UPDATE alembic_version SET version_num = '0006'")
    done = run("batches")
    assert done.exit_code == 2, done.output
    assert "schema revision 0006, older than this version's 0008" in done.output
    assert "seat-revoker worker" in done.output and done.output.count("\n") == 1


def test_a_schema_newer_than_this_version_is_named(database: Path) -> None:
    store = Store.from_url(f"sqlite:///{database}")
    with store.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0099'"))
    store.engine.dispose()
    with pytest.raises(StoreError, match="revision 0099, newer than this seat-revoker"):
        Store.open_read_only(f"sqlite:///{database}")


def test_on_a_migrated_store_read_only_commands_work(database: Path) -> None:
    store = Store.from_url(f"sqlite:///{database}")
    request_id = str(uuid.uuid4())
    store.add_requests([{"id": request_id, "idempotency_key": f"t:{request_id}",
                         "seat_id": str(uuid.uuid4()), "state": "queued"}])
    store.update(request_id, state="failed", last_error="404 ResourceNotFound")
    store.engine.dispose()
    failed = run("failed", "--json")
    assert failed.exit_code == 0, failed.output
    assert [json.loads(line)["id"] for line in failed.output.splitlines()] == [request_id]
    for args in (["requests"], ["batches"], ["scheduled"]):
        assert run(*args).exit_code == 0
    shown = run("status", request_id[:8])
    assert shown.exit_code == 1 and "failed" in shown.output  # 1: the request failed
