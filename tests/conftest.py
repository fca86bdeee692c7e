"""Shared fixtures: a reachable Redis, fresh databases, and the local stack.

Redis: ``REDIS_URL`` (default the machine's 127.0.0.1:6379) if it answers, else a private
``redis-server`` started here. Every stack gets its own namespace (queue and key prefix), so
runs never see each other's data. PostgreSQL: a fresh database per test session on
``TEST_POSTGRES_URL`` (default the machine's service), dropped at the end.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from worker.sandbox.localredis import PrivateRedis, redis_answers
from worker.sandbox.localstack import LocalStack

POSTGRES_ADMIN_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)
BACKENDS_RUN: set[str] = set()


def backends() -> list[str]:
    """Database backends to run integration tests on (TEST_BACKENDS, default both)."""
    return os.environ.get("TEST_BACKENDS", "sqlite,postgresql").split(",")


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    if redis_answers(url):
        yield url
        return
    with PrivateRedis() as private:
        os.environ["REDIS_URL"] = private.url
        yield private.url


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this session; fails loudly if there is no server."""
    admin = make_url(POSTGRES_ADMIN_URL)
    name = f"seat_revoker_test_{uuid.uuid4().hex[:10]}"
    conninfo = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        pytest.fail(
            f"PostgreSQL at {admin.render_as_string()} is not reachable ({exc}); start it or "
            "set TEST_BACKENDS=sqlite to run the SQLite backend only"
        )
    yield admin.set(database=name).render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def database_urls(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
                  ) -> dict[str, str]:
    urls = {"sqlite": f"sqlite:///{tmp_path_factory.mktemp('db') / 'store.db'}"}
    if "postgresql" in backends():
        urls["postgresql"] = request.getfixturevalue("postgres_url")
    return urls


@pytest.fixture(params=backends())
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty database of each backend (function scope)."""
    BACKENDS_RUN.add(request.param)
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    base = make_url(request.getfixturevalue("postgres_url"))
    name = f"{base.database}_{uuid.uuid4().hex[:6]}"
    conninfo = base.set(drivername="postgresql", database="postgres").render_as_string(
        hide_password=False
    )
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    request.addfinalizer(lambda: _drop_database(conninfo, name))
    return base.set(database=name).render_as_string(hide_password=False)


def _drop_database(conninfo: str, name: str) -> None:
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module", params=backends())
def stack_database(request: pytest.FixtureRequest) -> str | None:
    """Each backend in turn for a module's stack: None means a fresh SQLite file."""
    BACKENDS_RUN.add(request.param)
    if request.param == "postgresql":
        return str(request.getfixturevalue("postgres_url"))
    return None


@pytest.fixture(scope="module")
def stack(
    stack_database: str | None, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalStack]:
    """Sandbox + one worker node (2 processes) + producer, on each database backend.

    Short timeouts and waits so fault tests run in seconds: a read timeout of 1s, 429s with
    retry-after up to 2s are waited out in process, longer ones go back to Celery.
    """
    with LocalStack(
        workdir=tmp_path_factory.mktemp("stack"),
        database_url=stack_database,
        redis_url=redis_url,
        settings_overrides={
            "polar_read_timeout": 1.0,
            "polar_connect_timeout": 1.0,
            "retry_inline_max_wait": 2.0,
            "retry_inline_attempts": 3,
        },
    ) as local:
        local.add_worker(concurrency=2)
        yield local


@pytest.fixture
def sandbox_reset(stack: LocalStack) -> LocalStack:
    """The module's stack with the sandbox emptied (seats, faults, counters)."""
    stack.control.reset()
    return stack


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if BACKENDS_RUN:
        terminalreporter.write_line(
            "database backends exercised: " + ", ".join(sorted(BACKENDS_RUN))
        )
