"""The record store: where every revocation request and its outcome lives.

SQLite (WAL mode, safe with several worker processes) by default, PostgreSQL through
``DATABASE_URL``. This module persists and queries; the rules live in ``worker.revocation``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, func, insert, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from worker.models import Batch, BatchItem, RequestEvent, RevocationRequest, utcnow
from worker.outcomes import IN_FLIGHT_STATES, TERMINAL_STATES, State

MIGRATIONS = Path(__file__).with_name("migrations")
_PG_MIGRATION_LOCK = 0x5EA7  # pg_advisory_lock key serialising concurrent migrations


def make_engine(database_url: str) -> Engine:
    """An engine with the settings each backend needs for several concurrent processes."""
    url = make_url(database_url)
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    if url.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5)
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return engine


def migrate(engine: Engine) -> None:
    """Create or upgrade the schema to the newest migration. Safe to call concurrently."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
        elif connection.dialect.name == "sqlite":
            connection.exec_driver_sql("BEGIN IMMEDIATE")  # one migrator at a time
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


class Store:
    """Persistence of requests, batches and their history."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @classmethod
    def from_url(cls, database_url: str, *, migrate_schema: bool = True) -> Store:
        engine = make_engine(database_url)
        if migrate_schema:
            migrate(engine)
        return cls(engine)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions.begin() as session:
            yield session

    # -- requests -------------------------------------------------------------------------

    def add_requests(
        self,
        rows: Sequence[dict[str, Any]],
        batch: dict[str, Any] | None = None,
        lines: Sequence[int] | None = None,
    ) -> list[tuple[RevocationRequest, bool]]:
        """Insert requests; a row whose idempotency key exists yields the existing record.

        Returns ``(record, created)`` per row, in order; all rows (and the batch) commit
        together. Inserts are executemany statements, so 10,000 rows take well under a second.
        """
        for _ in range(3):  # a concurrent producer may insert one of our keys meanwhile
            try:
                return self._insert_new(rows, batch, lines)
            except IntegrityError:
                continue
        raise RuntimeError("could not insert requests: idempotency keys kept colliding")

    def _insert_new(
        self,
        rows: Sequence[dict[str, Any]],
        batch: dict[str, Any] | None,
        lines: Sequence[int] | None,
    ) -> list[tuple[RevocationRequest, bool]]:
        now = utcnow()
        with self.session() as session:
            if batch is not None:
                session.execute(insert(Batch), [{"created_at": now, **batch}])
            existing = self._by_keys(session, [row["idempotency_key"] for row in rows])
            results: list[tuple[RevocationRequest, bool]] = []
            fresh: list[dict[str, Any]] = []
            for row in rows:
                key = row["idempotency_key"]
                if key in existing:
                    results.append((existing[key], False))
                    continue
                values = {"attempts": 0, "created_at": now, "updated_at": now, **row}
                record = RevocationRequest(**values)
                existing[key] = record
                fresh.append(values)
                results.append((record, True))
            if fresh:
                # render_nulls keeps every row the same shape, so this stays one executemany
                # instead of one INSERT per distinct set of non-null columns.
                session.execute(
                    insert(RevocationRequest).execution_options(render_nulls=True), fresh
                )
                session.execute(
                    insert(RequestEvent),
                    [{"request_id": v["id"], "at": now, "state": v["state"], "attempt": 0}
                     for v in fresh],
                )
            if batch is not None:
                numbers = lines if lines is not None else range(1, len(results) + 1)
                session.execute(
                    insert(BatchItem),
                    [{"batch_id": batch["id"], "line": line, "request_id": record.id}
                     for line, (record, _created) in zip(numbers, results, strict=True)],
                )
            return results

    def _by_keys(self, session: Session, keys: Iterable[str]) -> dict[str, RevocationRequest]:
        found: dict[str, RevocationRequest] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            query = select(RevocationRequest).where(RevocationRequest.idempotency_key.in_(chunk))
            for record in session.scalars(query):
                found[record.idempotency_key] = record
        return found

    def get(self, request_id: str) -> RevocationRequest | None:
        with self.session() as session:
            return session.get(RevocationRequest, request_id)

    def get_by_key(self, key: str) -> RevocationRequest | None:
        with self.session() as session:
            return session.scalar(
                select(RevocationRequest).where(RevocationRequest.idempotency_key == key)
            )

    def claim(self, request_id: str, *, lease_until: datetime) -> RevocationRequest | None:
        """Mark a non-terminal request running for this attempt; ``None`` if it is terminal."""
        now = utcnow()
        with self.session() as session:
            result = session.execute(
                update(RevocationRequest)
                .where(
                    RevocationRequest.id == request_id,
                    RevocationRequest.state.not_in([s.value for s in TERMINAL_STATES]),
                )
                .values(
                    state=State.RUNNING.value,
                    attempts=RevocationRequest.attempts + 1,
                    lease_expires_at=lease_until,
                    updated_at=now,
                )
            )
            if result.rowcount == 0:  # type: ignore[attr-defined]
                return None
            record = session.get(RevocationRequest, request_id, populate_existing=True)
            assert record is not None
            session.add(
                RequestEvent(
                    request_id=request_id, at=now, state=State.RUNNING, attempt=record.attempts
                )
            )
            return record

    def update(
        self, request_id: str, *, event_detail: dict[str, Any] | None = None, **changes: Any
    ) -> RevocationRequest:
        """Apply ``changes``; a change of state is added to the request's history."""
        now = utcnow()
        with self.session() as session:
            record = session.get(RevocationRequest, request_id, with_for_update=True)
            if record is None:
                raise KeyError(request_id)
            state = changes.get("state")
            for name, value in changes.items():
                setattr(record, name, value.value if isinstance(value, State) else value)
            record.updated_at = now
            if state is not None:
                if State(state).is_terminal:
                    record.finished_at = now
                    record.lease_expires_at = None
                session.add(
                    RequestEvent(
                        request_id=request_id,
                        at=now,
                        state=str(state),
                        attempt=record.attempts,
                        detail=event_detail,
                    )
                )
            return record

    def renew_lease(self, request_id: str, *, until: datetime) -> bool:
        """Extend a running request's lease (its worker's heartbeat); False once it is no
        longer running (finished, or handed to another attempt)."""
        with self.session() as session:
            result = session.execute(
                update(RevocationRequest)
                .where(RevocationRequest.id == request_id,
                       RevocationRequest.state == State.RUNNING.value)
                .values(lease_expires_at=until)
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    def in_flight(self, *, updated_before: datetime, limit: int = 100_000
                  ) -> list[tuple[str, str]]:
        """(id, state) of queued, running and retrying requests last changed before
        ``updated_before`` — what the reconciler checks against the broker."""
        with self.session() as session:
            rows = session.execute(
                select(RevocationRequest.id, RevocationRequest.state)
                .where(RevocationRequest.state.in_([s.value for s in IN_FLIGHT_STATES]),
                       RevocationRequest.updated_at < updated_before)
                .limit(limit)
            ).all()
            return [(row[0], row[1]) for row in rows]

    def transition(
        self,
        request_ids: Sequence[str],
        *,
        from_states: Iterable[State],
        to_state: State,
        detail: dict[str, Any] | None = None,
        **values: Any,
    ) -> list[str]:
        """Move requests that are in ``from_states`` to ``to_state`` (compare-and-set);
        returns the ids that moved. Each move is recorded in the request's history."""
        now = utcnow()
        sources = [s.value for s in from_states]
        if to_state.is_terminal:
            values = {"finished_at": now, "lease_expires_at": None, **values}
        moved: list[str] = []
        with self.session() as session:
            for start in range(0, len(request_ids), 500):
                chunk = list(request_ids[start : start + 500])
                rows = session.execute(
                    update(RevocationRequest)
                    .where(RevocationRequest.id.in_(chunk),
                           RevocationRequest.state.in_(sources))
                    .values(state=to_state.value, updated_at=now, **values)
                    .returning(RevocationRequest.id, RevocationRequest.attempts)
                ).all()
                moved += [row[0] for row in rows]
                if rows:
                    session.execute(insert(RequestEvent), [
                        {"request_id": rid, "at": now, "state": to_state.value,
                         "attempt": attempts, "detail": detail} for rid, attempts in rows
                    ])
        return moved

    def find(
        self,
        *,
        states: Iterable[State],
        lease_before: datetime | None = None,
        effective_before: datetime | None = None,
        updated_since: datetime | None = None,
        limit: int = 1000,
    ) -> list[RevocationRequest]:
        """Requests in ``states``, oldest first, filtered by lease, due time or update time."""
        query = select(RevocationRequest).where(
            RevocationRequest.state.in_([s.value for s in states])
        )
        if lease_before is not None:
            query = query.where(
                (RevocationRequest.lease_expires_at < lease_before)
                | RevocationRequest.lease_expires_at.is_(None)
            )
        if effective_before is not None:
            query = query.where(RevocationRequest.effective_at <= effective_before)
        if updated_since is not None:
            query = query.where(RevocationRequest.updated_at >= updated_since)
        with self.session() as session:
            return list(session.scalars(query.order_by(RevocationRequest.updated_at).limit(limit)))

    def last_revocation_of_seat(
        self, seat_id: str, *, excluding: str
    ) -> RevocationRequest | None:
        """The newest request, other than ``excluding``, that revoked this seat."""
        with self.session() as session:
            return session.scalar(
                select(RevocationRequest)
                .where(
                    RevocationRequest.seat_id == seat_id,
                    RevocationRequest.state == State.REVOKED.value,
                    RevocationRequest.id != excluding,
                )
                .order_by(RevocationRequest.finished_at.desc())
                .limit(1)
            )

    def last_snapshot_of_seat(self, seat_id: str) -> dict[str, Any] | None:
        """The newest seat snapshot stored for this seat by any request (it names the
        seat's subscription/order, which stays the seat's for good)."""
        with self.session() as session:
            snapshots = session.scalars(
                select(RevocationRequest.seat_snapshot)
                .where(RevocationRequest.seat_id == seat_id)
                .order_by(RevocationRequest.updated_at.desc())
                .limit(20)
            )
            return next((snapshot for snapshot in snapshots if snapshot), None)

    def history(self, request_id: str) -> list[RequestEvent]:
        with self.session() as session:
            return list(
                session.scalars(
                    select(RequestEvent)
                    .where(RequestEvent.request_id == request_id)
                    .order_by(RequestEvent.id)
                )
            )

    def count_by_state(self, batch_id: str | None = None) -> dict[str, int]:
        query = select(RevocationRequest.state, func.count()).group_by(RevocationRequest.state)
        if batch_id is not None:
            query = query.where(RevocationRequest.batch_id == batch_id)
        with self.session() as session:
            return {state: count for state, count in session.execute(query).all()}
