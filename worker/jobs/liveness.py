"""Whether any worker consumes the queue, for commands that wait (``--wait``).

A wait with nobody consuming would last until its timeout and say nothing; instead it ends
with ``Exit.NO_WORKER`` once no live node (``worker.jobs.nodes``) has been seen for ``grace``
seconds. Redis trouble while looking is not taken as "no worker".
"""

from __future__ import annotations

import time
from collections.abc import Callable

from redis.exceptions import RedisError

from config.settings import Settings
from worker.connections import redis_client
from worker.jobs.nodes import TTL_SECONDS, NodeRegistry

DEFAULT_GRACE = TTL_SECONDS + 5.0  # a node that just started needs one heartbeat


class NoWorker(Exception):
    def __init__(self, queue: str, grace: float) -> None:
        super().__init__(
            f"no worker is consuming queue {queue!r}: no live worker node in Redis for "
            f"{grace:.0f}s. Start one (seat-revoker worker); what was enqueued stays queued "
            "and runs when a worker starts")


def live_node_count(settings: Settings) -> int | None:
    """Live worker nodes of the namespace, ``None`` when Redis does not answer."""
    redis = redis_client(settings.redis_url, timeout=3, connect_timeout=3)
    try:
        return len(NodeRegistry(redis, settings.redis_key("nodes")).live_nodes())
    except RedisError:
        return None
    finally:
        redis.close()


class WorkerWatch:
    """Call ``check()`` while waiting: raises ``NoWorker`` after ``grace`` seconds without
    a live node. Counts are read at most every ``every`` seconds."""

    def __init__(self, count: Callable[[], int | None], *, queue: str, grace: float,
                 every: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._count, self._queue, self._grace = count, queue, grace
        self._every, self._clock = every, clock
        self._last_seen = clock()
        self._last_read = float("-inf")

    def check(self) -> None:
        now = self._clock()
        if now - self._last_read < self._every:
            return
        self._last_read = now
        count = self._count()
        if count is None or count > 0:  # unknown is not "none"
            self._last_seen = now
        elif now - self._last_seen >= self._grace:
            raise NoWorker(self._queue, self._grace)

    @classmethod
    def of(cls, settings: Settings, grace: float) -> WorkerWatch:
        return cls(lambda: live_node_count(settings), queue=settings.queue_name, grace=grace)
