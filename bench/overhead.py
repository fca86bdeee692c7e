"""Benchmark 4: revocations per second with no rate limit, next to a Celery no-op task.

The sandbox has no rate limit and zero latency; the workers' POLAR_RATE_LIMIT is
100000/second (the shared limiter still runs, it just never waits). For each concurrency
(one node): submit a batch of seat-id rows (``guard=false``: one DELETE each, no
seat-list read) and time it to the last terminal request; then
run the same number of no-op tasks (``bench.noop_app``: the same Celery configuration —
broker, late acks, prefetch 1, result backend, events) on a node of the same concurrency.
The no-op rate is the engine's own ceiling on this machine; the gap to it is what a
revocation costs (store reads/writes, the seat lock, the limiter, the HTTP call, logs).

Run: ``.venv/bin/python -m worker.sandbox.testenv -- .venv/bin/python -m bench.overhead``
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from datetime import datetime
from typing import Any

from celery import Celery
from sqlalchemy import func, select

from bench.common import (
    CeleryNode,
    as_utc,
    cleanup_namespace,
    machine_info,
    print_header,
    print_table,
    seat_id_csv,
    seeded_uuids,
    workdir,
    write_result,
)
from bench.noop_app import NOOP_TASK
from config.celery import celery_config
from worker.intake.batchfile import parse_batch
from worker.sandbox.localstack import LocalStack
from worker.store.batches import batch_progress
from worker.store.models import RevocationRequest

NAME = "overhead"


def run_revocations(stack: LocalStack, seats: int, concurrency: int, seed: int,
                    timeout: float) -> dict[str, Any]:
    seat_ids = seeded_uuids(seats, seed)
    stack.control.create_seats([{"id": sid, "status": "claimed"} for sid in seat_ids])
    worker = stack.add_worker(concurrency=concurrency, name=f"overhead-c{concurrency}")
    try:
        parsed = parse_batch(seat_id_csv(seat_ids, guard=False), filename="bench.csv")
        producer = stack.producer
        before = stack.control.stats()
        t0 = time.time()
        result = producer.submit_batch(parsed.requests, name=f"{NAME}-c{concurrency}",
                                       lines=[row.line for row in parsed.rows])
        submit_s = time.time() - t0
        deadline = time.monotonic() + timeout
        while True:
            progress = batch_progress(producer.store, result.batch_id)
            if progress is not None and progress.done:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"not done after {timeout}s: {progress}")
            time.sleep(0.25)
        with producer.store.session() as session:
            first, last = session.execute(
                select(func.min(RevocationRequest.finished_at),
                       func.max(RevocationRequest.finished_at))
                .where(RevocationRequest.batch_id == result.batch_id)
            ).one()
        stats = stack.control.stats()
    finally:
        worker.stop()
        stack.workers.remove(worker)
    assert first is not None and last is not None
    first_s, last_s = as_utc(first).timestamp(), as_utc(last).timestamp()
    return {
        "kind": "revoke",
        "concurrency": concurrency,
        "tasks": seats,
        "outcomes": progress.counts,
        "submit_s": round(submit_s, 3),
        "wall_s": round(last_s - t0, 3),
        "per_s_wall": round(seats / (last_s - t0), 1),
        "per_s_steady": round((seats - 1) / (last_s - first_s), 1),
        "polar_requests": stats["requests"] - before["requests"],
        "rate_limited_429": stats["rate_limited"] - before["rate_limited"],
    }


def run_noops(stack: LocalStack, tasks: int, concurrency: int, timeout: float
              ) -> dict[str, Any]:
    settings = stack.settings
    client = Celery("noop_client")
    client.config_from_object(celery_config(settings))
    node = CeleryNode(app="bench.noop_app", queue=settings.queue_name, env=stack.env,
                      concurrency=concurrency, name=f"noop-c{concurrency}",
                      log_path=stack.workdir / f"noop-c{concurrency}.log").start()
    try:
        ids = [str(uuid.uuid4()) for _ in range(tasks)]
        t0 = time.time()
        with client.producer_or_acquire() as producer, producer.batch(max_size=1000):
            for task_id in ids:
                client.send_task(NOOP_TASK, args=[task_id], task_id=task_id,
                                 queue=settings.queue_name, producer=producer)
        submit_s = time.time() - t0
        backend = client.backend
        keys = [backend.get_key_for_task(tid) for tid in ids]
        deadline = time.monotonic() + timeout
        while True:
            metas = [json.loads(raw) if raw else None
                     for raw in backend.client.mget(keys)]
            if all(m is not None and m["status"] == "SUCCESS" for m in metas):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"no-op tasks not done after {timeout}s")
            time.sleep(0.25)
        done = sorted(as_utc(datetime.fromisoformat(m["date_done"])).timestamp()
                      for m in metas if m)
        backend.client.delete(*keys)
    finally:
        node.stop()
        client.close()
    return {
        "kind": "noop",
        "concurrency": concurrency,
        "tasks": tasks,
        "submit_s": round(submit_s, 3),
        "wall_s": round(done[-1] - t0, 3),
        "per_s_wall": round(tasks / (done[-1] - t0), 1),
        "per_s_steady": round((tasks - 1) / (done[-1] - done[0]), 1),
    }


def run(*, seats: int = 2000, concurrencies: tuple[int, ...] = (2, 4), seed: int = 4,
        timeout: float = 300.0, quiet: bool = False) -> dict[str, Any]:
    params = {"tasks": seats, "concurrencies": list(concurrencies), "nodes": 1,
              "polar_rate_limit": "100000/second", "sandbox_rate_limit": None,
              "sandbox_latency_ms": 0, "seed": seed}
    machine = machine_info()
    if not quiet:
        print_header("4. overhead without a rate limit (vs a Celery no-op)", params, machine)
    stack = LocalStack(workdir(NAME), rate_limit="100000/second", sandbox_rate_limit=None)
    stack.start()
    runs: list[dict[str, Any]] = []
    try:
        stack.control.configure(latency_ms=0)
        for n, concurrency in enumerate(concurrencies):
            runs.append(run_revocations(stack, seats, concurrency, seed + n, timeout))
            runs.append(run_noops(stack, seats, concurrency, timeout))
    finally:
        for node in stack.workers:  # stop first, so no worker writes keys after cleanup
            node.stop()
        cleanup_namespace(stack)
        stack.stop()
    by = {(r["kind"], r["concurrency"]): r for r in runs}
    table = []
    for c in concurrencies:
        rev, noop = by[("revoke", c)], by[("noop", c)]
        table.append({
            "concurrency": c,
            "revocations_per_s": rev["per_s_steady"],
            "revocations_per_s_wall": rev["per_s_wall"],
            "noop_per_s": noop["per_s_steady"],
            "noop_per_s_wall": noop["per_s_wall"],
            "revoke_vs_noop": round(rev["per_s_steady"] / noop["per_s_steady"], 3),
            "ms_per_revocation_cpu_equiv": round(1000 * machine["nproc"] / rev["per_s_steady"],
                                                 2),
        })
    data = {"name": NAME, "params": params, "machine": machine, "runs": runs,
            "figures": table}
    if not quiet:
        print_table(
            ["1 node, concurrency", "revocations/s", "(wall)", "no-op tasks/s", "(wall)",
             "revoke ÷ no-op", "outcomes"],
            [[str(row["concurrency"]), row["revocations_per_s"], row["revocations_per_s_wall"],
              row["noop_per_s"], row["noop_per_s_wall"], row["revoke_vs_noop"],
              by[("revoke", row["concurrency"])]["outcomes"]] for row in table],
            title="results (steady = first → last completion; wall = from submit)",
        )
    write_result(NAME, data)
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[2, 4])
    parser.add_argument("--seed", type=int, default=4)
    args = parser.parse_args()
    run(seats=args.tasks, concurrencies=tuple(args.concurrency), seed=args.seed)


if __name__ == "__main__":
    main()
