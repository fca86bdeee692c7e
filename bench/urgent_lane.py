"""Benchmark 7: an urgent revocation in the middle of a bulk batch at Polar's rate limit.

Two ``seat-revoker worker`` nodes x 2 processes, the sandbox with a fixed-window limit of
``--rate`` (default 20/second) and the workers' limiter at the same rate. First, idle:
``--urgent`` single revocations (the CLI's and API's default lane, urgent), one at a time,
each timed from submit to its terminal record. Then a ``--seats`` row batch (bulk, 30 seats
per subscription) and, from ``--first-at`` seconds in, the same number of urgent
revocations ``--every`` seconds apart, timed the same way. Prints the median and max wait
of both, their difference (goal: ≤ 2 s while the batch runs, within 1 s of idle), the
batch's wall time against its floor (Polar calls needed ÷ rate, the urgent requests' own
calls included), 429s and revocations per seat.

Run: ``.venv/bin/python -m worker.sandbox.testenv -- .venv/bin/python -m bench.urgent_lane``
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
import uuid
from typing import Any

from sqlalchemy import func, select

from bench.common import (
    as_utc,
    cleanup_namespace,
    machine_info,
    print_header,
    print_table,
    seed_subscription_seats,
    subscription_seat_csv,
    workdir,
    write_result,
)
from config.settings import RateLimit
from worker.intake.batchfile import parse_batch
from worker.intake.requests import RevocationInput
from worker.sandbox.localstack import LocalStack
from worker.store.models import RevocationRequest

NAME = "urgent_lane"


def one_urgent(stack: LocalStack, index: int) -> float:
    """Submit one urgent revocation of a fresh seat; seconds from submit to terminal."""
    subscription_id = str(uuid.uuid4())
    email = f"leaver{index}@bench.test"
    seat = stack.control.create_seats([{"subscription_id": subscription_id,
                                        "status": "claimed", "email": email}])[0]
    started = time.monotonic()
    record = stack.producer.submit(RevocationInput(
        seat_id=seat["id"], subscription_id=subscription_id, email=email)).record
    while (current := stack.store.get(record.id)) is None or current.finished_at is None:
        time.sleep(0.01)
    assert current.state == "revoked", current.state
    return time.monotonic() - started


def run(*, seats: int = 600, rate: str = "20/second", urgent: int = 5,
        first_at: float = 10.0, every: float = 3.0, seed: int = 1) -> dict[str, Any]:
    machine = machine_info()
    params = {"seats": seats, "rate": rate, "urgent": urgent, "first_at_s": first_at,
              "every_s": every, "nodes": 2, "concurrency": 2, "seed": seed}
    print_header("an urgent revocation in the middle of a bulk batch", params, machine)
    with LocalStack(workdir=workdir(NAME), rate_limit=rate, sandbox_rate_limit=rate) as stack:
        stack.add_worker(concurrency=2, name="n1")
        stack.add_worker(concurrency=2, name="n2")
        idle = []
        for i in range(urgent):
            idle.append(one_urgent(stack, i))
            time.sleep(1.2)  # a fresh window each time, as a lone request would see
        rows = seed_subscription_seats(stack, seats, seed, per_subscription=30)
        parsed = parse_batch(subscription_seat_csv(rows), filename="bench.csv")
        before = stack.control.stats()
        t0 = time.monotonic()
        wall0 = time.time()
        batch = stack.producer.submit_batch(parsed.requests, name=NAME,
                                            lines=[r.line for r in parsed.rows])
        busy = []
        for i in range(urgent):
            time.sleep(max(0.0, t0 + first_at + i * every - time.monotonic()))
            busy.append(one_urgent(stack, 100 + i))
        stack.wait_terminal(batch.request_ids, timeout=600)
        with stack.store.session() as session:
            last = session.scalar(select(func.max(RevocationRequest.finished_at))
                                  .where(RevocationRequest.batch_id == batch.batch_id))
            outcomes = dict(session.execute(
                select(RevocationRequest.state, func.count())
                .where(RevocationRequest.batch_id == batch.batch_id)
                .group_by(RevocationRequest.state)).all())
        assert last is not None
        wall = as_utc(last).timestamp() - wall0
        stats = stack.control.stats()
        per_second = RateLimit.parse(rate).per_second
        lists = math.ceil(seats / 30)
        floor = (seats + lists) / per_second
        floor_with_urgent = (seats + lists + 2 * urgent) / per_second  # list + DELETE each
        changes = stats["revocations_by_seat"]
        figures = {
            "urgent wait, idle: median / max (s)":
                f"{statistics.median(idle):.2f} / {max(idle):.2f}",
            "urgent wait, batch running: median / max (s)":
                f"{statistics.median(busy):.2f} / {max(busy):.2f}",
            "median difference, running - idle (s)":
                round(statistics.median(busy) - statistics.median(idle), 2),
            "batch wall time, submit → last terminal (s)": round(wall, 2),
            "batch floor, its own calls ÷ rate (s)": round(floor, 2),
            "floor with the urgent requests' calls (s)": round(floor_with_urgent, 2),
            "ratio wall ÷ floor with urgent calls": round(wall / floor_with_urgent, 3),
            "429s": stats["rate_limited"] - before["rate_limited"],
            "seats revoked more than once": sum(1 for n in changes.values() if n > 1),
            "batch outcomes": outcomes,
        }
        print_table(["figure", "value"], list(figures.items()), title="results")
        cleanup_namespace(stack)
    return {"params": params, "machine": machine, "results": figures,
            "idle_s": idle, "busy_s": busy}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seats", type=int, default=600)
    parser.add_argument("--rate", default="20/second")
    parser.add_argument("--urgent", type=int, default=5)
    parser.add_argument("--first-at", type=float, default=10.0)
    parser.add_argument("--every", type=float, default=3.0)
    parser.add_argument("--seed", type=int, default=1)
    write_result(NAME, run(**vars(parser.parse_args())))


if __name__ == "__main__":
    main()
