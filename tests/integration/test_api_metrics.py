"""MetricsRecorder (as workers call it) → Redis → MetricsCollector → /metrics text, with a
real Celery queue for the depth gauge."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from fastapi.testclient import TestClient
from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy.engine import make_url

from config.settings import Settings
from worker.api import create_app
from worker.api.settings import ApiSettings
from worker.decisions.outcomes import FleetFault
from worker.intake.producer import Producer, RevocationInput
from worker.jobs.fleetpause import FleetPause
from worker.store.records import Store
from worker.telemetry.metrics import MetricsRecorder

pytestmark = pytest.mark.integration


@pytest.fixture
def setup(redis_url: str, tmp_path: Path) -> Iterator[tuple[TestClient, Settings, Redis]]:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, database_url=f"sqlite:///{tmp_path / 'store.db'}",
        redis_url=redis_url, namespace=f"api-{uuid.uuid4().hex[:10]}",
    )
    redis = Redis.from_url(redis_url)
    producer = Producer(settings, store=Store.from_url(settings.database_url))
    app = create_app(settings, producer=producer,
                     api_settings=ApiSettings(_env_file=None))  # type: ignore[call-arg]
    try:
        with TestClient(app) as client:
            yield client, settings, redis
    finally:
        for key in redis.scan_iter(f"{settings.namespace}:*"):
            redis.delete(key)
        redis.close()
        producer.close()


def value(text: str, sample: str) -> float:
    match = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.M)
    assert match, f"{sample} not in metrics"
    return float(match.group(1))


def test_recorded_observations_show_up_in_metrics(
    setup: tuple[TestClient, Settings, Redis]
) -> None:
    client, settings, redis = setup
    recorder = MetricsRecorder(redis, settings.redis_key("metrics"))
    recorder.polar_request("DELETE", 200, 0.02)
    recorder.polar_request("delete", 200, 0.3)
    recorder.polar_request("GET", 429, 0.005)
    recorder.polar_request("DELETE", None, 5.5)
    recorder.retry("rate_limited")
    recorder.retry("rate_limited")
    recorder.retry("transient")
    recorder.ratelimit_wait(1.5)
    recorder.ratelimit_wait(0.5)
    text = client.get("/metrics").text
    assert value(text, 'seat_revoker_polar_requests_total{method="DELETE",status="200"}') == 2
    assert value(text, 'seat_revoker_polar_requests_total{method="GET",status="429"}') == 1
    assert value(text, 'seat_revoker_polar_requests_total{method="DELETE",status="error"}') == 1
    hist = "seat_revoker_polar_request_duration_seconds"
    assert value(text, f'{hist}_bucket{{le="0.025",method="DELETE"}}') == 1
    assert value(text, f'{hist}_bucket{{le="0.5",method="DELETE"}}') == 2
    assert value(text, f'{hist}_bucket{{le="+Inf",method="DELETE"}}') == 3
    assert value(text, f'{hist}_count{{method="DELETE"}}') == 3
    assert value(text, f'{hist}_sum{{method="DELETE"}}') == pytest.approx(5.82)
    assert value(text, 'seat_revoker_retries_total{kind="rate_limited"}') == 2
    assert value(text, "seat_revoker_ratelimit_waits_total") == 2
    assert value(text, "seat_revoker_ratelimit_wait_seconds_total") == pytest.approx(2.0)
    assert value(text, 'seat_revoker_scrape_error{source="redis"}') == 0


def test_queue_depth_is_the_length_of_the_real_celery_queue(
    setup: tuple[TestClient, Settings, Redis]
) -> None:
    client, settings, redis = setup
    producer = Producer(settings)
    try:
        for _ in range(3):
            producer.submit(RevocationInput(seat_id=str(uuid.uuid4()), guard=False))
    finally:
        producer.close()
    # kombu's global_keyprefix is namespace + ":" (config/celery.py): single requests are
    # in the urgent lane's list.
    assert redis.llen(f"{settings.namespace}:{settings.urgent_queue_name}") == 3
    text = client.get("/metrics").text
    assert value(text, "seat_revoker_queue_depth") == 3
    assert value(text, 'seat_revoker_requests{state="queued"}') == 3


def test_recorder_swallows_redis_outages() -> None:
    dead = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    recorder = MetricsRecorder(dead, "x:metrics")
    recorder.polar_request("GET", 200, 0.1)  # no exception
    recorder.retry("transient")
    recorder.ratelimit_wait(1.0)
    with pytest.raises(RedisError):
        dead.ping()


def test_readyz_names_what_is_down(tmp_path: Path) -> None:
    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, database_url=f"sqlite:///{tmp_path / 'store.db'}",
        redis_url="redis://127.0.0.1:1/0", namespace="api-down",
    )
    app = create_app(settings, api_settings=ApiSettings(_env_file=None))  # type: ignore[call-arg]
    with TestClient(app) as client:
        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.json()["down"] == ["redis"]
        assert client.get("/healthz").status_code == 200
        metrics = client.get("/metrics")
        assert metrics.status_code == 200
        assert value(metrics.text, 'seat_revoker_scrape_error{source="redis"}') == 1


def test_a_pause_makes_readyz_503_and_shows_in_metrics(
    setup: tuple[TestClient, Settings, Redis]
) -> None:
    client, settings, redis = setup
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"]["queue"] == "ok"
    assert "pauses" not in ready.json()
    assert value(client.get("/metrics").text, 'seat_revoker_paused{fault="forbidden"}') == 0

    pause = FleetPause(redis, settings.redis_key("pause"), probe_seconds=30)
    info = pause.pause("token:2026-04", FleetFault.FORBIDDEN, 403)
    ready = client.get("/readyz")
    assert ready.status_code == 503
    body = ready.json()
    assert (body["status"], body["checks"]["queue"], "down" in body) == ("paused", "paused", False)
    (shown,) = body["pauses"]
    assert (shown["fault"], shown["status"], shown["since"]) == ("forbidden", 403, info.since)
    assert shown["message"] == info.message and "customer_seats:write" in shown["hint"]
    text = client.get("/metrics").text
    assert value(text, 'seat_revoker_paused{fault="forbidden"}') == 1
    assert value(text, 'seat_revoker_paused{fault="token_invalid"}') == 0

    pause.resume("token:2026-04")
    assert client.get("/readyz").status_code == 200
    assert value(client.get("/metrics").text, 'seat_revoker_paused{fault="forbidden"}') == 0



def test_readyz_reports_a_read_only_database_and_recovers_when_it_is_writable(
    postgres_url: str, redis_url: str
) -> None:
    """A database that answers SELECT 1 but refuses writes (a failover left the pool on a
    read-only server) is not ready; once writes are allowed again the same process is ready
    without a restart (its read-only connection was discarded)."""
    base = make_url(postgres_url)
    name = f"{base.database}_ro_{uuid.uuid4().hex[:6]}"
    admin = base.set(drivername="postgresql", database="postgres").render_as_string(
        hide_password=False)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')

    def read_only(on: bool) -> None:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = '
                         f'{"on" if on else "off"}')
            # Sessions keep the setting they started with: end them, as a failover does.
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                         "WHERE datname = %s AND pid <> pg_backend_pid()", (name,))

    settings = Settings(  # type: ignore[call-arg]
        _env_file=None, database_url=base.set(database=name).render_as_string(
            hide_password=False), redis_url=redis_url, namespace=f"ro-{uuid.uuid4().hex[:8]}",
    )
    try:
        app = create_app(settings, api_settings=ApiSettings(_env_file=None))  # type: ignore[call-arg]
        with TestClient(app) as client:
            assert client.get("/readyz").json()["checks"]["database"] == "ok"
            read_only(True)
            response = client.get("/readyz")
            assert response.status_code == 503 and response.json()["down"] == ["database"]
            assert "read-only" in response.json()["checks"]["database"]
            read_only(False)
            # A backend being terminated may still answer the pool's pre-ping, then fail
            # the write: that probe says so and drops it; the next one must be ready.
            probes = [client.get("/readyz").json()["checks"]["database"] for _ in range(2)]
            assert probes[-1] == "ok", probes
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
