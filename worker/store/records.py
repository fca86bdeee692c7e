"""The record store: where every revocation request and its outcome lives.

SQLite (WAL mode, safe with several worker processes) by default, PostgreSQL through
``DATABASE_URL``. This module persists and queries; the rules live in ``worker.jobs.revocation``.

Every store has a random id (table ``store_identity``). ``bind_store`` records it in Redis
under the namespace, so a producer or worker that opened another store (another
``DATABASE_URL``, or a relative SQLite path run from another directory) refuses to work
instead of recording requests no worker will ever see.

A store that cannot be used (a garbage ``DATABASE_URL``, an unreachable server, a locked,
read-only or unwritable file) raises ``StoreError`` — a ``ConfigError`` whose message names
the problem in one line, never a password. A SQLite connection that hit a read-only or I/O
error, or a PostgreSQL one that landed on a read-only server, is discarded, so the process
heals once the cause is fixed.
"""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from redis import Redis
from sqlalchemy import Engine, create_engine, event, func, insert, select, text, update
from sqlalchemy.engine import URL, ExceptionContext, make_url
from sqlalchemy.exc import (
    ArgumentError,
    IntegrityError,
    InterfaceError,
    InternalError,
    NoSuchModuleError,
    OperationalError,
)
from sqlalchemy.orm import Session, sessionmaker

from config.settings import ConfigError, Settings, redacted_url
from worker.connections import redis_client
from worker.decisions.outcomes import IN_FLIGHT_STATES, TERMINAL_STATES, State
from worker.store.models import (
    Batch,
    BatchItem,
    RequestEvent,
    RevocationRequest,
    StoreIdentity,
    utcnow,
)

MIGRATIONS = Path(__file__).with_name("migrations")
_PG_MIGRATION_LOCK = 0x5EA7  # pg_advisory_lock key serialising concurrent migrations
SQLITE_BUSY_TIMEOUT = 30.0  # seconds a SQLite write waits for another writer's lock
PG_CONNECT_TIMEOUT = 10  # seconds, unless DATABASE_URL says connect_timeout=…
CHECK_BUSY_TIMEOUT_MS = 5000  # Store.check(): a readiness probe must answer promptly
# SQLite primary result codes after which a connection is discarded (it may have been
# opened read-only, or its file handle be stale): READONLY, IOERR, CANTOPEN, PERM, NOTADB.
_SQLITE_RECONNECT_CODES = frozenset({8, 10, 14, 3, 26})
# PostgreSQL SQLSTATEs after which a connection is discarded: read-only transaction (a
# failover left us on a replica), admin/crash shutdown, cannot connect now.
_PG_RECONNECT_STATES = frozenset({"25006", "57P01", "57P02", "57P03"})
_DB_ERRORS = (OperationalError, InterfaceError, InternalError)


class StoreError(ConfigError):
    """The record store cannot be used: ``DATABASE_URL`` is not a database URL, the server
    is unreachable, the file is locked, read-only or cannot be created. The message names
    the problem and the store (password hidden) in one line."""


class StoreUnavailable(StoreError):
    """A database error while working: the store was reachable before and may heal (a
    worker retries the task; ``Store.check()`` reports it for readiness probes)."""


class StoreMismatch(StoreError):
    """This process opened another store than the one the namespace is bound to."""


def display_url(url: URL | str) -> str:
    """The store's URL for messages: password hidden, a SQLite path made absolute."""
    if isinstance(url, str):
        try:
            parsed = make_url(url)
        except ArgumentError:
            return redacted_url(url)
        url = parsed
    if url.get_backend_name() == "sqlite":
        database = url.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            url = url.set(database=str(Path(database).expanduser().absolute()))
    return url.render_as_string(hide_password=True)


def describe_db_error(error: BaseException, shown: str, *, secret: str | None = None) -> str:
    """One line saying what is wrong with the store at ``shown`` (pure)."""
    original = getattr(error, "orig", None) or error
    text_ = " ".join(str(original).split()) or type(original).__name__
    if secret:
        text_ = text_.replace(secret, "***")
    if shown.startswith("sqlite"):
        path = shown.split(":///", 1)[-1]
        lowered = text_.lower()
        if "readonly" in lowered or "read-only" in lowered:
            return (f"the SQLite database {path} is read-only for this process ({text_}): "
                    "make the file, its -wal/-shm files and its directory writable by the "
                    "user running seat-revoker")
        if "locked" in lowered or "busy" in lowered:
            return (f"the SQLite database {path} is locked by another process ({text_}); "
                    "a long transaction or a tool holding it open (sqlite3 shell, backup) "
                    "must finish first")
        if "unable to open" in lowered:
            return (f"cannot open the SQLite database {path} ({text_}): check that its "
                    "directory exists and is writable")
        return f"the SQLite database {path}: {text_}"
    return f"the database at {shown}: {text_}"


def _should_reconnect(error: BaseException) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    if isinstance(code, int) and (code & 0xFF) in _SQLITE_RECONNECT_CODES:
        return True
    return getattr(error, "sqlstate", None) in _PG_RECONNECT_STATES


def _prepare_sqlite_file(path: Path) -> None:
    """Create the database file (and its directory) readable by its owner only: SQLite
    gives its -wal and -shm files the database file's mode."""
    if not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return
    os.close(fd)


def make_engine(database_url: str) -> Engine:
    """An engine with the settings each backend needs for several concurrent processes.

    Raises ``StoreError`` when ``database_url`` is not a usable database URL."""
    try:
        url = make_url(database_url)
    except ArgumentError:
        raise StoreError(
            f"DATABASE_URL {redacted_url(database_url)!r} is not a database URL: use "
            "sqlite:////absolute/path/seat-revoker.db or postgresql://user@host/database"
        ) from None
    if url.drivername in ("postgresql", "postgres"):
        url = url.set(drivername="postgresql+psycopg")
    shown = display_url(url)
    try:
        if url.get_backend_name() != "sqlite":
            connect_args: dict[str, Any] = {}
            if url.get_backend_name() == "postgresql" and "connect_timeout" not in url.query:
                connect_args["connect_timeout"] = PG_CONNECT_TIMEOUT
            engine = create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=5,
                                   connect_args=connect_args)
        else:
            engine = _sqlite_engine(url, shown)
    except (NoSuchModuleError, ImportError):
        raise StoreError(
            f"DATABASE_URL {shown!r}: {url.drivername!r} is not a supported database "
            "(use sqlite:// or postgresql://)"
        ) from None
    except ArgumentError as exc:
        raise StoreError(f"DATABASE_URL {shown!r}: {exc}") from None

    @event.listens_for(engine, "handle_error")
    def _discard_broken_connections(context: ExceptionContext) -> None:
        # A SQLite connection opened while its file was read-only stays read-only; one on a
        # PostgreSQL replica stays on it: throw the pool away so the next use reconnects.
        if not context.is_pre_ping and _should_reconnect(context.original_exception):
            context.is_disconnect = True

    return engine


def _sqlite_engine(url: URL, shown: str) -> Engine:
    timeout = float(url.query.get("timeout", SQLITE_BUSY_TIMEOUT))  # type: ignore[arg-type]
    database = url.database
    if database and database != ":memory:" and not database.startswith("file:"):
        path = Path(database).expanduser()
        try:
            _prepare_sqlite_file(path)
        except OSError as exc:
            raise StoreError(
                f"cannot create the SQLite database {path.absolute()}: {exc.strerror}; "
                "set DATABASE_URL to a writable location"
            ) from None
    engine = create_engine(url, connect_args={"timeout": timeout})
    busy_ms = int(timeout * 1000)

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return engine


def migrate(engine: Engine) -> None:
    """Create or upgrade the schema to the newest migration. Safe to call concurrently.

    Raises ``StoreError`` when the database cannot be reached or written."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:k)"),
                                   {"k": _PG_MIGRATION_LOCK})
            elif connection.dialect.name == "sqlite":
                connection.exec_driver_sql("BEGIN IMMEDIATE")  # one migrator at a time
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    except _DB_ERRORS as exc:
        raise StoreError(describe_db_error(exc, display_url(engine.url),
                                           secret=engine.url.password)) from None


class Store:
    """Persistence of requests, batches and their history."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._store_id: str | None = None

    @classmethod
    def from_url(cls, database_url: str, *, migrate_schema: bool = True) -> Store:
        """Open (and by default create or migrate) the store; ``StoreError`` names what is
        wrong when it cannot be used."""
        engine = make_engine(database_url)
        if migrate_schema:
            try:
                migrate(engine)
            except BaseException:
                engine.dispose()
                raise
        return cls(engine)

    @property
    def url(self) -> str:
        """This store's URL for messages (password hidden, SQLite path absolute)."""
        return display_url(self.engine.url)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction; database errors come out as ``StoreUnavailable`` (one line)."""
        try:
            with self._sessions.begin() as session:
                yield session
        except _DB_ERRORS as exc:
            raise self._unavailable(exc) from exc

    def _unavailable(self, error: BaseException) -> StoreUnavailable:
        return StoreUnavailable(describe_db_error(error, self.url,
                                                  secret=self.engine.url.password))

    # -- identity and health ----------------------------------------------------------------

    def store_id(self) -> str:
        """This store's random id (written by the migration; created here if missing)."""
        if self._store_id is None:
            for _ in range(2):
                try:
                    with self.session() as session:
                        row = session.get(StoreIdentity, 1)
                        if row is None:
                            row = StoreIdentity(id=1, store_id=str(uuid.uuid4()),
                                                created_at=utcnow())
                            session.add(row)
                        self._store_id = row.store_id
                    break
                except IntegrityError:  # another process wrote it first: read that one
                    continue
        assert self._store_id is not None
        return self._store_id

    def check(self) -> None:
        """Raise ``StoreUnavailable`` unless the store takes a write right now.

        A real write (an UPDATE of the identity row) in a transaction that is rolled back,
        so a read-only file, a locked database, a read-only PostgreSQL server or a lost
        connection all show, not just a failed ``SELECT 1``. Meant for readiness probes
        (``/readyz``); a SQLite lock is waited for at most a few seconds here."""
        try:
            with self.engine.connect() as connection:
                sqlite = connection.dialect.name == "sqlite"
                if sqlite:
                    connection.exec_driver_sql(f"PRAGMA busy_timeout={CHECK_BUSY_TIMEOUT_MS}")
                try:
                    connection.execute(
                        update(StoreIdentity).where(StoreIdentity.id == 1)
                        .values(store_id=StoreIdentity.store_id)
                    )
                    connection.rollback()
                finally:
                    if sqlite and not connection.invalidated:
                        busy = int(float(self.engine.url.query.get(  # type: ignore[arg-type]
                            "timeout", SQLITE_BUSY_TIMEOUT)) * 1000)
                        connection.exec_driver_sql(f"PRAGMA busy_timeout={busy}")
        except _DB_ERRORS as exc:
            raise self._unavailable(exc) from exc

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
        if to_state is State.QUEUED:
            values = {"sent_at": None, **values}  # a new message is due: ``claim_unsent``
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

    def claim_unsent(self, request_ids: Sequence[str]
                     ) -> tuple[list[tuple[str, str]], datetime]:
        """Claim the right to publish these requests' messages: stamp ``sent_at`` on those
        that have none and return them as (id, priority) pairs, with the stamp. Two
        producers racing to send the same request (a duplicate submission while the first
        is still publishing, the scheduler's unsent sweep) claim it once, so exactly one
        message goes out, to the request's own lane. A caller whose publish failed gives
        the claim back with ``release_claim``."""
        now = utcnow()
        claimed: dict[str, str] = {}
        with self.session() as session:
            for start in range(0, len(request_ids), 500):
                chunk = list(request_ids[start : start + 500])
                claimed.update(session.execute(
                    update(RevocationRequest)
                    .where(RevocationRequest.id.in_(chunk),
                           RevocationRequest.sent_at.is_(None))
                    .values(sent_at=now)
                    .returning(RevocationRequest.id, RevocationRequest.priority)
                ).tuples().all())
        return [(i, claimed[i]) for i in dict.fromkeys(request_ids) if i in claimed], now

    def release_claim(self, request_ids: Sequence[str], stamp: datetime) -> None:
        """Mark these requests unsent again (their publish failed), unless someone has
        claimed them since."""
        with self.session() as session:
            for start in range(0, len(request_ids), 500):
                chunk = list(request_ids[start : start + 500])
                session.execute(
                    update(RevocationRequest)
                    .where(RevocationRequest.id.in_(chunk),
                           RevocationRequest.sent_at == stamp)
                    .values(sent_at=None)
                )

    def unsent(self, *, recorded_before: datetime, limit: int = 1000) -> list[str]:
        """Ids of queued requests whose message was never published (Redis was down or
        full), queued before ``recorded_before``, oldest first."""
        with self.session() as session:
            return list(session.scalars(
                select(RevocationRequest.id)
                .where(RevocationRequest.state == State.QUEUED.value,
                       RevocationRequest.sent_at.is_(None),
                       RevocationRequest.updated_at < recorded_before)
                .order_by(RevocationRequest.updated_at)
                .limit(limit)
            ))

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

    def person_requests(self, *, email: str | None = None, external_id: str | None = None,
                        key_prefix: str | None = None, limit: int = 100
                        ) -> list[RevocationRequest]:
        """Person requests naming this address (any case) or external id, or whose
        idempotency key starts with ``key_prefix``, newest first."""
        query = select(RevocationRequest).where(RevocationRequest.kind == "person")
        if key_prefix is not None:
            escaped = (key_prefix.replace("\\", "\\\\").replace("%", "\\%")
                       .replace("_", "\\_"))
            query = query.where(RevocationRequest.idempotency_key.like(escaped + "%",
                                                                       escape="\\"))
        if email is not None:
            query = query.where(func.lower(RevocationRequest.occupant_email) == email.lower())
        if external_id is not None:
            query = query.where(RevocationRequest.occupant_external_id == external_id)
        with self.session() as session:
            return list(session.scalars(
                query.order_by(RevocationRequest.created_at.desc()).limit(limit)))

    def children_of(self, parent_id: str) -> list[RevocationRequest]:
        """The child requests of a person request (one per seat found), oldest first."""
        with self.session() as session:
            return list(session.scalars(
                select(RevocationRequest)
                .where(RevocationRequest.parent_id == parent_id)
                .order_by(RevocationRequest.created_at, RevocationRequest.id)
            ))

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


# -- one store per namespace ------------------------------------------------------------------


def binding_key(settings: Settings) -> str:
    """The Redis key naming the store a namespace's producers and workers share."""
    return settings.redis_key("store")


def bind_store(store: Store, redis: Redis, settings: Settings, *, role: str) -> None:
    """Bind the namespace to this store, or check that it is bound to it.

    The first process records the store's id in Redis (``SET NX``); every producer and
    worker after it compares. Raises ``StoreMismatch`` naming both stores when they differ;
    ``RedisError`` when Redis cannot be asked (callers check again later)."""
    key = binding_key(settings)
    mine = store.store_id()
    claim = json.dumps({
        "store_id": mine, "database_url": store.url,
        "by": f"{role} on {socket.gethostname()} (pid {os.getpid()})",
        "at": utcnow().isoformat(timespec="seconds"),
    })
    for _ in range(3):  # the key may vanish in between (Redis flushed): claim it again
        redis.set(key, claim, nx=True)
        raw = redis.get(key)
        if raw is not None:
            break
    else:
        return
    try:
        theirs = json.loads(raw)
        their_id = str(theirs["store_id"])
    except (ValueError, TypeError, KeyError):
        redis.set(key, claim)  # unreadable (not ours): take it
        return
    if their_id != mine:
        raise StoreMismatch(mismatch_message(settings, key, store.url, mine, theirs))


def mismatch_message(settings: Settings, key: str, url: str, store_id: str,
                     theirs: dict[str, Any]) -> str:
    """Why a process refuses to work on its store (pure)."""
    return (
        f"this process's store is {url} (store id {store_id[:8]}), but namespace "
        f"{settings.namespace!r} on Redis {redacted_url(settings.redis_url)} belongs to the "
        f"store {redacted_url(str(theirs.get('database_url', '?')))} (store id "
        f"{str(theirs.get('store_id', '?'))[:8]}, bound by {theirs.get('by', '?')} at "
        f"{theirs.get('at', '?')}). Producers and workers must share one store: set the "
        "same DATABASE_URL for all of them (an absolute path for SQLite), or give this "
        f"deployment its own NAMESPACE. If the store was replaced on purpose, delete the "
        f"Redis key {key!r} once every old process has stopped"
    )


def check_binding(store: Store, settings: Settings, *, role: str) -> bool:
    """``bind_store`` with a short-lived Redis connection, for a process about to start:
    True once checked, False when Redis does not answer (the process checks again later);
    ``StoreMismatch`` when the namespace belongs to another store."""
    from redis.exceptions import RedisError

    redis = redis_client(settings.redis_url, connect_timeout=5, timeout=10)
    try:
        bind_store(store, redis, settings, role=role)
        return True
    except RedisError:
        return False
    finally:
        redis.close()
