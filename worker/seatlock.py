"""Per-seat mutual exclusion in Redis, kept alive while its holder works.

The lock has a short TTL and a heartbeat thread extends it, so a worker that is SIGKILLed
mid-job frees the seat within one TTL and the redelivered task can proceed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from redis import Redis
from redis.exceptions import LockError, RedisError

from worker.logs import get_logger

log = get_logger("seat_revoker.seatlock")


class SeatBusy(Exception):
    """Another worker holds this seat's lock."""


@contextmanager
def seat_lock(redis: Redis, key: str, ttl: float, wait: float = 1.0) -> Iterator[None]:
    lock = redis.lock(key, timeout=ttl, blocking_timeout=wait)
    if not lock.acquire():
        raise SeatBusy(key)
    stop = threading.Event()

    def heartbeat() -> None:
        while not stop.wait(ttl / 3):
            try:
                lock.extend(ttl, replace_ttl=True)
            except (LockError, RedisError):
                log.warning("seat.lock.lost")
                return

    beat = threading.Thread(target=heartbeat, name="seat-lock-heartbeat", daemon=True)
    beat.start()
    try:
        yield
    finally:
        stop.set()
        beat.join()
        try:
            lock.release()
        except LockError:
            log.warning("seat.lock.expired")
