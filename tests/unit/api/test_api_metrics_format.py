"""Metrics: histogram assembly and label hygiene (pure), and the pause gauge over a real
Redis (``REDIS_URL`` or a private one, see ``tests/conftest.py``)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from redis import Redis

from worker.api.metrics import MetricsCollector, _histogram
from worker.decisions.outcomes import FleetFault
from worker.jobs.fleetpause import FleetPause
from worker.telemetry.metrics import LATENCY_BUCKETS, label, queue_keys


def test_histogram_buckets_are_cumulative_and_end_with_count() -> None:
    # Non-cumulative storage: one observation in bucket 0, two in bucket 3, one in +Inf.
    raw = {"DELETE|b0": "1", "DELETE|b3": "2", f"DELETE|b{len(LATENCY_BUCKETS)}": "1",
           "DELETE|sum": "42.5", "DELETE|count": "4"}
    family = _histogram(raw)
    samples = {(s.name, s.labels.get("le")): s.value for s in family.samples}
    assert samples[("seat_revoker_polar_request_duration_seconds_bucket", "0.01")] == 1
    assert samples[("seat_revoker_polar_request_duration_seconds_bucket", "0.1")] == 3
    assert samples[("seat_revoker_polar_request_duration_seconds_bucket", "30.0")] == 3
    assert samples[("seat_revoker_polar_request_duration_seconds_bucket", "+Inf")] == 4
    assert samples[("seat_revoker_polar_request_duration_seconds_count", None)] == 4
    assert samples[("seat_revoker_polar_request_duration_seconds_sum", None)] == 42.5


def test_labels_cannot_break_the_field_format() -> None:
    assert label("GET|x\ny") == "GET_x y"
    assert label("") == "unknown"


def test_queue_keys_follow_kombu_global_prefix_and_priorities() -> None:
    assert queue_keys("ns", "ns") == ["ns:ns", "ns:ns\x06\x163", "ns:ns\x06\x166", "ns:ns\x06\x169"]


# -- the pause gauge, read from a real Redis at scrape time ----------------------------------


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[tuple[Redis, str]]:
    redis = Redis.from_url(redis_url)
    prefix = f"unit-metrics-{uuid.uuid4().hex[:10]}"
    try:
        yield redis, prefix
    finally:
        for key in redis.scan_iter(f"{prefix}:*"):
            redis.delete(key)
        redis.close()


def paused_samples(collector: MetricsCollector) -> dict[str, float]:
    families = {family.name: family for family in collector.collect()}
    return {s.labels["fault"]: s.value for s in families["seat_revoker_paused"].samples}


def test_paused_gauge_counts_pauses_in_force_by_fault(redis_prefix: tuple[Redis, str]) -> None:
    redis, prefix = redis_prefix
    pauses = FleetPause(redis, f"{prefix}:pause", probe_seconds=30)
    collector = MetricsCollector(redis, f"{prefix}:metrics", count_by_state=dict,
                                 queue_keys=[], pause_prefix=f"{prefix}:pause")
    assert paused_samples(collector) == {fault.value: 0 for fault in FleetFault}

    pauses.pause("token-a:2026-04", FleetFault.TOKEN_INVALID, 401)
    pauses.pause("token-b:2026-04", FleetFault.TOKEN_INVALID, 401)
    pauses.pause("token-a:2026-10", FleetFault.API_VERSION, 404)
    assert redis.exists(f"{prefix}:pause:token-a:2026-04:probe")  # probe locks are not pauses
    assert paused_samples(collector) == {"token_invalid": 2, "api_version": 1, "forbidden": 0}

    pauses.resume("token-a:2026-04")
    pauses.resume("token-a:2026-10")
    assert paused_samples(collector) == {"token_invalid": 1, "api_version": 0, "forbidden": 0}


def test_paused_gauge_is_absent_without_a_pause_prefix(redis_prefix: tuple[Redis, str]) -> None:
    redis, prefix = redis_prefix
    collector = MetricsCollector(redis, f"{prefix}:metrics", count_by_state=dict, queue_keys=[])
    assert "seat_revoker_paused" not in {family.name for family in collector.collect()}


def test_paused_gauge_failure_is_a_redis_scrape_error() -> None:
    dead = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2)
    collector = MetricsCollector(dead, "x:metrics", count_by_state=dict, queue_keys=[],
                                 pause_prefix="x:pause")
    families = {family.name: family for family in collector.collect()}
    assert "seat_revoker_paused" not in families
    errors = {s.labels["source"]: s.value for s in families["seat_revoker_scrape_error"].samples}
    assert errors == {"store": 0, "redis": 1}


# -- liveness and age, read at scrape time ----------------------------------------------------


def samples(collector: MetricsCollector, name: str) -> dict[tuple[str, ...], float]:
    families = {family.name: family for family in collector.collect()}
    return {tuple(s.labels.values()): s.value for s in families[name].samples}


def test_oldest_age_workers_and_scheduler_heartbeat(redis_prefix: tuple[Redis, str]) -> None:
    from datetime import UTC, datetime

    from worker.jobs.heartbeats import record_pass
    from worker.jobs.nodes import NodeRegistry

    redis, prefix = redis_prefix
    now = 1_800_000_000.0
    oldest = {"queued": datetime.fromtimestamp(now - 90, UTC),
              "retrying": datetime.fromtimestamp(now - 700, UTC)}
    collector = MetricsCollector(
        redis, f"{prefix}:metrics", count_by_state=lambda: {"queued": 2}, queue_keys=[],
        oldest_by_state=lambda: oldest, nodes_prefix=f"{prefix}:nodes",
        scheduler_key=f"{prefix}:scheduler:heartbeat", clock=lambda: now)
    assert samples(collector, "seat_revoker_oldest_request_age_seconds") == {
        ("queued",): 90.0, ("running",): 0.0, ("retrying",): 700.0}
    assert samples(collector, "seat_revoker_workers_alive") == {(): 0}
    assert samples(collector, "seat_revoker_scheduler_heartbeat_timestamp_seconds") == {(): 0}
    NodeRegistry(redis, f"{prefix}:nodes").beat("w1@h|7")
    record_pass(redis, f"{prefix}:scheduler:heartbeat", now=now - 3)
    assert samples(collector, "seat_revoker_workers_alive") == {(): 1}
    (beat,) = samples(collector, "seat_revoker_worker_heartbeat_timestamp_seconds").items()
    assert beat[0] == ("w1@h|7",) and beat[1] > 1_600_000_000
    assert samples(collector, "seat_revoker_scheduler_heartbeat_timestamp_seconds") == {
        (): now - 3}
    # The renamed gauge and its deprecated alias carry the same numbers.
    assert samples(collector, "seat_revoker_requests_in_state")[("queued",)] == 2
    assert samples(collector, "seat_revoker_requests")[("queued",)] == 2
