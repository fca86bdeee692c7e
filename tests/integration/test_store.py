"""The record store on each backend: migrations, schema, dedupe, compare-and-set."""

from __future__ import annotations

import subprocess
import sys
import uuid
from datetime import timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from worker.decisions.outcomes import State
from worker.store.engine import make_engine, migrate
from worker.store.models import Base, utcnow
from worker.store.records import Store

pytestmark = pytest.mark.integration


def row(key: str | None = None, **values: object) -> dict[str, object]:
    return {"id": str(uuid.uuid4()), "idempotency_key": key or f"k-{uuid.uuid4()}",
            "seat_id": str(uuid.uuid4()), "mode": "organization", "state": "queued", **values}


def test_migrations_build_exactly_the_schema_the_models_describe(database_url: str) -> None:
    engine = make_engine(database_url)
    migrate(engine)
    migrate(engine)  # a second run is a no-op
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
    assert diff == []
    assert version == "0008"
    assert {"revocation_requests", "batches", "batch_items", "request_events",
            "webhook_deliveries", "store_identity"} <= set(inspect(engine).get_table_names())


def test_concurrent_processes_migrate_one_fresh_database(database_url: str) -> None:
    code = "import sys; from worker.store.records import Store; Store.from_url(sys.argv[1])"
    procs = [subprocess.Popen([sys.executable, "-c", code, database_url],
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    errors = [p.communicate(timeout=120)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], errors
    store = Store.from_url(database_url)
    assert store.add_requests([row()])[0][1] is True


def test_same_key_returns_the_existing_record(database_url: str) -> None:
    store = Store.from_url(database_url)
    first = row("same")
    (created, is_new), = store.add_requests([first])
    (again, again_new), = store.add_requests([row("same")])
    assert is_new and not again_new and again.id == created.id == first["id"]
    assert [e.state for e in store.history(created.id)] == ["queued"]


def test_claim_is_refused_once_terminal(database_url: str) -> None:
    store = Store.from_url(database_url)
    (record, _), = store.add_requests([row()])
    lease = utcnow() + timedelta(minutes=5)
    claimed = store.claim(record.id, lease_until=lease)
    assert claimed is not None and claimed.state == "running" and claimed.attempts == 1
    store.update(record.id, state=State.REVOKED)
    assert store.claim(record.id, lease_until=lease) is None
    final = store.get(record.id)
    assert final is not None and final.finished_at is not None and final.attempts == 1
    assert final.created_at.tzinfo is not None  # UTC-aware on every backend


def test_transition_moves_only_rows_in_the_given_states(database_url: str) -> None:
    store = Store.from_url(database_url)
    rows = [row(), row(state="failed"), row(state="revoked")]
    store.add_requests(rows)
    moved = store.transition([r["id"] for r in rows], from_states=[State.FAILED],
                             to_state=State.QUEUED, detail={"retry": "manual"})
    assert moved == [rows[1]["id"]]
    states = {r["id"]: store.get(str(r["id"])).state for r in rows}  # type: ignore[union-attr]
    assert states == {rows[0]["id"]: "queued", rows[1]["id"]: "queued",
                      rows[2]["id"]: "revoked"}


def test_ten_thousand_rows_insert_in_one_transaction(database_url: str) -> None:
    store = Store.from_url(database_url)
    rows = [row() for _ in range(10_000)]
    results = store.add_requests(rows, batch={"id": str(uuid.uuid4()), "total": 10_000})
    assert sum(created for _, created in results) == 10_000
    assert store.count_by_state()["queued"] >= 10_000


def test_a_message_is_claimed_once_and_a_failed_publish_gives_the_claim_back(
    database_url: str,
) -> None:
    """Two producers racing to send one unsent request: only the first claim wins; a claim
    given back after a failed publish can be taken again, a newer claim is not undone."""
    store = Store.from_url(database_url)
    (record, _), (other, _) = store.add_requests([row(sent_at=None), row(sent_at=None)])
    first, stamp = store.claim_unsent([record.id, other.id])
    assert first == [(record.id, "urgent"), (other.id, "urgent")]
    assert store.claim_unsent([record.id, other.id])[0] == []
    store.release_claim([record.id], stamp)
    again, later = store.claim_unsent([other.id, record.id])
    assert again == [(record.id, "urgent")]
    store.release_claim([record.id], stamp)  # an older claim: nothing changes
    assert store.claim_unsent([record.id])[0] == []
    stored = store.get(record.id)
    assert stored is not None and stored.sent_at == later
