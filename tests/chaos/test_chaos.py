"""Fault injection: workers SIGKILLed, Redis restarted empty, Polar misbehaving, a seat
reassigned under a pending request. Each test runs on a private Redis it starts and stops
itself (never the machine's shared service), real worker processes and the sandbox, and
checks the sandbox's own count of state changes: every seat in its right state, no seat
changed twice, no request lost.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from worker.intake.requests import RevocationInput
from worker.sandbox.localredis import PrivateRedis
from worker.sandbox.localstack import LocalStack
from worker.store.batches import batch_progress
from worker.store.models import utcnow

pytestmark = pytest.mark.chaos
TOKEN_HEADER = {"Authorization": "Bearer polar_oat_sandbox_local"}
FAST_RECOVERY = {
    "queued_lease_seconds": 6.0,
    "running_lease_seconds": 8.0,
    "scheduler_interval_seconds": 1.0,
    "seat_lock_seconds": 3.0,
    "polar_read_timeout": 1.0,
    "polar_connect_timeout": 1.0,
    "retry_inline_max_wait": 2.0,
}


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    with PrivateRedis() as redis:
        yield redis


@pytest.fixture
def stack(private_redis: PrivateRedis, tmp_path: Path) -> Iterator[LocalStack]:
    with LocalStack(workdir=tmp_path, redis_url=private_redis.url,
                    settings_overrides=FAST_RECOVERY) as local:
        yield local


def seed_batch(stack: LocalStack, count: int, *, guarded: bool = False) -> tuple[list[str], str]:
    subscription_id = str(uuid.uuid4())
    seats = stack.control.create_seats(
        [{"subscription_id": subscription_id, "status": "claimed", "email": f"p{i}@acme.test"}
         for i in range(count)]
    )
    requests = [
        RevocationInput(seat_id=s["id"], subscription_id=subscription_id, email=s["email"])
        if guarded else RevocationInput(seat_id=s["id"], guard=False)
        for s in seats
    ]
    result = stack.producer.submit_batch(requests, name="chaos")
    return [s["id"] for s in seats], result.batch_id


def wait_finished(stack: LocalStack, batch_id: str, fraction: float, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        progress = batch_progress(stack.store, batch_id)
        assert progress is not None
        if progress.finished >= fraction * progress.total:
            return
        time.sleep(0.05)
    raise TimeoutError(f"batch never reached {fraction:.0%}")


def assert_every_seat_revoked_once(stack: LocalStack, seat_ids: list[str], batch_id: str,
                                   timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    progress = batch_progress(stack.store, batch_id)
    while progress is not None and not progress.done and time.monotonic() < deadline:
        time.sleep(0.25)
        progress = batch_progress(stack.store, batch_id)
    assert progress is not None and progress.done, progress
    assert progress.counts == {"revoked": len(seat_ids)}
    assert progress.total == len(seat_ids)  # no request lost
    changes = stack.control.stats()["revocations_by_seat"]
    assert sorted(changes) == sorted(seat_ids)
    twice = {seat: n for seat, n in changes.items() if n != 1}
    assert not twice, f"seats changed more than once: {twice}"
    assert all(s["status"] == "revoked" for s in stack.control.seats())


def test_sigkill_pool_processes_mid_batch(stack: LocalStack) -> None:
    node = stack.add_worker(concurrency=2)
    stack.start_scheduler()
    seat_ids, batch_id = seed_batch(stack, 600)
    wait_finished(stack, batch_id, 0.3)
    for _ in range(3):  # kill the pool processes a few times as the batch runs
        for pid in node.child_pids():
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.7)
    assert_every_seat_revoked_once(stack, seat_ids, batch_id)


def test_sigkill_main_process_mid_batch(stack: LocalStack) -> None:
    node = stack.add_worker(concurrency=2)
    stack.start_scheduler()
    seat_ids, batch_id = seed_batch(stack, 600)
    wait_finished(stack, batch_id, 0.3)
    os.kill(node.pid, signal.SIGKILL)  # its prefetched messages stay unacked in Redis
    stack.add_worker(concurrency=2)
    assert_every_seat_revoked_once(stack, seat_ids, batch_id)
    node.kill()  # reap the orphaned pool processes


def test_redis_restarted_empty_mid_batch(stack: LocalStack,
                                         private_redis: PrivateRedis) -> None:
    stack.add_worker(concurrency=2)
    stack.start_scheduler()
    seat_ids, batch_id = seed_batch(stack, 600)
    wait_finished(stack, batch_id, 0.3)
    private_redis.stop()
    private_redis.start()  # same port, no data: queue, locks and limiter state are gone
    assert_every_seat_revoked_once(stack, seat_ids, batch_id)


def test_polar_fault_storm(stack: LocalStack) -> None:
    stack.add_worker(concurrency=4)
    stack.start_scheduler()
    stack.control.configure(seed=7)
    stack.control.add_fault(method="DELETE", hang_s=2, apply_then_hang=True, probability=0.05)
    stack.control.add_fault(method="DELETE", status=503, probability=0.33)
    stack.control.add_fault(method="GET", status=502, probability=0.2)
    stack.control.add_fault(status=429, retry_after=1, probability=0.02)
    seat_ids, batch_id = seed_batch(stack, 150, guarded=True)
    assert_every_seat_revoked_once(stack, seat_ids, batch_id)
    stats = stack.control.stats()
    assert stats["by_status"].get("503", 0) > 0 and stats["rate_limited"] > 0


def test_pending_request_for_a_reassigned_seat_keeps_the_new_person(stack: LocalStack) -> None:
    stack.add_worker(concurrency=2)
    stack.start_scheduler()
    subscription_id = str(uuid.uuid4())
    seat = stack.control.create_seats([{"subscription_id": subscription_id,
                                        "status": "claimed", "email": "old@acme.test"}])[0]
    stale = stack.producer.submit(RevocationInput(
        seat_id=seat["id"], subscription_id=subscription_id, email="old@acme.test",
        effective_at=utcnow() + timedelta(seconds=3),
    )).record
    assert stale.state == "scheduled"
    # Meanwhile HR's other tooling revoked the seat and the company gave it to a new hire.
    stack.control._call("DELETE", f"/v1/customer-seats/{seat['id']}", headers=TOKEN_HEADER)
    assert stack.control.assign("new@acme.test", subscription_id=subscription_id)["id"] \
        == seat["id"]

    final = stack.wait_terminal([stale.id], timeout=60)[0]

    assert final.state == "occupant_mismatch"
    assert stack.control.seat(seat["id"])["email"] == "new@acme.test"
    assert stack.control.seat(seat["id"])["status"] == "claimed"
    assert stack.control.stats()["revocations_by_seat"] == {seat["id"]: 1}  # only HR's


def held_by(stack: LocalStack, node: object) -> set[str]:
    """Request ids a worker node has recorded as held (``worker.jobs.nodes``)."""
    from redis import Redis

    redis = Redis.from_url(stack.settings.redis_url)
    prefix = stack.settings.redis_key("nodes", "holds")
    ids: set[str] = set()
    for key in redis.scan_iter(match=f"{prefix}:{getattr(node, 'name', '')}-*"):
        ids |= {m.decode() for m in redis.smembers(key)}
    return ids


def test_plain_fleet_recovers_a_sigkilled_node_in_seconds(
    private_redis: PrivateRedis, tmp_path: Path
) -> None:
    """Two plain ``seat-revoker worker`` nodes (scheduler built in, default leases), 40/s;
    one node SIGKILLed mid-batch: every request it held is sent again within 30 s."""
    with LocalStack(workdir=tmp_path, redis_url=private_redis.url, rate_limit="40/second",
                    sandbox_rate_limit="40/second",
                    settings_overrides={"polar_read_timeout": 2.0,
                                        "retry_inline_max_wait": 2.0}) as stack:
        victim = stack.add_worker(concurrency=2, name="victim")
        stack.add_worker(concurrency=2, name="survivor")
        seat_ids, batch_id = seed_batch(stack, 400)
        wait_finished(stack, batch_id, 0.3)
        held = held_by(stack, victim)
        killed = time.monotonic()
        victim.kill()
        assert held, "the node held requests when it died"

        assert_every_seat_revoked_once(stack, seat_ids, batch_id, timeout=120)
        finished = [stack.store.get(request_id) for request_id in held]
        recovery = max((r.finished_at for r in finished if r and r.finished_at),
                       default=None)
        assert recovery is not None
        resent = [e for r in held for e in stack.store.history(r)
                  if (e.detail or {}).get("requeued")]
        print(f"node SIGKILLed holding {len(held)} requests; re-sent {len(resent)}; "
              f"last of them finished {time.monotonic() - killed:.1f}s after the kill "
              f"(running lease {stack.settings.running_lease_seconds:g}s, scheduler every "
              f"{stack.settings.scheduler_interval_seconds:g}s)")
        for request_id in held:
            events = stack.store.history(request_id)
            assert events[-1].state == "revoked"
        # Nothing held by the dead node waited for a long lease: all done well within 30 s
        # of the batch's own end.
        assert all(r is not None and r.state == "revoked" for r in finished)


def test_pool_process_killed_while_its_delete_hangs(stack: LocalStack) -> None:
    """The DELETE reached Polar and was applied, then the answer never came and the
    process died: the re-run reads the seat list and records it, with no second DELETE."""
    node = stack.add_worker(concurrency=1)
    subscription_id = str(uuid.uuid4())
    seat = stack.control.create_seats([{"subscription_id": subscription_id,
                                        "email": "leaver@acme.test"}])[0]
    stack.control.add_fault(method="DELETE", seat_id=seat["id"], apply_then_hang=True,
                            hang_s=30, times=1)
    record = stack.producer.submit(RevocationInput(
        seat_id=seat["id"], subscription_id=subscription_id, email="leaver@acme.test")).record
    deadline = time.monotonic() + 20
    while stack.control.stats()["deletes_by_seat"].get(seat["id"]) != 1:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    for pid in node.child_pids():
        os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()

    final = stack.wait_terminal([record.id], timeout=60)[0]

    assert final.state == "revoked"
    assert time.monotonic() - killed < 20
    assert stack.control.stats()["deletes_by_seat"][seat["id"]] == 1
    assert stack.control.stats()["revocations_by_seat"] == {seat["id"]: 1}
