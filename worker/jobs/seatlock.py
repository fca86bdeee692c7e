"""Per-seat mutual exclusion in Redis, kept alive while its holder works (and the same kept
lock for the scheduler's one pass at a time across the fleet).

The lock has a short TTL and a heartbeat thread extends it, so a worker that is SIGKILLed
mid-job frees the seat within one TTL and the redelivered task can proceed. The same
heartbeat renews whatever else must follow the worker's liveness (the request's lease in
the store: ``Heartbeat.also``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from redis import Redis
from redis.exceptions import LockError, RedisError

from worker.telemetry.logs import get_logger

log = get_logger("seat_revoker.seatlock")


class SeatBusy(Exception):
    """Another worker holds this seat's lock."""


class Heartbeat:
    """Calls its beats every ``interval`` seconds in a thread until stopped."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._beats: list[tuple[str, Callable[[], object]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def also(self, name: str, beat: Callable[[], object]) -> None:
        """Add a beat; one that raises is logged and dropped, the others go on."""
        self._beats.append((name, beat))

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            for name, beat in list(self._beats):
                try:
                    beat()
                except Exception as exc:
                    log.warning("heartbeat.lost", beat=name, error=type(exc).__name__)
                    self._beats.remove((name, beat))


@contextmanager
def seat_lock(redis: Redis, key: str, ttl: float, wait: float = 1.0) -> Iterator[Heartbeat]:
    """The lock of one seat (or person) for the block; ``SeatBusy`` when another holds it."""
    with kept_lock(redis, key, ttl=ttl, wait=wait, name="seat") as heartbeat:
        yield heartbeat


@contextmanager
def kept_lock(redis: Redis, key: str, *, ttl: float, wait: float,
              name: str) -> Iterator[Heartbeat]:
    """A Redis lock held for the block and extended every ``ttl / 3`` seconds by a
    heartbeat thread, so a holder that dies — or a Redis that restarts from its append-only
    file with the lock in it — frees it within ``ttl``. ``wait`` 0: one try. Raises
    ``SeatBusy`` when another holder has it."""
    # thread_local=False: the token must be visible to the heartbeat thread, which extends
    # the lock (redis-py's default keeps it in a threading.local of the acquiring thread,
    # so extend() there raised and the lock lapsed under a live worker).
    lock = redis.lock(key, timeout=ttl, blocking=wait > 0, blocking_timeout=wait or None,
                      thread_local=False)
    if not lock.acquire():
        raise SeatBusy(key)

    def extend() -> None:
        try:
            lock.extend(ttl, replace_ttl=True)
        except (LockError, RedisError):
            log.warning(f"{name}.lock.lost")
            raise

    heartbeat = Heartbeat(ttl / 3)
    heartbeat.also(f"{name}_lock", extend)
    heartbeat.start()
    try:
        yield heartbeat
    finally:
        heartbeat.stop()
        try:
            lock.release()
        except LockError:
            log.warning(f"{name}.lock.expired")
