"""Prometheus metrics shared by every process through Redis.

Worker processes come and go (Celery pool children, several nodes), so counting in process
memory would lose numbers and need a scrape target per process. Instead each worker adds
its observations to a few Redis hashes with ``MetricsRecorder`` (one pipelined round trip
per observation, no read), and the API process turns those hashes, the record store and the
broker queue into Prometheus metrics at scrape time (``worker.api.metrics``).

Redis layout under ``key_prefix`` (e.g. ``seat-revoker:metrics``):

- ``{p}:polar_requests``  field ``METHOD|STATUS`` (``error`` for transport failures) → count
- ``{p}:polar_latency``   field ``METHOD|b<i>`` → observations in bucket ``i`` only (not
  cumulative; the collector sums), ``METHOD|sum`` (float seconds), ``METHOD|count``
- ``{p}:retries``         field ``KIND`` → count
- ``{p}:ratelimit``       fields ``count`` and ``seconds``
- ``{p}:unknown_requests`` field ``count``: tasks naming a request the store does not have
  (given up after ``UNKNOWN_REQUEST_SECONDS``), ``seat_revoker_unknown_requests_total``
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable
from typing import Any

from redis import Redis
from redis.exceptions import RedisError

from config.settings import Settings
from worker.telemetry.logs import get_logger

log = get_logger("seat_revoker.metrics")

LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
# kombu's Redis transport puts priorities 3, 6 and 9 in sibling lists "<queue>\x06\x16<pri>".
_KOMBU_PRIORITY_SEP = "\x06\x16"
_KOMBU_PRIORITIES = (3, 6, 9)


def label(value: str) -> str:
    """Hash fields use ``|`` as separator: keep it (and newlines) out of label values."""
    return value.replace("|", "_").replace("\n", " ")[:64] or "unknown"


class MetricsRecorder:
    """Called by worker processes; never raises (metrics must not fail a revocation)."""

    def __init__(self, redis: Redis, key_prefix: str) -> None:
        self.redis = redis
        self.prefix = key_prefix

    def key(self, name: str) -> str:
        return f"{self.prefix}:{name}"

    def polar_request(self, method: str, status: int | None, seconds: float) -> None:
        """One call to Polar: its method, HTTP status (None: no response) and duration."""
        method = label(method.upper())
        seconds = max(float(seconds), 0.0) if math.isfinite(seconds) else 0.0
        bucket = bisect.bisect_left(LATENCY_BUCKETS, seconds)
        self._run(
            lambda p: p.hincrby(
                self.key("polar_requests"), f"{method}|{status or 'error'}", 1
            )
            .hincrby(self.key("polar_latency"), f"{method}|b{bucket}", 1)
            .hincrbyfloat(self.key("polar_latency"), f"{method}|sum", seconds)
            .hincrby(self.key("polar_latency"), f"{method}|count", 1)
        )

    def retry(self, kind: str) -> None:
        """A retry was planned; ``kind`` e.g. ``inline``, ``later``, ``rate_limited``."""
        self._run(lambda p: p.hincrby(self.key("retries"), label(kind), 1))

    def ratelimit_wait(self, seconds: float) -> None:
        """Time spent waiting for rate budget (ours or a 429's retry-after)."""
        seconds = max(float(seconds), 0.0) if math.isfinite(seconds) else 0.0
        self._run(
            lambda p: p.hincrby(self.key("ratelimit"), "count", 1).hincrbyfloat(
                self.key("ratelimit"), "seconds", seconds
            )
        )

    def unknown_request(self) -> None:
        """A task named a request the store does not have, and it never appeared."""
        self._run(lambda p: p.hincrby(self.key("unknown_requests"), "count", 1))

    def _run(self, build: Callable[[Any], Any]) -> None:
        try:
            pipe = self.redis.pipeline(transaction=False)
            build(pipe)
            pipe.execute()
        except RedisError as exc:
            log.warning("metrics.dropped", error=type(exc).__name__)


def queue_keys(namespace: str, queue_name: str) -> list[str]:
    """Redis lists holding a Celery queue's waiting messages (see ``config/celery.py``:
    kombu's ``global_keyprefix`` is ``namespace + ":"``)."""
    base = f"{namespace}:{queue_name}"
    return [base, *(f"{base}{_KOMBU_PRIORITY_SEP}{pri}" for pri in _KOMBU_PRIORITIES)]


def lane_queue_keys(settings: Settings) -> list[str]:
    """The Redis lists of every lane's queue (urgent and bulk)."""
    return [key for queue in settings.lane_queues
            for key in queue_keys(settings.namespace, queue)]
