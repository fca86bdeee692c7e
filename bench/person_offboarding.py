"""Benchmark: offboarding 200 people of one customer, named by person only, at the sandbox's
rate limit.

One customer with ``--subscriptions`` subscriptions and one order; each of the 200 people
holds a seat in every one of them, and 20 more people who stay hold seats too. One batch of
person rows (email + the customer's external id, no seat, no subscription) goes to two
worker nodes whose shared limiter runs at the sandbox's own limit. Measured from just before
``Producer.submit_batch`` to the last person request's ``finished_at``:

* Polar calls per seat revoked (all of them: discovery listings, seat lists, the
  per-seat guards, DELETEs, the final verification reads),
* wall time ÷ floor, the floor being the calls strictly needed (one DELETE per seat plus
  one seat-list read per subscription/order) ÷ rate, and wall ÷ (calls made ÷ rate),
* that every seat of the leavers was revoked exactly once and nobody else's.

Run: ``.venv/bin/python -m worker.sandbox.testenv -- .venv/bin/python -m bench.person_offboarding``
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections import Counter
from typing import Any

from sqlalchemy import func, select

from bench.common import (
    as_utc,
    cleanup_namespace,
    machine_info,
    print_header,
    print_table,
    request_log_figures,
    workdir,
    write_result,
)
from config.settings import RateLimit
from worker.intake.batchfile import parse_batch
from worker.sandbox.localstack import LocalStack
from worker.store.models import RevocationRequest

NAME = "person_offboarding"


def run(*, people: int = 200, stay: int = 20, subscriptions: int = 2, rate: str = "20/second",
        nodes: int = 2, concurrency: int = 2, timeout: float = 900.0) -> dict[str, Any]:
    params = {"people": people, "people_staying": stay, "subscriptions": subscriptions,
              "orders": 1, "sandbox_rate_limit": rate, "polar_rate_limit": rate,
              "nodes": nodes, "concurrency": concurrency}
    machine = machine_info()
    print_header("person offboarding: 200 people of one customer, no seat ids", params,
                 machine)
    stack = LocalStack(workdir(NAME), rate_limit=rate, sandbox_rate_limit=rate)
    stack.start()
    try:
        tag = uuid.uuid4().hex[:6]
        customer = stack.control.create_customer(f"billing.{tag}@bench.test",
                                                 external_id=f"CUST-{tag}")
        containers = ([{"subscription_id": str(uuid.uuid4())} for _ in range(subscriptions)]
                      + [{"order_id": str(uuid.uuid4())}])
        leavers = [f"leaver{i}.{tag}@bench.test" for i in range(people)]
        stayers = [f"stays{i}.{tag}@bench.test" for i in range(stay)]
        seats = stack.control.create_seats(
            [{**c, "email": e} for c in containers for e in leavers + stayers],
            owner_customer_id=customer["id"])
        leaving = {s["id"] for s in seats if s["email"] in set(leavers)}
        for n in range(nodes):
            stack.add_worker(concurrency=concurrency, name=f"bench{n + 1}")
        text = "email,customer_external_id\n" + "".join(
            f"{e},{customer['external_id']}\n" for e in leavers)
        parsed = parse_batch(text.encode(), filename="people.csv", requested_by="bench")
        producer = stack.producer
        before = stack.control.stats()
        t0 = time.time()
        result = producer.submit_batch(parsed.requests, name=NAME)
        records = stack.wait_terminal(result.request_ids, timeout=timeout)
        with producer.store.session() as session:
            last_finished = session.execute(
                select(func.max(RevocationRequest.finished_at))
                .where(RevocationRequest.batch_id == result.batch_id)).scalar_one()
        assert last_finished is not None, "wait_terminal returned: every row has finished"
        wall_s = as_utc(last_finished).timestamp() - t0
        stats = stack.control.stats()
        log = stack.control.log()
    finally:
        for node in stack.workers:
            node.stop()
        cleanup_namespace(stack)
        stack.stop()

    per_s = RateLimit.parse(rate).per_second
    revoked = Counter(stats["revocations_by_seat"].get(sid, 0) for sid in leaving)
    others_revoked = sum(1 for sid, n in stats["revocations_by_seat"].items()
                         if n and sid not in leaving)
    requests = stats["requests"] - before["requests"]
    needed = len(leaving) + len(containers)
    floor_s = needed / per_s
    timing = request_log_figures(log, t0)
    figures = {
        "wall_s": round(wall_s, 3),
        "seats_to_revoke": len(leaving),
        "polar_requests": requests,
        "calls_by_method": timing["calls_by_method"],
        "polar_calls_per_seat": round(requests / len(leaving), 3),
        "floor_s": round(floor_s, 3),
        "ratio_wall_to_floor": round(wall_s / floor_s, 3),
        "ratio_wall_to_calls_made": round(wall_s / (requests / per_s), 3),
        "rate_limited_429": stats["rate_limited"] - before["rate_limited"],
        "person_outcomes": dict(Counter(r.state for r in records)),
        "seats_revoked_once": revoked.get(1, 0),
        "seats_revoked_more_than_once": sum(n for k, n in revoked.items() if k > 1),
        "seats_not_revoked": revoked.get(0, 0),
        "other_peoples_seats_revoked": others_revoked,
    }
    data = {"name": NAME, "params": params, "machine": machine, "figures": figures}
    print_table(["figure", "value"], [[k, v] for k, v in figures.items()], title="results")
    write_result(NAME, data)
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=200)
    parser.add_argument("--subscriptions", type=int, default=2)
    parser.add_argument("--rate", default="20/second")
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=2)
    args = parser.parse_args()
    run(people=args.people, subscriptions=args.subscriptions, rate=args.rate,
        nodes=args.nodes, concurrency=args.concurrency)


if __name__ == "__main__":
    main()
