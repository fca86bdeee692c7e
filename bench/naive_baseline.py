"""Benchmark 2: the naive Celery baseline on the same sandbox settings as benchmark 1.

Same 600 seats (same seed), same sandbox limit (20/second), 2 nodes x 2 processes, but the
task is ``bench.naive_app`` (plain httpx DELETE, ``autoretry_for`` + ``retry_backoff``,
per-node ``rate_limit="10/s"``, Celery defaults otherwise). Measures wall time from the
first publish to the last task reaching SUCCESS/FAILURE (the result backend's
``date_done``), the ratio to the floor, 429s, DELETEs sent, seats revoked more than once,
seats left unrevoked, and prints it next to benchmark 1 when its results are at hand.

Run: ``.venv/bin/python -m worker.sandbox.testenv -- .venv/bin/python -m bench.naive_baseline``
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from collections import Counter
from datetime import datetime
from typing import Any

from celery import Celery

from bench.common import (
    RESULTS_DIR,
    CeleryNode,
    RssSampler,
    as_utc,
    delete_prefix,
    machine_info,
    print_header,
    print_table,
    request_log_figures,
    seed_claimed_seats,
    workdir,
    write_result,
)
from bench.naive_app import TASK_NAME
from config.settings import RateLimit
from worker.sandbox.app import DEFAULT_SANDBOX_TOKEN
from worker.sandbox.localstack import LocalStack

NAME = "naive_baseline"


def run(
    *,
    seats: int = 600,
    rate: str = "20/second",
    nodes: int = 2,
    concurrency: int = 2,
    max_retries: int = 3,
    http: str = "client",
    node_rate: str | None = None,
    seed: int = 1,
    timeout: float = 480.0,
    quiet: bool = False,
    compare: bool = True,
) -> dict[str, Any]:
    # Celery's rate_limit is per node: the naive split of Polar's limit across the nodes.
    default_node_rate = f"{RateLimit.parse(rate).per_second / nodes:g}/s"
    node_rate = node_rate or default_node_rate
    params = {"seats": seats, "sandbox_rate_limit": rate, "nodes": nodes,
              "concurrency": concurrency, "celery_rate_limit_per_node": node_rate,
              "max_retries": max_retries, "retry_backoff": True, "http": http, "seed": seed}
    machine = machine_info()
    if not quiet:
        print_header("2. naive Celery baseline (httpx + autoretry_for + rate_limit)",
                     params, machine)
    stack = LocalStack(workdir(NAME), sandbox_rate_limit=rate)
    stack.start()
    assert stack.sandbox is not None and stack.redis_url is not None
    queue = f"bench-naive-{uuid.uuid4().hex[:10]}"
    env = {"REDIS_URL": stack.redis_url, "NAIVE_QUEUE": queue,
           "NAIVE_POLAR_URL": stack.sandbox.url, "NAIVE_POLAR_TOKEN": DEFAULT_SANDBOX_TOKEN,
           "NAIVE_RATE_LIMIT": node_rate, "NAIVE_MAX_RETRIES": str(max_retries),
           "NAIVE_HTTP": http}
    client = Celery("naive_client", broker=stack.redis_url, backend=stack.redis_url)
    client.conf.update(
        task_default_queue=queue,
        broker_transport_options={"global_keyprefix": f"{queue}:"},
        result_backend_transport_options={"global_keyprefix": f"{queue}:"},
    )
    workers: list[CeleryNode] = []
    try:
        seat_ids = seed_claimed_seats(stack, seats, seed)
        started = time.monotonic()
        for n in range(nodes):
            workers.append(CeleryNode(
                app="bench.naive_app", queue=queue, env=env, concurrency=concurrency,
                name=f"naive{n + 1}", log_path=stack.workdir / f"naive{n + 1}.log",
            ).start())
        startup_s = time.monotonic() - started
        sampler = RssSampler(lambda: {w.name: w.pid for w in workers}).start()

        before = stack.control.stats()
        t0 = time.time()
        task_ids = [client.send_task(TASK_NAME, args=[sid], queue=queue).id for sid in seat_ids]
        submit_s = time.time() - t0
        backend = client.backend
        keys = [backend.get_key_for_task(tid) for tid in task_ids]
        deadline = time.monotonic() + timeout
        while True:
            metas = [json.loads(raw) if raw else None
                     for raw in backend.client.mget(keys)]
            states = Counter(m["status"] if m else "PENDING" for m in metas)
            if states.get("SUCCESS", 0) + states.get("FAILURE", 0) == seats:
                break
            if time.monotonic() > deadline:  # report what finished, marked unfinished
                print(f"naive batch not done after {timeout}s: {dict(states)}", flush=True)
                break
            time.sleep(0.2)
        seen_done = time.time()
        sampler.stop()
        finished = states.get("SUCCESS", 0) + states.get("FAILURE", 0) == seats
        last_done = max((as_utc(datetime.fromisoformat(m["date_done"])).timestamp()
                         for m in metas if m and m.get("date_done")), default=seen_done)
        last_done = last_done if finished else seen_done
        stats = stack.control.stats()
        log = stack.control.log()
    finally:
        for worker in workers:
            worker.stop()
        delete_prefix(client.backend.client, f"{queue}:")
        client.close()
        stack.stop()

    floor_s = seats / RateLimit.parse(rate).per_second
    wall_s = last_done - t0
    revocations = Counter(stats["revocations_by_seat"].get(sid, 0) for sid in seat_ids)
    admitted = Counter(stats["deletes_by_seat"].get(sid, 0) for sid in seat_ids)
    requests = stats["requests"] - before["requests"]
    figures: dict[str, Any] = {
        "finished": finished,  # False: stopped at the timeout; wall_s is then a lower bound
        "wall_s": round(wall_s, 3),
        "floor_s": floor_s,
        "ratio": round(wall_s / floor_s, 4),
        "rate_limited_429": stats["rate_limited"] - before["rate_limited"],
        "polar_requests": requests,
        "requests_per_seat": round(requests / seats, 4),
        "seats_revoked_once": revocations.get(1, 0),
        "seats_revoked_more_than_once": sum(n for k, n in revocations.items() if k > 1),
        "seats_deleted_more_than_once": sum(n for k, n in admitted.items() if k > 1),
        "seats_not_revoked": revocations.get(0, 0),
        "tasks": dict(states),
        "submit_s": round(submit_s, 4),
        "poll_seen_done_s": round(seen_done - t0, 3),
        "worker_startup_s": round(startup_s, 3),
        **request_log_figures(log, t0),
    }
    data = {"name": NAME, "params": params, "machine": machine, "figures": figures,
            "memory": sampler.figures()}
    if not quiet:
        print_report(data)
        reference = RESULTS_DIR / "rate_limit_batch.json"
        if compare and reference.exists():
            print_comparison(json.loads(reference.read_text()), data,
                             note=f"(benchmark 1 from {reference.name})")
    variant = NAME if http == "client" else f"{NAME}_{http}"
    write_result(variant if node_rate == default_node_rate else f"{variant}_custom", data)
    return data


def print_report(data: dict[str, Any]) -> None:
    f = data["figures"]
    print_table(
        ["figure", "value"],
        [
            ["wall time, first publish → last task done (s)",
             f["wall_s"] if f["finished"] else f">= {f['wall_s']} (unfinished)"],
            ["floor = seats ÷ rate (s)", f["floor_s"]],
            ["ratio wall ÷ floor", f["ratio"]],
            ["429s answered by the sandbox", f["rate_limited_429"]],
            ["DELETEs sent (incl. 429ed)", f["deletes_sent"]],
            ["Polar requests per seat", f["requests_per_seat"]],
            ["seats revoked exactly once", f["seats_revoked_once"]],
            ["seats revoked more than once", f["seats_revoked_more_than_once"]],
            ["seats DELETEd (admitted) more than once", f["seats_deleted_more_than_once"]],
            ["seats left unrevoked (task gave up)", f["seats_not_revoked"]],
            ["task states", f["tasks"]],
            ["peak requests in any 1 s window", f["peak_requests_in_1s"]],
            ["submit → first DELETE (s)", f["first_delete_s"]],
            ["admitted DELETEs per second", f["admitted_per_s"]],
        ],
        title="results",
    )


def print_comparison(ours: dict[str, Any], naive: dict[str, Any], note: str = "") -> None:
    a, b = ours["figures"], naive["figures"]
    rows = [
        ["wall time (s)", a["wall_s"], b["wall_s"]],
        ["floor (s)", a["floor_s"], b["floor_s"]],
        ["ratio to floor", a["ratio"], b["ratio"]],
        ["429s", a["rate_limited_429"], b["rate_limited_429"]],
        ["DELETEs sent", a["deletes_sent"], b["deletes_sent"]],
        ["Polar requests per seat", a["requests_per_seat"], b["requests_per_seat"]],
        ["seats revoked exactly once", a["seats_revoked_once"], b["seats_revoked_once"]],
        ["seats revoked more than once", a["seats_revoked_more_than_once"],
         b["seats_revoked_more_than_once"]],
        ["seats left unrevoked", a["seats_not_revoked"], b["seats_not_revoked"]],
        ["peak requests in any 1 s", a["peak_requests_in_1s"], b["peak_requests_in_1s"]],
        ["max worker RSS (MiB)", ours["memory"]["max_peak_rss_mib"],
         naive["memory"]["max_peak_rss_mib"]],
    ]
    print_table(["600 seats @ 20/s, 2 nodes x 2", "seat-revoker", "naive Celery"], rows,
                title=f"side by side {note}".rstrip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seats", type=int, default=600)
    parser.add_argument("--rate", default="20/second")
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--max-retries", type=int, default=3)
    parser.add_argument("--http", choices=("client", "per-call"), default="client",
                        help="reuse one httpx.Client per process, or httpx.delete per call")
    parser.add_argument("--node-rate", default=None,
                        help="Celery rate_limit per node (default: the sandbox rate ÷ nodes)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    run(seats=args.seats, rate=args.rate, nodes=args.nodes, concurrency=args.concurrency,
        max_retries=args.max_retries, http=args.http, node_rate=args.node_rate,
        seed=args.seed)


if __name__ == "__main__":
    main()
