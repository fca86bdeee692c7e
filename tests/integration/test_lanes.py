"""The urgent lane: a termination overtakes a bulk batch in the broker and the rate limiter.

Real Redis, real ``seat-revoker worker`` processes, the sandbox over HTTP with Polar's
fixed-window limit: the sandbox's own counters prove each seat was revoked once and no 429
was answered.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from redis import Redis
from sqlalchemy import update

from worker.intake.requests import PersonInput, RevocationInput
from worker.jobs.person import nudge_parent
from worker.jobs.reconciler import Reconciler
from worker.jobs.runtime import Runtime
from worker.sandbox.localstack import LocalStack
from worker.store.batches import batch_progress
from worker.store.models import RevocationRequest, utcnow

pytestmark = pytest.mark.integration
RATE = "20/second"


@pytest.fixture
def lanes(redis_url: str, tmp_path: Path) -> Iterator[LocalStack]:
    with LocalStack(workdir=tmp_path, redis_url=redis_url, rate_limit=RATE,
                    sandbox_rate_limit=RATE) as stack:
        yield stack


def seed(stack: LocalStack, count: int) -> tuple[str, list[dict[str, str]]]:
    subscription_id = str(uuid.uuid4())
    seats = stack.control.create_seats(
        [{"subscription_id": subscription_id, "status": "claimed",
          "email": f"bulk{i}@acme.test"} for i in range(count)])
    return subscription_id, seats


def batch_of(subscription_id: str, seats: list[dict[str, str]]) -> list[RevocationInput]:
    return [RevocationInput(seat_id=s["id"], subscription_id=subscription_id,
                            email=s["email"]) for s in seats]


def assert_each_revoked_once(stack: LocalStack, seat_ids: list[str]) -> None:
    changes = stack.control.stats()["revocations_by_seat"]
    assert sorted(changes) == sorted(seat_ids)
    assert set(changes.values()) == {1}


def test_an_urgent_request_overtakes_a_batch_that_holds_the_rate_budget(
    lanes: LocalStack,
) -> None:
    lanes.add_worker(concurrency=2, name="n1")
    lanes.add_worker(concurrency=2, name="n2")
    subscription_id, seats = seed(lanes, 200)  # 10 s of work at 20/s
    leaver_sub, (leaver,) = seed(lanes, 1)
    batch = lanes.producer.submit_batch(batch_of(subscription_id, seats), name="reorg")
    deadline = time.monotonic() + 60
    while (progress := batch_progress(lanes.store, batch.batch_id)) is None or \
            progress.finished < 40:
        assert time.monotonic() < deadline
        time.sleep(0.05)

    submitted = time.monotonic()
    urgent = lanes.producer.submit(RevocationInput(
        seat_id=leaver["id"], subscription_id=leaver_sub, email=leaver["email"])).record
    assert urgent.priority == "urgent"
    done = lanes.wait_terminal([urgent.id], timeout=30)[0]
    waited = time.monotonic() - submitted

    assert done.state == "revoked"
    rows = lanes.wait_terminal(batch.request_ids, timeout=60)
    assert {r.priority for r in rows} == {"bulk"}
    assert {r.state for r in rows} == {"revoked"}
    after = [r for r in rows if r.finished_at and done.finished_at
             and r.finished_at > done.finished_at]
    # It did not wait for the backlog (about 150 rows, 7 s at 20/s): most of the batch
    # finished after it, and it finished within a bound far below the backlog's length.
    assert len(after) > 100, len(after)
    assert waited < 3.0, waited
    assert_each_revoked_once(lanes, [s["id"] for s in seats] + [leaver["id"]])
    assert lanes.control.stats()["rate_limited"] == 0


def test_workers_take_the_urgent_lane_first_after_a_restart(lanes: LocalStack) -> None:
    """Messages wait in their lanes while no worker runs; the first worker to start takes
    the urgent one before the bulk backlog."""
    subscription_id, seats = seed(lanes, 40)
    leaver_sub, (leaver,) = seed(lanes, 1)
    batch = lanes.producer.submit_batch(batch_of(subscription_id, seats), name="reorg")
    urgent = lanes.producer.submit(RevocationInput(
        seat_id=leaver["id"], subscription_id=leaver_sub, email=leaver["email"])).record
    lanes.add_worker(concurrency=1, name="late", extra_args=["--no-scheduler"])
    done = lanes.wait_terminal([urgent.id], timeout=30)[0]
    rows = lanes.wait_terminal(batch.request_ids, timeout=60)
    before = [r for r in rows if r.finished_at and done.finished_at
              and r.finished_at < done.finished_at]
    # One process and prefetch 1: at most the message it took before the urgent one.
    assert len(before) <= 1, [r.finished_at for r in before]
    assert_each_revoked_once(lanes, [s["id"] for s in seats] + [leaver["id"]])


def lane_lengths(stack: LocalStack) -> tuple[int, int]:
    redis = Redis.from_url(stack.settings.redis_url)
    try:
        urgent = redis.llen(f"{stack.namespace}:{stack.settings.urgent_queue_name}")
        bulk = redis.llen(f"{stack.namespace}:{stack.settings.queue_name}")
        return int(urgent), int(bulk)
    finally:
        redis.close()


def test_the_scheduler_sends_each_request_again_to_its_own_lane(lanes: LocalStack) -> None:
    subscription_id, seats = seed(lanes, 5)
    lanes.producer.submit_batch(batch_of(subscription_id, seats), name="reorg")
    lanes.producer.submit(RevocationInput(
        seat_id=seats[0]["id"], subscription_id=subscription_id, email="someone@acme.test",
        priority="urgent"))
    lanes.producer.submit(RevocationInput(
        seat_id=seats[1]["id"], subscription_id=subscription_id, email="other@acme.test",
        priority="bulk"))
    assert lane_lengths(lanes) == (1, 6)
    redis = Redis.from_url(lanes.settings.redis_url)
    redis.delete(f"{lanes.namespace}:{lanes.settings.urgent_queue_name}",
                 f"{lanes.namespace}:{lanes.settings.queue_name}")  # Redis lost them
    redis.close()
    with lanes.store.session() as session:  # their leases ran out meanwhile
        session.execute(update(RevocationRequest)
                        .values(lease_expires_at=utcnow() - timedelta(seconds=1)))
    resent = Reconciler(lanes.producer).requeue_stale()
    assert resent == 7
    assert lane_lengths(lanes) == (1, 6)
    with lanes.store.session() as session:
        priorities = sorted(r.priority for r in session.query(RevocationRequest))
    assert priorities == ["bulk"] * 6 + ["urgent"]


def test_a_namespaces_first_pass_does_not_resend_what_waits_in_the_queue(
    lanes: LocalStack,
) -> None:
    """The first scheduler pass of a namespace cannot tell "Redis came back empty" from
    "nobody ran a pass yet": it re-sends only what is neither queued nor held."""
    subscription_id, seats = seed(lanes, 3)
    batch = lanes.producer.submit_batch(batch_of(subscription_id, seats), name="reorg")
    reconciler = Reconciler(lanes.producer)
    first = reconciler.run_once()
    assert first is not None and first.redis_was_emptied and first.requeued == 0
    again = reconciler.run_once()
    assert again is not None and not again.redis_was_emptied and again.requeued == 0
    assert lane_lengths(lanes) == (0, 3)
    for request_id in batch.request_ids:
        assert [e.state for e in lanes.store.history(request_id)] == ["queued"]


@pytest.mark.parametrize("priority", ["bulk", "urgent"])
def test_a_person_request_is_nudged_in_its_own_lane(lanes: LocalStack, priority: str) -> None:
    """When a person's last seat request ends, its person request runs again at once, in
    its own lane: nudged into the urgent lane, the people of a bulk batch each ran the
    moment their last seat ended and shared no verification read (bench.person_offboarding:
    2.4 Polar calls per seat instead of 1.5)."""
    customer_id = str(uuid.uuid4())
    person = PersonInput(email="leaver@acme.test", customer_id=customer_id,
                         priority=priority)  # type: ignore[arg-type]
    parent_id = lanes.producer.submit_batch([person], name="people").request_ids[0]
    redis = Redis.from_url(lanes.settings.redis_url)
    redis.delete(f"{lanes.namespace}:{lanes.settings.urgent_queue_name}",
                 f"{lanes.namespace}:{lanes.settings.queue_name}")
    redis.close()
    runtime = Runtime.build(lanes.settings)
    try:
        nudge_parent(runtime, parent_id)  # it has no seat request still running
    finally:
        runtime.close()
    assert lane_lengths(lanes) == ((0, 1) if priority == "bulk" else (1, 0))
