"""The per-seat lock holds for as long as its holder lives, and no longer.

redis-py's ``Lock`` keeps its token thread-local by default, so the heartbeat thread's
``extend()`` used to fail and the lock lapsed after one TTL under a live worker.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest
from redis import Redis

from worker.jobs.seatlock import SeatBusy, seat_lock

pytestmark = pytest.mark.integration
TTL = 1.0


@pytest.fixture
def redis(redis_url: str) -> Iterator[Redis]:
    client = Redis.from_url(redis_url)
    yield client
    client.close()


def refused(redis: Redis, key: str) -> bool:
    try:
        with seat_lock(redis, key, ttl=TTL, wait=0.01):
            return False
    except SeatBusy:
        return True


def test_a_held_lock_refuses_others_across_several_ttls(redis: Redis) -> None:
    key = f"test-seatlock:{uuid.uuid4().hex}"
    beats: list[float] = []
    with seat_lock(redis, key, ttl=TTL) as heartbeat:
        heartbeat.also("count", lambda: beats.append(time.monotonic()))
        deadline = time.monotonic() + 4 * TTL
        while time.monotonic() < deadline:
            assert refused(redis, key)
            time.sleep(0.1)
    assert len(beats) >= 9, "the heartbeat ran every TTL/3"
    assert not refused(redis, key), "released on exit"


def test_a_killed_holder_frees_the_seat_within_one_ttl(redis: Redis, redis_url: str) -> None:
    key = f"test-seatlock:{uuid.uuid4().hex}"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import time; from redis import Redis; from worker.jobs.seatlock import seat_lock\n"
        f"with seat_lock(Redis.from_url({redis_url!r}), {key!r}, ttl={TTL}):\n"
        "    print('held', flush=True); time.sleep(60)\n")],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        time.sleep(2 * TTL)
        assert refused(redis, key), "still held by a live holder after two TTLs"
        holder.kill()
        killed = time.monotonic()
        while refused(redis, key):
            assert time.monotonic() - killed < TTL + 0.5
            time.sleep(0.05)
    finally:
        holder.kill()
        holder.wait(5)
