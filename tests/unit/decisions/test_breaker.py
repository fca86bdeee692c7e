"""The circuit breaker's arithmetic (``worker.decisions.breaker``), as a table."""

from __future__ import annotations

import pytest

from worker.decisions.breaker import (
    ORG_SCOPE,
    Limits,
    Verdict,
    blast_radius,
    customer_scope,
    judge,
    scope_customer,
)

C = customer_scope("cus_1")


@pytest.mark.parametrize(("active", "limit"), [
    pytest.param(0, 5, id="no seats known: the floor"),
    pytest.param(10, 5, id="20 % of 10 is 2: the floor of 5 wins"),
    pytest.param(25, 5, id="20 % of 25 is 5"),
    pytest.param(40, 8, id="20 % of 40 is 8 (30 of 40 deactivated: 8 go, 22 held)"),
    pytest.param(41, 8, id="rounded down: never a seat over the share"),
    pytest.param(1000, 200, id="a large customer: 200"),
])
def test_customer_limit_is_the_floor_or_the_share_whichever_is_larger(active: int,
                                                                       limit: int) -> None:
    assert Limits(customer_max=5, customer_share=0.2).customer_limit(active) == limit


CASES = [
    # customer used, org used, customer limit, org limit, c open, o open, forced → verdict, scope
    pytest.param(0, 0, 5, 200, False, False, False, Verdict.GO, None, id="quiet: goes"),
    pytest.param(4, 10, 5, 200, False, False, False, Verdict.GO, None, id="the 5th of 5 goes"),
    pytest.param(5, 10, 5, 200, False, False, False, Verdict.HOLD, C, id="the 6th of 5 held"),
    pytest.param(0, 199, 5, 200, False, False, False, Verdict.GO, None, id="200th of org"),
    pytest.param(0, 200, 5, 200, False, False, False, Verdict.HOLD, ORG_SCOPE,
                 id="201st of the organization held"),
    pytest.param(5, 200, 5, 200, False, False, False, Verdict.HOLD, C,
                 id="both over: the customer's scope is named first"),
    pytest.param(0, 0, 5, 200, True, False, False, Verdict.HOLD, C,
                 id="an open customer breaker holds even under the limit"),
    pytest.param(0, 0, 5, 200, False, True, False, Verdict.HOLD, ORG_SCOPE,
                 id="an open organization breaker holds every customer"),
    pytest.param(9, 300, 5, 200, True, True, True, Verdict.GO, None,
                 id="released by an operator: goes whatever the counts"),
    pytest.param(3, 0, None, 200, True, False, False, Verdict.GO, None,
                 id="customer unknown (unguarded seat id): only the org limit applies"),
    pytest.param(0, 200, None, 200, False, False, False, Verdict.HOLD, ORG_SCOPE,
                 id="customer unknown and the org full: held"),
]


@pytest.mark.parametrize(("cused", "oused", "climit", "olimit", "copen", "oopen", "forced",
                          "verdict", "scope"), CASES)
def test_judge(cused: int, oused: int, climit: int | None, olimit: int, copen: bool,
               oopen: bool, forced: bool, verdict: Verdict, scope: str | None) -> None:
    check = judge(customer_used=cused, org_used=oused, customer_limit=climit,
                  org_limit=olimit, customer_scope_name=C, customer_open=copen,
                  org_open=oopen, forced=forced)
    assert check.verdict is verdict
    assert check.scope == scope
    if verdict is Verdict.HOLD:
        assert check.tripped is not (copen or oopen)
        assert str(check.limit) in check.describe()


def test_scopes_name_their_customer() -> None:
    assert scope_customer(C) == "cus_1"
    assert scope_customer(ORG_SCOPE) is None


@pytest.mark.parametrize(("would", "active", "trips", "share"), [
    pytest.param(3, 40, False, 0.075, id="3 of 40 fits the limit of 8"),
    pytest.param(8, 40, False, 0.2, id="8 of 40: exactly the limit"),
    pytest.param(9, 40, True, 0.225, id="9 of 40 trips"),
    pytest.param(40, 40, True, 1.0, id="the whole customer trips"),
    pytest.param(5, 0, False, 1.0, id="no active seats known: the floor decides"),
])
def test_blast_radius(would: int, active: int, trips: bool, share: float) -> None:
    radius = blast_radius("cus_1", would, active, Limits())
    assert radius.trips is trips
    assert radius.share == pytest.approx(share)
