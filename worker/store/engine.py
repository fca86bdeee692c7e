"""The database under the record store: engines, the schema, and one-line errors.

SQLite (WAL mode, safe with several worker processes) by default, PostgreSQL through
``DATABASE_URL``. A store that cannot be used (a garbage ``DATABASE_URL``, an unreachable
server, a locked, read-only or unwritable file, a schema missing or behind) raises
``StoreError`` — a ``ConfigError`` whose message names the problem in one line, never a
password. A SQLite connection that hit a read-only or I/O error, or a PostgreSQL one that
landed on a read-only server, is discarded, so the process heals once the cause is fixed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, ExceptionContext, make_url
from sqlalchemy.exc import (
    ArgumentError,
    InterfaceError,
    InternalError,
    NoSuchModuleError,
    OperationalError,
)

from config.settings import ConfigError, redacted_url

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
DB_ERRORS = (OperationalError, InterfaceError, InternalError)


class StoreError(ConfigError):
    """The record store cannot be used: ``DATABASE_URL`` is not a database URL, the server
    is unreachable, the file is locked, read-only or cannot be created. The message names
    the problem and the store (password hidden) in one line."""


class StoreUnavailable(StoreError):
    """A database error while working: the store was reachable before and may heal (a
    worker retries the task; ``Store.check()`` reports it for readiness probes)."""


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


def make_engine(database_url: str, *, create: bool = True) -> Engine:
    """An engine with the settings each backend needs for several concurrent processes.
    ``create=False``: a SQLite file that does not exist is an error, not created.

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
            engine = _sqlite_engine(url, shown, create=create)
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


def _sqlite_engine(url: URL, shown: str, *, create: bool) -> Engine:
    timeout = float(url.query.get("timeout", SQLITE_BUSY_TIMEOUT))  # type: ignore[arg-type]
    database = url.database
    if database and database != ":memory:" and not database.startswith("file:"):
        path = Path(database).expanduser()
        if not create and not path.exists():
            raise StoreError(no_schema_message(shown))
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


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def migrate(engine: Engine) -> None:
    """Create or upgrade the schema to the newest migration. Safe to call concurrently.

    Raises ``StoreError`` when the database cannot be reached or written."""
    config = _alembic_config()
    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:k)"),
                                   {"k": _PG_MIGRATION_LOCK})
            elif connection.dialect.name == "sqlite":
                connection.exec_driver_sql("BEGIN IMMEDIATE")  # one migrator at a time
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    except DB_ERRORS as exc:
        raise StoreError(describe_db_error(exc, display_url(engine.url),
                                           secret=engine.url.password)) from None


# Who creates and upgrades the schema: every process that writes (``Store.from_url``).
_MIGRATORS = "a worker (seat-revoker worker) or the API (seat-revoker api)"


def no_schema_message(shown: str) -> str:
    """Why a read-only command cannot use a store without tables (pure)."""
    return (f"the store {shown} has no schema yet: start {_MIGRATORS} on it, which creates "
            "it; this command only reads")


def check_schema(engine: Engine) -> None:
    """Raise ``StoreError`` unless the schema is at this version's newest migration.

    For processes that only read and so never migrate (``Store.open_read_only``): a store
    without tables, or one an older or newer version migrated, is one line naming the
    store and what to do, not a SQL error from the first query. Writes nothing."""
    shown = display_url(engine.url)
    script = ScriptDirectory.from_config(_alembic_config())
    heads = set(script.get_heads())
    try:
        with engine.connect() as connection:
            current = set(MigrationContext.configure(connection).get_current_heads())
    except DB_ERRORS as exc:
        raise StoreError(describe_db_error(exc, shown, secret=engine.url.password)) from None
    if current == heads:
        return
    if not current:
        raise StoreError(no_schema_message(shown))
    have, need = ", ".join(sorted(current)), ", ".join(sorted(heads))
    try:
        for revision in current:
            script.get_revision(revision)
    except CommandError:  # a revision this version has no script for: a newer version's
        raise StoreError(
            f"the store {shown} has schema revision {have}, newer than this seat-revoker "
            f"knows ({need}): use the seat-revoker version that upgraded it"
        ) from None
    raise StoreError(
        f"the store {shown} has schema revision {have}, older than this version's {need}: "
        f"start {_MIGRATORS} of this version on it, which upgrades it; this command only "
        "reads"
    )
