"""Which worker nodes are alive, and which requests each one holds, shared in Redis.

A message Celery has handed to a node — prefetched, waiting for its ETA, or running — sits
in the broker's "unacked" hash, which says nothing about the node; if the node dies, Redis
gives the message back only after the visibility timeout (hours). So each node records
itself and the requests it holds:

- ``{p}:alive:{node}`` — refreshed every ``beat_seconds`` by the node's main process,
  expiring after ``ttl_seconds``: a SIGKILLed node disappears within one TTL;
- ``{p}:holds:{node}`` — a set of request ids: added when the node receives a message,
  removed when its task run ends (``task_postrun``, in the pool process).

The scheduler (``worker.jobs.reconciler``) re-sends a queued or retrying request that no live
node holds and that is not waiting in the broker's queue: its message was lost.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterable

from redis import Redis
from redis.exceptions import RedisError

from worker.telemetry.logs import get_logger

log = get_logger("seat_revoker.nodes")

BEAT_SECONDS = 3.0
TTL_SECONDS = 10.0


class NodeRegistry:
    def __init__(self, redis: Redis, key_prefix: str, *, ttl_seconds: float = TTL_SECONDS
                 ) -> None:
        self._redis = redis
        self._prefix = key_prefix
        self.ttl_seconds = ttl_seconds

    def _alive(self, node: str) -> str:
        return f"{self._prefix}:alive:{node}"

    def _holds(self, node: str) -> str:
        return f"{self._prefix}:holds:{node}"

    def beat(self, node: str) -> None:
        """This node is alive (call more often than ``ttl_seconds``); the value is the time
        of the beat (``heartbeats``)."""
        self._redis.set(self._alive(node), repr(time.time()), px=int(self.ttl_seconds * 1000))

    def hold(self, node: str, request_id: str) -> None:
        self._redis.sadd(self._holds(node), request_id)

    def release(self, node: str, request_id: str) -> None:
        self._redis.srem(self._holds(node), request_id)

    def leave(self, node: str) -> None:
        """A node shutting down cleanly: its unfinished messages go back to the broker."""
        self._redis.delete(self._alive(node), self._holds(node))

    def live_nodes(self) -> list[str]:
        """Nodes whose liveness key has not expired (a worker consuming the queue)."""
        prefix = f"{self._prefix}:alive:"
        return sorted(
            (raw.decode() if isinstance(raw, bytes) else str(raw))[len(prefix):]
            for raw in self._redis.scan_iter(match=f"{prefix}*", count=200)
        )

    def heartbeats(self) -> dict[str, float]:
        """{live node: Unix time of its last beat} (0 for a node of an older version)."""
        prefix = f"{self._prefix}:alive:"
        keys = [raw.decode() if isinstance(raw, bytes) else str(raw)
                for raw in self._redis.scan_iter(match=f"{prefix}*", count=200)]
        values = self._redis.mget(keys) if keys else []
        out: dict[str, float] = {}
        for key, raw in zip(keys, values, strict=True):
            if raw is None:
                continue  # expired between the scan and the read
            try:
                out[key[len(prefix):]] = float(raw)
            except ValueError:
                out[key[len(prefix):]] = 0.0
        return out

    def holdings(self) -> tuple[set[str], dict[str, set[str]]]:
        """(ids held by live nodes, {dead node: ids it held})."""
        live: set[str] = set()
        dead: dict[str, set[str]] = {}
        prefix = f"{self._prefix}:holds:"
        for raw in self._redis.scan_iter(match=f"{prefix}*", count=200):
            key = raw.decode() if isinstance(raw, bytes) else str(raw)
            node = key[len(prefix):]
            ids = {m.decode() if isinstance(m, bytes) else str(m)
                   for m in self._redis.smembers(key)}
            if self._redis.exists(self._alive(node)):
                live |= ids
            else:
                dead[node] = ids
        return live, dead

    def forget(self, node: str, request_ids: Iterable[str]) -> None:
        """A dead node's holdings, once they were sent again."""
        ids = list(request_ids)
        if ids:
            self._redis.srem(self._holds(node), *ids)
        if not self._redis.scard(self._holds(node)):
            self._redis.delete(self._holds(node))


def run_heartbeat(registry: NodeRegistry, node: str, stop: threading.Event,
                  beat_seconds: float = BEAT_SECONDS) -> None:
    """The node's liveness loop (a thread of the worker's main process)."""
    while True:
        try:
            registry.beat(node)
        except RedisError as exc:  # Redis away for a moment: keep trying
            log.warning("node.heartbeat_failed", node=node, error=type(exc).__name__)
        if stop.wait(beat_seconds):
            break
    with contextlib.suppress(RedisError):
        registry.leave(node)
