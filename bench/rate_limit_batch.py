"""Benchmark 1 (+5): a 600-seat batch at Polar's rate limit, two worker nodes x 2 processes.

Starts Redis (or reuses REDIS_URL), the sandbox with its own fixed-window limit of 20/second
(Polar's semantics: the window opens at the first request, 429 with retry-after = window),
and two ``seat-revoker worker`` nodes whose shared limiter is configured with
POLAR_RATE_LIMIT 20/second. Submits one batch of rows naming a seat and its subscription
(30 seats per subscription: the worker reads each subscription's seat list once, shared by
the batch, as the occupant guard) and measures, from just before ``Producer.submit_batch``
to the last request's ``finished_at``:

* wall time, the floor (the Polar calls needed, one DELETE per seat plus one seat-list read
  per subscription, ÷ rate) and their ratio (target ≤ 1.03x),
* 429s the sandbox answered, Polar calls per row (target ≤ 1.05), revocations per seat,
* where the time went (submit → first call, first → last call against the limiter's
  window model, last call → last terminal, spacing, peak requests in any 1 s window),
* peak RSS of every worker process (benchmark 5), sampled every 0.2 s plus VmHWM.

``--background-usage 0.05``: another integration of the organization spends 5 % of every
window as it opens (the sandbox's ``background_usage``); reports the 429s (target: the one
that reveals the interference) and the ratio to the floor and to the floor of what is left.

Run: ``.venv/bin/python -m worker.sandbox.testenv -- .venv/bin/python -m bench.rate_limit_batch``
"""

from __future__ import annotations

import argparse
import math
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
    seed_subscription_seats,
    subscription_seat_csv,
    workdir,
    write_result,
)
from config.settings import RateLimit
from worker.connections import rate_limiter, redis_client
from worker.intake.batchfile import parse_batch
from worker.jobs.breaker import Breaker
from worker.polar.auth import token_bucket
from worker.polar.pacing import spacing
from worker.sandbox.localstack import LocalStack
from worker.store.batches import batch_progress
from worker.store.models import RevocationRequest

NAME = "rate_limit_batch"
TARGET_RATIO = 1.03
TARGET_CALLS_PER_ROW = 1.05


def run(
    *,
    seats: int = 600,
    per_subscription: int = 30,
    rate: str = "20/second",
    background_usage: float = 0.0,
    nodes: int = 2,
    concurrency: int = 2,
    seed: int = 1,
    timeout: float = 300.0,
    quiet: bool = False,
    name: str = NAME,
) -> dict[str, Any]:
    params = {"seats": seats, "seats_per_subscription": per_subscription,
              "sandbox_rate_limit": rate, "polar_rate_limit": rate,
              "background_usage": background_usage, "nodes": nodes,
              "concurrency": concurrency, "seed": seed}
    machine = machine_info()
    if not quiet:
        title = "1. batch at the rate limit (seat-revoker)"
        if background_usage:
            title += f", another integration spending {background_usage:.0%} of each window"
        print_header(title, params, machine)
    stack = LocalStack(workdir(name), rate_limit=rate, sandbox_rate_limit=rate)
    stack.start()
    try:
        if background_usage:
            stack.control.configure(background_usage=background_usage)
        rows = seed_subscription_seats(stack, seats, seed, per_subscription)
        seat_ids = [seat for seat, _sub in rows]
        started = time.monotonic()
        for n in range(nodes):
            stack.add_worker(concurrency=concurrency, name=f"bench{n + 1}")
        startup_s = time.monotonic() - started
        sampler = RssSampler(lambda: {w.name: w.pid for w in stack.workers}).start()

        parse_started = time.perf_counter()
        parsed = parse_batch(subscription_seat_csv(rows), filename="bench.csv")
        parse_s = time.perf_counter() - parse_started
        producer = stack.producer
        before = stack.control.stats()
        t0 = time.time()
        result = producer.submit_batch(
            parsed.requests, name=name, lines=[row.line for row in parsed.rows]
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
        limiter_state = _limiter_state(stack, rate)
        breaker_cost = _breaker_cost(stack)
    finally:
        for node in stack.workers:  # stop first, so no worker writes keys after cleanup
            node.stop()
        cleanup_namespace(stack)
        stack.stop()

    limit = RateLimit.parse(rate)
    per_s = limit.per_second
    subscriptions = len({sub for _seat, sub in rows})
    calls_needed = seats + subscriptions
    floor_s = calls_needed / per_s
    # What another integration leaves us: the sandbox spends floor(limit x usage) per window.
    others = math.floor(limit.count * background_usage)
    floor_left_s = calls_needed / (per_s * (limit.count - others) / limit.count)
    revocations = Counter(stats["revocations_by_seat"].get(sid, 0) for sid in seat_ids)
    requests = stats["requests"] - before["requests"]
    timing = request_log_figures(log, t0)
    spacing = _spacing(rate)
    windows = math.ceil(calls_needed / spacing["budget"])
    figures: dict[str, Any] = {
        "wall_s": round(wall_s, 3),
        "calls_needed": calls_needed,
        "subscriptions": subscriptions,
        "floor_s": floor_s,
        "ratio": round(wall_s / floor_s, 4),
        "target_ratio": TARGET_RATIO,
        "floor_left_s": round(floor_left_s, 3),
        "ratio_to_floor_left": round(wall_s / floor_left_s, 4),
        "rate_limited_429": stats["rate_limited"] - before["rate_limited"],
        "polar_requests": requests,
        "requests_per_row": round(requests / seats, 4),
        "requests_per_seat": round(requests / seats, 4),  # the name naive_baseline compares
        "target_requests_per_row": TARGET_CALLS_PER_ROW,
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
        # The limiter's model: `budget` calls per span (window + allowance), so N calls
        # need ceil(N / budget) - 1 whole spans between the first and the last window.
        "limiter_span_ms": spacing["span_ms"],
        "limiter_budget": spacing["budget"],
        "model_first_to_last_window_s": round((windows - 1) * spacing["span_ms"] / 1000, 3),
        "limiter_end_state": limiter_state,
        "breaker_enabled": stack.settings.breaker_enabled,
        **breaker_cost,
        **timing,
    }
    memory = sampler.figures()
    data = {"name": name, "params": params, "machine": machine, "figures": figures,
            "memory": memory}
    if not quiet:
        print_report(data)
    write_result(name, data)
    return data


def _spacing(rate: str) -> dict[str, Any]:
    s = spacing(RateLimit.parse(rate))
    return {"budget": s.budget, "span_ms": s.span_us / 1000, "min_gap_ms": s.min_gap_us / 1000}


def _breaker_cost(stack: LocalStack, calls: int = 2000) -> dict[str, Any]:
    """What the breaker's check costs one revocation: ``Breaker.reserve`` (the per-customer
    active-seat read and the reservation script, two Redis round trips) timed ``calls``
    times against the run's Redis, after the batch (so it does not disturb it)."""
    settings = stack.settings
    client = redis_client(settings.redis_url)
    try:
        breaker = Breaker.from_settings(settings, client)
        breaker.observe("bench-customer", "subscription_id:bench", 600)
        times = []
        for n in range(calls):
            started = time.perf_counter()
            breaker.reserve(f"bench-reserve-{n}", "bench-customer")
            times.append(time.perf_counter() - started)
        times.sort()
        return {"breaker_reserve_us_p50": round(times[len(times) // 2] * 1e6, 1),
                "breaker_reserve_us_p99": round(times[int(len(times) * 0.99)] * 1e6, 1)}
    finally:
        client.close()


def _limiter_state(stack: LocalStack, rate: str) -> dict[str, Any]:
    """The fleet's share and last 429 episode, read before the keys are cleaned up."""
    settings = stack.settings
    client = redis_client(settings.redis_url)
    try:
        gate = rate_limiter(settings, client, limit=RateLimit.parse(rate))
        bucket = token_bucket(settings.access_token)
        episode = gate.episode(bucket)
        return {
            "share_now": gate.share(bucket),
            "ceiling": episode.ceiling if episode else None,
            "start_share": episode.start if episode else None,
        }
    finally:
        client.close()


def print_report(data: dict[str, Any]) -> None:
    f = data["figures"]
    rows: list[list[Any]] = [
        ["wall time, submit → last terminal (s)", f["wall_s"]],
        ["Polar calls needed (DELETE per seat + list per subscription)",
         f"{f['calls_needed']} ({f['subscriptions']} subscriptions)"],
        ["floor = calls needed ÷ rate (s)", f["floor_s"]],
        [f"ratio wall ÷ floor (target ≤ {f['target_ratio']})", f["ratio"]],
    ]
    if data["params"]["background_usage"]:
        rows += [["floor at what the other integration leaves (s)", f["floor_left_s"]],
                 ["ratio wall ÷ that floor", f["ratio_to_floor_left"]]]
    rows += [
        ["429s answered by the sandbox", f["rate_limited_429"]],
        ["  when (s after submit)", f["429_at_s"] or "-"],
        ["Polar requests (by method)", f"{f['polar_requests']} {f['calls_by_method']}"],
        [f"Polar requests per row (target ≤ {f['target_requests_per_row']})",
         f["requests_per_row"]],
        ["seats revoked exactly once", f["seats_revoked_once"]],
        ["seats revoked more than once", f["seats_revoked_more_than_once"]],
        ["seats not revoked", f["seats_not_revoked"]],
        ["outcomes", f["outcomes"]],
        ["throttle deferrals (Celery retries)", f["throttle_deferrals"]],
        ["submit_batch (s)", f["submit_s"]],
        ["submit → first call (s)", f["first_call_s"]],
        ["first → last call (s)", f["call_span_s"]],
        [f"  model: (windows - 1) x span of {f['limiter_span_ms']} ms (s)",
         f["model_first_to_last_window_s"]],
        ["admitted calls per second", f["calls_admitted_per_s"]],
        ["DELETE spacing p50 / p99 / max (ms)",
         f"{f['gap_p50_ms']} / {f['gap_p99_ms']} / {f['gap_max_ms']}"],
        ["peak requests (admitted) in any 1 s window",
         f"{f['peak_requests_in_1s']} ({f['peak_admitted_in_1s']})"],
        ["last call → last terminal (s)", round(f["wall_s"] - f["last_call_s"], 3)
         if f["last_call_s"] is not None else None],
        ["limiter at the end: share / ceiling", f"{f['limiter_end_state']['share_now']} / "
         f"{f['limiter_end_state']['ceiling']}"],
        ["worker startup, not in wall time (s)", f["worker_startup_s"]],
        ["circuit breaker on; its check per revocation p50 / p99 (µs)",
         f"{f['breaker_enabled']}; {f['breaker_reserve_us_p50']} / "
         f"{f['breaker_reserve_us_p99']}"],
    ]
    print_table(["figure", "value"], rows, title="results")
    m = data["memory"]
    print_table(
        ["worker process", "peak VmRSS sampled (MiB)", "VmHWM (MiB)"],
        [[label, v["peak_rss_mib"], v["vmhwm_mib"]] for label, v in m["per_process"].items()],
        title=f"5. memory during the batch ({m['samples']} samples every {m['interval_s']} s)",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seats", type=int, default=600)
    parser.add_argument("--per-subscription", type=int, default=30)
    parser.add_argument("--rate", default="20/second")
    parser.add_argument("--background-usage", type=float, default=0.0,
                        help="share of each window another integration spends (0..1)")
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    run(seats=args.seats, per_subscription=args.per_subscription, rate=args.rate,
        background_usage=args.background_usage, nodes=args.nodes,
        concurrency=args.concurrency, seed=args.seed,
        name=NAME if not args.background_usage else f"{NAME}_background")


if __name__ == "__main__":
    main()
