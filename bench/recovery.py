"""Benchmark 6: recovery after a node is SIGKILLed mid-batch, on a plain fleet.

Two ``seat-revoker worker`` nodes with default settings (scheduler built in, default leases
and heartbeats), the sandbox at a fixed-window ``--rate`` (default 40/second) and the
workers' limiter at the same rate. A batch of ``--seats`` rows naming a seat and its
subscription (the occupant guard reads each list once); with ``--faults 0.25`` a quarter of
the DELETEs first get a 503. When ``--kill-at`` of the batch is finished, the node holding
work is SIGKILLed. Prints:

* the requests the dead node held (its ``worker.jobs.nodes`` holds) and how many were re-sent,
* **recovery**: seconds from the kill to the last of those requests being re-sent, and to
  the last of them being terminal (a re-sent request queues behind the batch's backlog),
* the batch's wall time against its floor (Polar calls needed ÷ rate),
* the settings that bound recovery (running/queued lease, node heartbeat, scheduler
  interval), and the check that every seat was revoked exactly once.

Run: ``.venv/bin/python -m worker.sandbox.testenv -- .venv/bin/python -m bench.recovery``
"""

from __future__ import annotations

import argparse
import math
import time
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
from worker.connections import redis_client
from worker.intake.batchfile import parse_batch
from worker.jobs.nodes import BEAT_SECONDS, TTL_SECONDS
from worker.sandbox.localstack import LocalStack
from worker.store.batches import batch_progress
from worker.store.models import RevocationRequest

NAME = "recovery"


def finished_before(stack: LocalStack, request_id: str, moment: float) -> bool:
    record = stack.store.get(request_id)
    return (record is not None and record.finished_at is not None
            and as_utc(record.finished_at).timestamp() < moment)


def held_by(stack: LocalStack, node_name: str) -> set[str]:
    redis = redis_client(stack.settings.redis_url, decode_responses=True)
    prefix = stack.settings.redis_key("nodes", "holds")
    ids: set[str] = set()
    for key in redis.scan_iter(match=f"{prefix}:{node_name}-*"):
        ids |= {str(m) for m in redis.smembers(key)}
    redis.close()
    return ids


def run(*, seats: int = 1000, rate: str = "40/second", faults: float = 0.25,
        kill_at: float = 0.3, concurrency: int = 2, seed: int = 1,
        timeout: float = 300) -> dict[str, Any]:
    args = argparse.Namespace(seats=seats, rate=rate, faults=faults, kill_at=kill_at,
                              concurrency=concurrency, seed=seed, timeout=timeout)
    machine = machine_info()
    params = {"seats": args.seats, "rate": args.rate, "faults": args.faults,
              "kill_at": args.kill_at, "nodes": 2, "concurrency": args.concurrency,
              "seed": args.seed}
    print_header("recovery after a node is SIGKILLed mid-batch (plain fleet)", params, machine)
    with LocalStack(workdir=workdir(NAME), rate_limit=args.rate,
                    sandbox_rate_limit=args.rate) as stack:
        settings = stack.settings
        rows = seed_subscription_seats(stack, args.seats, args.seed, per_subscription=50)
        if args.faults:
            stack.control.configure(seed=args.seed)
            stack.control.add_fault(method="DELETE", status=503, probability=args.faults)
        victim = stack.add_worker(concurrency=args.concurrency, name="victim")
        stack.add_worker(concurrency=args.concurrency, name="survivor")
        parsed = parse_batch(subscription_seat_csv(rows), filename="bench.csv")
        t0 = time.time()
        batch = stack.producer.submit_batch(parsed.requests, name=NAME,
                                            lines=[r.line for r in parsed.rows])
        deadline = time.monotonic() + args.timeout
        while True:
            progress = batch_progress(stack.store, batch.batch_id)
            assert progress is not None
            if progress.finished >= args.kill_at * progress.total:
                break
            if time.monotonic() > deadline:
                raise TimeoutError("the batch never reached the kill point")
            time.sleep(0.05)
        killed = time.time()
        victim.kill()
        # Read after the kill: a dead node cannot release what it held, and a request it
        # had just finished may still be listed (the release follows the stored outcome),
        # so only what was not terminal at the kill counts as held.
        held = {request_id for request_id in held_by(stack, victim.name)
                if not finished_before(stack, request_id, killed)}
        while not (progress := batch_progress(stack.store, batch.batch_id)) or not progress.done:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the batch did not finish within {args.timeout} s")
            time.sleep(0.1)
        records = [stack.store.get(request_id) for request_id in held]
        finished = [as_utc(r.finished_at).timestamp() for r in records
                    if r is not None and r.finished_at is not None]
        with stack.store.session() as session:
            last = session.scalar(select(func.max(RevocationRequest.finished_at))
                                  .where(RevocationRequest.batch_id == batch.batch_id))
        assert last is not None
        last_batch = as_utc(last).timestamp()
        resent_at = [as_utc(event.at).timestamp() for request_id in held
                     for event in stack.store.history(request_id)
                     if (event.detail or {}).get("requeued") and
                     as_utc(event.at).timestamp() >= killed]
        resent = len(resent_at)
        stats = stack.control.stats()
        changes = stats["revocations_by_seat"]
        calls = len(rows) + math.ceil(len(rows) / 50)
        floor = calls / RateLimit.parse(args.rate).per_second
        figures = {
            "requests the dead node held": len(held),
            "of them re-sent by the scheduler": resent,
            "recovery: kill → last held request re-sent (s)":
                round(max(resent_at) - killed, 2) if resent_at else None,
            "kill → last held request terminal (s)":
                round(max(finished) - killed, 2) if finished else None,
            "kill → batch done (s)": round(last_batch - killed, 2),
            "batch wall time, submit → last terminal (s)": round(last_batch - t0, 2),
            "floor = calls needed ÷ rate (s)": round(floor, 2),
            "503s injected": stats["by_status"].get("503", 0),
            "429s": stats["rate_limited"],
            "seats revoked exactly once": sum(1 for n in changes.values() if n == 1),
            "seats revoked more than once": sum(1 for n in changes.values() if n > 1),
            "seats not revoked": len(rows) - len(changes),
            "outcomes": progress.counts,
        }
        knobs = {
            "RUNNING_LEASE_SECONDS": settings.running_lease_seconds,
            "QUEUED_LEASE_SECONDS": settings.queued_lease_seconds,
            "SCHEDULER_INTERVAL_SECONDS": settings.scheduler_interval_seconds,
            "node heartbeat / node TTL (s)": f"{BEAT_SECONDS:g} / {TTL_SECONDS:g}",
            "SEAT_LOCK_SECONDS": settings.seat_lock_seconds,
        }
        print_table(["figure", "value"], list(figures.items()), title="results")
        print_table(["setting", "value"], list(knobs.items()),
                    title="settings that bound recovery (defaults)")
        cleanup_namespace(stack)
    return {"params": params, "machine": machine, "results": figures, "settings": knobs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seats", type=int, default=1000)
    parser.add_argument("--rate", default="40/second")
    parser.add_argument("--faults", type=float, default=0.25,
                        help="share of DELETEs answered 503 first (default 0.25)")
    parser.add_argument("--kill-at", type=float, default=0.3,
                        help="fraction of the batch finished when the node is killed")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=300)
    write_result(NAME, run(**vars(parser.parse_args())))


if __name__ == "__main__":
    main()
