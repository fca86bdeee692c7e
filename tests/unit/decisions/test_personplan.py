"""plan_person: the latest read and the children's states → the next step (table tests)."""

from __future__ import annotations

import pytest

from worker.decisions.outcomes import State
from worker.decisions.personplan import Finding, PersonPlan, plan_person

A = Finding("holds", "subscription", "sub-1", "seat-a")
B = Finding("holds", "order", "ord-1", "seat-b")
R = Finding("review", "subscription", "sub-2", "seat-r", "cannot tell")

CASES = [
    # name, findings, children, rounds, expected outcome, expected created seats, verified
    ("nothing found", [], {}, 1, State.NO_ACTIVE_SEAT, [], True),
    ("two seats found: create both", [A, B], {}, 1, None, ["seat-a", "seat-b"], None),
    ("children running: wait", [], {"seat-a": State.RUNNING}, 1, None, [], None),
    ("all revoked, read shows none", [], {"seat-a": State.REVOKED,
                                          "seat-b": State.ALREADY_REVOKED}, 2,
     State.REVOKED, [], True),
    ("only already revoked", [], {"seat-a": State.ALREADY_REVOKED}, 2,
     State.ALREADY_REVOKED, [], True),
    ("children found it gone", [], {"seat-a": State.OCCUPANT_MISMATCH}, 2,
     State.NO_ACTIVE_SEAT, [], True),
    ("a new seat appeared: another round", [B], {"seat-a": State.REVOKED}, 2, None,
     ["seat-b"], None),
    ("seats keep appearing", [B], {"seat-a": State.REVOKED}, 4, State.NEEDS_REVIEW, [], False),
    ("child failed", [], {"seat-a": State.FAILED}, 2, State.FAILED, [], None),
    ("child needs review", [], {"seat-a": State.NEEDS_REVIEW}, 2, State.NEEDS_REVIEW, [],
     None),
    ("unclear seat list", [R], {}, 1, State.NEEDS_REVIEW, [], None),
    ("unclear plus a seat: revoke it first", [A, R], {}, 1, None, ["seat-a"], None),
    ("still held after its child ended", [A], {"seat-a": State.OCCUPANT_MISMATCH}, 2,
     State.NEEDS_REVIEW, [], False),
]


@pytest.mark.parametrize(("name", "findings", "children", "rounds", "outcome", "created",
                          "verified"), CASES, ids=[c[0] for c in CASES])
def test_plan_person(name: str, findings: list[Finding], children: dict[str, State],
                     rounds: int, outcome: State | None, created: list[str],
                     verified: bool | None) -> None:
    plan = plan_person(findings, children, rounds=rounds)
    assert isinstance(plan, PersonPlan)
    assert plan.outcome == outcome, plan.why
    assert [f.seat_id for f in plan.create] == created
    assert plan.verified is verified
    assert plan.why


def test_success_is_never_reported_while_a_seat_is_held() -> None:
    for state in State:
        if not state.is_terminal:
            continue
        plan = plan_person([A], {"seat-a": state}, rounds=2)
        assert plan.outcome not in (State.REVOKED, State.ALREADY_REVOKED, State.NO_ACTIVE_SEAT)


@pytest.mark.parametrize(("findings", "children", "rejected", "outcome"), [
    pytest.param([A], {"seat-a": State.CANCELLED}, {"seat-a"}, State.CANCELLED,
                 id="its only seat rejected at the breaker: cancelled, as decided"),
    pytest.param([A], {"seat-a": State.CANCELLED, "seat-b": State.REVOKED}, {"seat-a"},
                 State.CANCELLED, id="one revoked, one rejected: cancelled, both said"),
    pytest.param([A, B], {"seat-a": State.CANCELLED, "seat-b": State.OCCUPANT_MISMATCH},
                 {"seat-a"}, State.NEEDS_REVIEW,
                 id="a seat still held that nobody rejected: needs review"),
    pytest.param([A, R], {"seat-a": State.CANCELLED}, {"seat-a"}, State.NEEDS_REVIEW,
                 id="rejected, but an unclear seat list: needs review"),
    pytest.param([A], {"seat-a": State.CANCELLED}, set(), State.NEEDS_REVIEW,
                 id="cancelled by hand, not at the breaker: needs review as before"),
])
def test_seats_rejected_at_the_breaker(findings: list[Finding], children: dict[str, State],
                                       rejected: set[str], outcome: State) -> None:
    plan = plan_person(findings, children, rounds=2, rejected=frozenset(rejected))
    assert plan.outcome is outcome, plan.why
    if outcome is State.CANCELLED:
        assert "rejected at the breaker" in plan.why and plan.verified is False


UNNAMED_CASES = [
    # name, findings, children, rounds: a request that names no one, whatever was read
    ("first run: nothing found", [], {}, 1),
    ("a retry: nothing found", [], {}, 1),
    ("a later round", [], {}, 3),
    ("findings cannot make it a success", [A], {}, 1),
    ("nor children that ended", [], {"seat-a": State.REVOKED}, 2),
]


@pytest.mark.parametrize(("name", "findings", "children", "rounds"), UNNAMED_CASES,
                         ids=[c[0] for c in UNNAMED_CASES])
def test_a_person_named_by_nothing_needs_review_never_no_active_seat(
    name: str, findings: list[Finding], children: dict[str, State], rounds: int,
) -> None:
    plan = plan_person(findings, children, rounds=rounds, named=False)
    assert plan.outcome is State.NEEDS_REVIEW
    assert plan.verified is None and plan.create == ()
    assert "names no one" in plan.why
