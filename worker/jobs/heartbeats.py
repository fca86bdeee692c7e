"""When the scheduler last completed a pass, shared through Redis for ``/metrics``.

Worker nodes announce themselves in ``worker.jobs.nodes`` (``{p}:alive:{node}``, whose value is
the time of the node's last beat); the scheduler, which may run inside a worker or on its
own, writes ``{namespace}:scheduler:heartbeat`` after every pass that finished without
trouble. A scrape turns both into the age of the last sign of life.
"""

from __future__ import annotations

import time

from redis import Redis
from redis.exceptions import RedisError

from worker.telemetry.logs import get_logger

log = get_logger("seat_revoker.heartbeats")
KEEP_SECONDS = 7 * 24 * 3600  # long enough for "last seen" after a long outage


def record_pass(redis: Redis, key: str, *, now: float | None = None) -> None:
    """The scheduler finished a pass now (never raises: a heartbeat must not stop it)."""
    try:
        redis.set(key, repr(time.time() if now is None else now), ex=KEEP_SECONDS)
    except RedisError as exc:
        log.warning("scheduler.heartbeat_failed", error=type(exc).__name__)


def last_pass(redis: Redis, key: str) -> float | None:
    """Unix time of the last good pass, ``None`` if none was recorded."""
    raw = redis.get(key)
    if raw is None:
        return None
    try:
        return float(raw.decode() if isinstance(raw, bytes) else raw)
    except ValueError:
        return None
