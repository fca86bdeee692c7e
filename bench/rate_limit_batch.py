"""Benchmark 1 (+5): a 600-seat batch at Polar's rate limit, two worker nodes x 2 processes.

Starts Redis (or reuses REDIS_URL), the sandbox with its own limit of 20/second, and two
``seat-revoker worker`` nodes whose shared limiter is configured with POLAR_RATE_LIMIT
20/second. Submits one batch of seat-id rows and measures, from just before
``Producer.submit_batch`` to the last request's ``finished_at``:

* wall time, the floor (seats ÷ rate) and their ratio (target ≤ 1.05x),
* 429s the sandbox answered, Polar requests per seat, revocations per seat (exactly one),
* where the time went (submit → first DELETE, DELETE span, last DELETE → last terminal,
  spacing of admitted DELETEs, peak requests in any 1 s window),
* peak RSS of every worker process (benchmark 5), sampled every 0.2 s plus VmHWM.

Run: ``.venv/bin/python -m worker.testenv -- .venv/bin/python -m bench.rate_limit_batch``
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from typing import Any

from sqlalchemy import func, select

from bench.common import (
    RssSampler,
    as_utc,
    cleanup_namespace,
    machine_info,
    print_header,
    print_table,
    request_log_figures,
    seat_id_csv,
    seed_claimed_seats,
    workdir,
    write_result,
)
from worker.batches import batch_progress
from worker.batchfile import parse_batch
from worker.localstack import LocalStack
from worker.models import RevocationRequest

NAME = "rate_limit_batch"


def rate_per_second(rate: str) -> float:
    count, _, unit = rate.partition("/")
    return float(count) / {"second": 1.0, "minute": 60.0}[unit]


def run(
    *,
    seats: int = 600,
    rate: str = "20/second",
    nodes: int = 2,
    concurrency: int = 2,
    seed: int = 1,
    timeout: float = 300.0,
    quiet: bool = False,
) -> dict[str, Any]:
    params = {"seats": seats, "sandbox_rate_limit": rate, "polar_rate_limit": rate,
              "nodes": nodes, "concurrency": concurrency, "seed": seed}
    machine = machine_info()
    if not quiet:
        print_header("1. batch at the rate limit (seat-revoker)", params, machine)
    stack = LocalStack(workdir(NAME), rate_limit=rate, sandbox_rate_limit=rate)
    stack.start()
    try:
        seat_ids = seed_claimed_seats(stack, seats, seed)
        started = time.monotonic()
        for n in range(nodes):
            stack.add_worker(concurrency=concurrency, name=f"bench{n + 1}")
        startup_s = time.monotonic() - started
        sampler = RssSampler(lambda: {w.name: w.pid for w in stack.workers}).start()

        parse_started = time.perf_counter()
        parsed = parse_batch(seat_id_csv(seat_ids), filename="bench.csv")
        parse_s = time.perf_counter() - parse_started
        producer = stack.producer
        before = stack.control.stats()
        t0 = time.time()
        result = producer.submit_batch(
            parsed.requests, name=NAME, lines=[row.line for row in parsed.rows]
        )
        submit_s = time.time() - t0
        deadline = time.monotonic() + timeout
        progress = batch_progress(producer.store, result.batch_id)
        while progress is None or not progress.done:
            if time.monotonic() > deadline:
                raise TimeoutError(f"batch not done after {timeout}s: {progress}")
            time.sleep(0.2)
            progress = batch_progress(producer.store, result.batch_id)
        seen_done = time.time()
        sampler.stop()

        with producer.store.session() as session:
            last_finished, attempts = session.execute(
                select(func.max(RevocationRequest.finished_at),
                       func.sum(RevocationRequest.attempts))
                .where(RevocationRequest.batch_id == result.batch_id)
            ).one()
        assert last_finished is not None
        wall_s = as_utc(last_finished).timestamp() - t0
        stats = stack.control.stats()
        log = stack.control.log()
        logs = stack.logs()
    finally:
        for node in stack.workers:  # stop first, so no worker writes keys after cleanup
            node.stop()
        cleanup_namespace(stack)
        stack.stop()

    per_s = rate_per_second(rate)
    floor_s = seats / per_s
    revocations = Counter(stats["revocations_by_seat"].get(sid, 0) for sid in seat_ids)
    requests = stats["requests"] - before["requests"]
    timing = request_log_figures(log, t0)
    figures: dict[str, Any] = {
        "wall_s": round(wall_s, 3),
        "floor_s": floor_s,
        "ratio": round(wall_s / floor_s, 4),
        "target_ratio": 1.05,
        "rate_limited_429": stats["rate_limited"] - before["rate_limited"],
        "polar_requests": requests,
        "requests_per_seat": round(requests / seats, 4),
        "seats_revoked_once": revocations.get(1, 0),
        "seats_revoked_more_than_once": sum(n for k, n in revocations.items() if k > 1),
        "seats_not_revoked": revocations.get(0, 0),
        "outcomes": progress.counts,
        "attempts_total": int(attempts or 0),
        "throttle_deferrals": logs.count('"ratelimit.deferred"'),
        "parse_s": round(parse_s, 4),
        "submit_s": round(submit_s, 4),
        "poll_seen_done_s": round(seen_done - t0, 3),
        "worker_startup_s": round(startup_s, 3),
        "ideal_limiter_span_s": round((seats - 1) / (per_s * 0.97), 3),
        **timing,
    }
    memory = sampler.figures()
    data = {"name": NAME, "params": params, "machine": machine, "figures": figures,
            "memory": memory}
    if not quiet:
        print_report(data)
    write_result(NAME, data)
    return data


def print_report(data: dict[str, Any]) -> None:
    f = data["figures"]
    print_table(
        ["figure", "value"],
        [
            ["wall time, submit → last terminal (s)", f["wall_s"]],
            ["floor = seats ÷ rate (s)", f["floor_s"]],
            ["ratio wall ÷ floor (target ≤ 1.05)", f["ratio"]],
            ["429s answered by the sandbox", f["rate_limited_429"]],
            ["  when (s after submit)", f["429_at_s"] or "-"],
            ["Polar requests", f["polar_requests"]],
            ["Polar requests per seat", f["requests_per_seat"]],
            ["seats revoked exactly once", f["seats_revoked_once"]],
            ["seats revoked more than once", f["seats_revoked_more_than_once"]],
            ["seats not revoked", f["seats_not_revoked"]],
            ["outcomes", f["outcomes"]],
            ["throttle deferrals (Celery retries)", f["throttle_deferrals"]],
            ["submit_batch (s)", f["submit_s"]],
            ["submit → first DELETE (s)", f["first_delete_s"]],
            ["first → last DELETE (s)", f["delete_span_s"]],
            ["  ideal span at 97% of the limit (s)", f["ideal_limiter_span_s"]],
            ["admitted DELETEs per second", f["admitted_per_s"]],
            ["DELETE spacing p50 / p99 / max (ms)",
             f"{f['gap_p50_ms']} / {f['gap_p99_ms']} / {f['gap_max_ms']}"],
            ["peak requests in any 1 s window", f["peak_requests_in_1s"]],
            ["last DELETE → last terminal (s)", round(f["wall_s"] - f["last_delete_s"], 3)
             if f["last_delete_s"] is not None else None],
            ["worker startup, not in wall time (s)", f["worker_startup_s"]],
        ],
        title="results",
    )
    m = data["memory"]
    print_table(
        ["worker process", "peak VmRSS sampled (MiB)", "VmHWM (MiB)"],
        [[label, v["peak_rss_mib"], v["vmhwm_mib"]] for label, v in m["per_process"].items()],
        title=f"5. memory during the batch ({m['samples']} samples every {m['interval_s']} s)",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seats", type=int, default=600)
    parser.add_argument("--rate", default="20/second")
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    run(seats=args.seats, rate=args.rate, nodes=args.nodes, concurrency=args.concurrency,
        seed=args.seed)


if __name__ == "__main__":
    main()
