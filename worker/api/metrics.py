"""``/metrics``: the Prometheus collector the API registers. At each scrape it reads what
workers recorded in Redis (``worker.telemetry.metrics.MetricsRecorder``), the broker's queue
lists, the record store, the live nodes and the queue's pauses.

Queue pauses are read from ``worker.jobs.fleetpause`` (their own keys) at scrape time too:
``seat_revoker_paused{fault}`` counts the pauses in force per fault (0 when none).

Liveness at scrape time: ``seat_revoker_workers_alive`` and each live node's last beat
(``worker.jobs.nodes``), the scheduler's last good pass (``worker.jobs.heartbeats``), and from the
store the age of the oldest queued/running/retrying request.

Renamed: ``seat_revoker_requests`` (a gauge of requests per state, which read like an HTTP
counter) is now ``seat_revoker_requests_in_state``; the old name is still exported with the
same values for one release so dashboards and alerts can move.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from redis import Redis
from redis.exceptions import RedisError

from worker.decisions.breaker import ORG_SCOPE
from worker.decisions.outcomes import FleetFault, State
from worker.jobs.breaker import Breaker
from worker.jobs.fleetpause import FleetPause
from worker.jobs.heartbeats import last_pass
from worker.jobs.nodes import NodeRegistry
from worker.telemetry.logs import get_logger
from worker.telemetry.metrics import LATENCY_BUCKETS, label

log = get_logger("seat_revoker.metrics")


class MetricsCollector(Collector):
    """Builds every metric at scrape time from Redis and the store.

    ``count_by_state`` returns ``{state: n}`` over all requests (``Store.count_by_state``).
    A source that is down is skipped (and reported as ``seat_revoker_scrape_error``) so
    one failure does not blank the whole scrape.
    """

    def __init__(
        self,
        redis: Redis,
        key_prefix: str,
        *,
        count_by_state: Callable[[], dict[str, int]],
        queue_keys: list[str],
        unacked_key: str | None = None,
        pause_prefix: str | None = None,
        oldest_by_state: Callable[[], dict[str, datetime]] | None = None,
        nodes_prefix: str | None = None,
        scheduler_key: str | None = None,
        breaker: Breaker | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.breaker = breaker
        self.redis = redis
        self.prefix = key_prefix
        self.count_by_state = count_by_state
        self.oldest_by_state = oldest_by_state
        self.nodes = NodeRegistry(redis, nodes_prefix) if nodes_prefix else None
        self.scheduler_key = scheduler_key
        self.clock = clock
        self.queue_keys = queue_keys
        self.unacked_key = unacked_key
        # The key prefix the workers' FleetPause uses (``settings.redis_key("pause")``).
        self.pauses = FleetPause(redis, pause_prefix) if pause_prefix else None

    def describe(self) -> Iterable[Metric]:
        return []  # metrics are only known at collect time; skip the registration probe

    def collect(self) -> Iterator[Metric]:
        errors = GaugeMetricFamily(
            "seat_revoker_scrape_error", "1 if a metrics source failed on this scrape",
            labels=["source"],
        )
        try:
            yield from self._from_store()
            errors.add_metric(["store"], 0)
        except Exception as exc:
            log.warning("metrics.store_failed", error=type(exc).__name__)
            errors.add_metric(["store"], 1)
        try:
            yield from self._from_redis()
            errors.add_metric(["redis"], 0)
        except RedisError as exc:
            log.warning("metrics.redis_failed", error=type(exc).__name__)
            errors.add_metric(["redis"], 1)
        yield errors

    def _from_store(self) -> list[Metric]:
        counts = self.count_by_state()
        gauge = GaugeMetricFamily(
            "seat_revoker_requests_in_state",
            "Revocation requests in the store by state (terminal states are outcomes)",
            labels=["state"],
        )
        alias = GaugeMetricFamily(
            "seat_revoker_requests",
            "Deprecated alias of seat_revoker_requests_in_state (removed in a later release)",
            labels=["state"],
        )
        for state in State:
            gauge.add_metric([state.value], counts.get(state.value, 0))
            alias.add_metric([state.value], counts.get(state.value, 0))
        held = GaugeMetricFamily(
            "seat_revoker_held_requests",
            "Revocations held at the circuit breaker, waiting for an operator's release or "
            "rejection (no DELETE was sent)")
        held.add_metric([], counts.get(State.HELD.value, 0))
        out: list[Metric] = [gauge, alias, held]
        if self.oldest_by_state is not None:
            out.append(self._oldest())
        return out

    def _oldest(self) -> GaugeMetricFamily:
        assert self.oldest_by_state is not None
        oldest = self.oldest_by_state()
        now = self.clock()
        gauge = GaugeMetricFamily(
            "seat_revoker_oldest_request_age_seconds",
            "Seconds since the oldest request in this state entered it (0 when none is): "
            "a queued one that keeps ageing means nothing consumes the queue",
            labels=["state"],
        )
        for state in (State.QUEUED, State.RUNNING, State.RETRYING):
            since = oldest.get(state.value)
            gauge.add_metric([state.value],
                             max(0.0, now - since.timestamp()) if since else 0.0)
        return gauge

    def _from_redis(self) -> list[Metric]:
        pipe = self.redis.pipeline(transaction=False)
        for name in ("polar_requests", "polar_latency", "retries", "ratelimit"):
            pipe.hgetall(f"{self.prefix}:{name}")
        for key in self.queue_keys:
            pipe.llen(key)
        if self.unacked_key:
            pipe.hlen(self.unacked_key)
        results = pipe.execute()
        requests, latency, retries, ratelimit = (_decode(h) for h in results[:4])
        depth = sum(int(n) for n in results[4 : 4 + len(self.queue_keys)])

        polar = CounterMetricFamily(
            "seat_revoker_polar_requests", "Calls to the Polar API by method and status",
            labels=["method", "status"],
        )
        for field_name, value in sorted(requests.items()):
            method, _, status = field_name.partition("|")
            polar.add_metric([method, status], float(value))

        retry = CounterMetricFamily(
            "seat_revoker_retries", "Retries planned, by kind", labels=["kind"]
        )
        for kind, value in sorted(retries.items()):
            retry.add_metric([kind], float(value))

        waits = CounterMetricFamily(
            "seat_revoker_ratelimit_waits", "Waits for Polar rate-limit budget"
        )
        waits.add_metric([], float(ratelimit.get("count", 0)))
        wait_seconds = CounterMetricFamily(
            "seat_revoker_ratelimit_wait_seconds", "Seconds spent waiting for rate budget"
        )
        wait_seconds.add_metric([], float(ratelimit.get("seconds", 0)))

        queue = GaugeMetricFamily(
            "seat_revoker_queue_depth", "Messages waiting in the Celery queue (not yet taken)"
        )
        queue.add_metric([], depth)
        out: list[Metric] = [polar, _histogram(latency), retry, waits, wait_seconds, queue]
        if self.unacked_key:
            unacked = GaugeMetricFamily(
                "seat_revoker_queue_unacked",
                "Messages taken by workers and not yet acknowledged",
            )
            unacked.add_metric([], int(results[-1]))
            out.append(unacked)
        if self.pauses is not None:
            out.append(self._paused())
        if self.breaker is not None:
            out.append(self._breakers())
        out.append(self._unknown_requests())
        if self.nodes is not None:
            out += self._workers()
        if self.scheduler_key is not None:
            out.append(self._scheduler())
        return out

    def _workers(self) -> list[Metric]:
        assert self.nodes is not None
        beats = self.nodes.heartbeats()
        alive = GaugeMetricFamily(
            "seat_revoker_workers_alive",
            "Worker nodes whose heartbeat has not expired (0: nothing consumes the queue)",
        )
        alive.add_metric([], len(beats))
        last = GaugeMetricFamily(
            "seat_revoker_worker_heartbeat_timestamp_seconds",
            "Unix time of each live worker node's last heartbeat", labels=["node"],
        )
        for node, at in sorted(beats.items()):
            last.add_metric([node[:100]], at)
        return [alive, last]

    def _scheduler(self) -> GaugeMetricFamily:
        assert self.scheduler_key is not None
        at = last_pass(self.redis, self.scheduler_key)
        gauge = GaugeMetricFamily(
            "seat_revoker_scheduler_heartbeat_timestamp_seconds",
            "Unix time the scheduler last finished a pass without trouble (0: never); "
            "alert when time() minus this exceeds a few intervals",
        )
        gauge.add_metric([], at or 0.0)
        return gauge

    def _unknown_requests(self) -> CounterMetricFamily:
        count = self.redis.hget(f"{self.prefix}:unknown_requests", "count")
        unknown = CounterMetricFamily(
            "seat_revoker_unknown_requests",
            "Tasks whose request id the store does not have (after waiting for it): a "
            "producer recorded it in another store; alert on any increase",
        )
        unknown.add_metric([], float(count or 0))
        return unknown

    def _breakers(self) -> GaugeMetricFamily:
        assert self.breaker is not None
        gauge = GaugeMetricFamily(
            "seat_revoker_breaker_open",
            "1 per circuit breaker scope that is open (org, customer:<id>): its revocations "
            "are held until an operator releases or rejects them; org is always present",
            labels=["scope"])
        scopes = {info.scope for info in self.breaker.open_breakers()}
        gauge.add_metric([ORG_SCOPE], 1 if ORG_SCOPE in scopes else 0)
        for scope in sorted(scopes - {ORG_SCOPE}):
            gauge.add_metric([label(scope)], 1)
        return gauge

    def _paused(self) -> GaugeMetricFamily:
        assert self.pauses is not None
        by_fault = {fault.value: 0 for fault in FleetFault}
        for info in self.pauses.all():
            fault = label(info.fault)
            by_fault[fault] = by_fault.get(fault, 0) + 1
        gauge = GaugeMetricFamily(
            "seat_revoker_paused",
            "Queue pauses in force, by fault: Polar refuses every request alike (bad token, "
            "missing scope, unserved API version); requests wait until it is fixed",
            labels=["fault"],
        )
        for fault, count in sorted(by_fault.items()):
            gauge.add_metric([fault], count)
        return gauge


def _decode(raw: dict[bytes | str, bytes | str]) -> dict[str, str]:
    def text(value: bytes | str) -> str:
        return value.decode() if isinstance(value, bytes) else value

    return {text(k): text(v) for k, v in raw.items()}


def _histogram(latency: dict[str, str]) -> HistogramMetricFamily:
    family = HistogramMetricFamily(
        "seat_revoker_polar_request_duration_seconds",
        "Duration of calls to the Polar API",
        labels=["method"],
    )
    methods = sorted({name.partition("|")[0] for name in latency})
    for method in methods:
        cumulative = 0
        buckets: list[tuple[str, float]] = []
        for index, bound in enumerate((*LATENCY_BUCKETS, math.inf)):
            cumulative += int(latency.get(f"{method}|b{index}", 0))
            buckets.append(("+Inf" if math.isinf(bound) else repr(bound), cumulative))
        family.add_metric(
            [method], buckets=buckets, sum_value=float(latency.get(f"{method}|sum", 0))
        )
    return family
