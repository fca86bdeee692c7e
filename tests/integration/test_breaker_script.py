"""The breaker's fleet-wide reservation (``worker.jobs.breaker``) on a real Redis: the
script decides as ``worker.decisions.breaker.judge`` does, and racing processes never
revoke one seat over the limit."""

from __future__ import annotations

import multiprocessing
import uuid

import pytest
from redis import Redis

from tests.unit.decisions.test_breaker import CASES
from worker.decisions.breaker import ORG_SCOPE, Limits, Verdict, customer_scope
from worker.jobs.breaker import Breaker

pytestmark = pytest.mark.integration


def breaker(redis_url: str, prefix: str, limits: Limits, window: float = 3600.0
            ) -> Breaker:
    return Breaker(Redis.from_url(redis_url), prefix, limits, window_seconds=window)


@pytest.mark.parametrize(("cused", "oused", "climit", "olimit", "copen", "oopen", "forced",
                          "verdict", "scope"), CASES)
def test_the_script_decides_as_judge(
    redis_url: str, cused: int, oused: int, climit: int | None, olimit: int, copen: bool,
    oopen: bool, forced: bool, verdict: Verdict, scope: str | None,
) -> None:
    prefix = f"t-brk-{uuid.uuid4().hex[:8]}"
    b = breaker(redis_url, prefix, Limits(customer_max=climit or 0, customer_share=0.0,
                                          org_max=olimit))
    customer = "cus_1" if climit is not None else None
    now = b.clock()
    for i in range(cused):
        b.redis.zadd(f"{prefix}:win:{customer_scope('cus_1')}", {f"c{i}": now})
    for i in range(oused):
        b.redis.zadd(f"{prefix}:win:{ORG_SCOPE}", {f"o{i}": now})
    if copen:
        b.redis.set(f"{prefix}:open:{customer_scope('cus_1')}", "{}")
    if oopen:
        b.redis.set(f"{prefix}:open:{ORG_SCOPE}", "{}")
    check = b.reserve("req-1", customer, forced=forced)
    assert check.verdict is verdict
    if verdict is Verdict.HOLD:
        expected = customer_scope("cus_1") if scope != ORG_SCOPE else ORG_SCOPE
        assert check.scope == expected
        assert b.is_open(expected)
    else:
        assert b.redis.zscore(f"{prefix}:win:{ORG_SCOPE}", "req-1") is not None
    b.redis.delete(*b.redis.keys(f"{prefix}:*") or ["-"])


def test_a_reserved_request_is_counted_once_and_old_ones_leave_the_window(redis_url: str
                                                                         ) -> None:
    prefix = f"t-brk-{uuid.uuid4().hex[:8]}"
    clock = [1000.0]
    b = Breaker(Redis.from_url(redis_url), prefix, Limits(customer_max=2, customer_share=0),
                window_seconds=60, clock=lambda: clock[0])
    assert b.reserve("a", "cus").verdict is Verdict.GO
    assert b.reserve("a", "cus").verdict is Verdict.GO  # a retry of the same request
    assert b.reserve("b", "cus").verdict is Verdict.GO
    held = b.reserve("c", "cus")
    assert held.verdict is Verdict.HOLD and held.tripped and held.limit == 2
    assert b.reserve("d", "cus").tripped is False  # already open: held, not tripped again
    assert [o.scope for o in b.open_breakers()] == [customer_scope("cus")]
    assert b.close(customer_scope("cus"))
    clock[0] += 61  # the window rolled on: a and b are out of it
    assert b.reserve("c", "cus").verdict is Verdict.GO
    assert b.used(customer_scope("cus")) == 1
    b.redis.delete(*b.redis.keys(f"{prefix}:*"))


def test_the_share_is_measured_against_the_most_seats_seen_this_window(redis_url: str
                                                                      ) -> None:
    prefix = f"t-brk-{uuid.uuid4().hex[:8]}"
    b = breaker(redis_url, prefix, Limits(customer_max=5, customer_share=0.2))
    b.observe("cus", "subscription_id:s1", 40)
    b.observe("cus", "subscription_id:s1", 35)  # after 5 revocations: the 40 stays
    b.observe("cus", "order_id:o1", 10)
    assert b.active_seats("cus") == 50
    assert b.limits.customer_limit(b.active_seats("cus")) == 10
    b.redis.delete(*b.redis.keys(f"{prefix}:*"))


def _race(redis_url: str, prefix: str, worker: int, attempts: int,
          results: multiprocessing.Queue[int]) -> None:
    b = breaker(redis_url, prefix, Limits(customer_max=7, customer_share=0, org_max=11))
    went = 0
    for i in range(attempts):
        customer = "cus-a" if i % 2 else "cus-b"
        if b.reserve(f"w{worker}-{i}", customer).verdict is Verdict.GO:
            went += 1
    results.put(went)


def test_racing_processes_never_reserve_one_over_the_limit(redis_url: str) -> None:
    prefix = f"t-brk-{uuid.uuid4().hex[:8]}"
    ctx = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue[int] = ctx.Queue()
    procs = [ctx.Process(target=_race, args=(redis_url, prefix, n, 40, results))
             for n in range(6)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(60)
    went = sum(results.get(timeout=5) for _ in procs)
    redis = Redis.from_url(redis_url)
    # 240 attempts over two customers (7 each) and an organization limit of 11.
    assert went == 11
    assert redis.zcard(f"{prefix}:win:{ORG_SCOPE}") == 11
    assert redis.zcard(f"{prefix}:win:{customer_scope('cus-a')}") <= 7
    assert redis.zcard(f"{prefix}:win:{customer_scope('cus-b')}") <= 7
    redis.delete(*redis.keys(f"{prefix}:*"))
