"""Table-driven tests of the pure retry decisions in ``worker.decisions.outcomes``."""

from __future__ import annotations

import pytest

from worker.decisions.outcomes import (
    ATTENTION_STATES,
    SUCCESS_STATES,
    TERMINAL_STATES,
    Action,
    FleetFault,
    RetryPolicy,
    State,
    backoff,
    classify_fleet_fault,
    may_cancel,
    plan_retry,
)
from worker.polar.errors import Fault, classify_status

POLICY = RetryPolicy(
    inline_attempts=4,
    inline_max_wait=10.0,
    backoff_initial=0.5,
    backoff_max=30.0,
    max_attempts=12,
    budget_seconds=3600.0,
)


@pytest.mark.parametrize(
    ("status", "fault"),
    [
        pytest.param(200, None, id="200 ok is not a fault"),
        pytest.param(204, None, id="204 no content is not a fault"),
        pytest.param(400, Fault.PERMANENT, id="400 bad request is permanent"),
        pytest.param(401, Fault.PERMANENT, id="401 unauthorized is permanent"),
        pytest.param(403, Fault.PERMANENT, id="403 forbidden is permanent"),
        pytest.param(404, Fault.PERMANENT, id="404 not found is permanent"),
        pytest.param(408, Fault.TRANSIENT, id="408 request timeout is transient"),
        pytest.param(409, Fault.PERMANENT, id="409 conflict is permanent"),
        pytest.param(422, Fault.PERMANENT, id="422 validation error is permanent"),
        pytest.param(429, Fault.RATE_LIMITED, id="429 too many requests is rate limited"),
        pytest.param(500, Fault.TRANSIENT, id="500 internal error is transient"),
        pytest.param(502, Fault.TRANSIENT, id="502 bad gateway is transient"),
        pytest.param(503, Fault.TRANSIENT, id="503 unavailable is transient"),
        pytest.param(504, Fault.TRANSIENT, id="504 gateway timeout is transient"),
    ],
)
def test_classify_status(status: int, fault: Fault | None) -> None:
    assert classify_status(status) is fault


@pytest.mark.parametrize(
    ("attempt", "expected"),
    [
        pytest.param(0, 0.5, id="attempt 0 waits the initial delay"),
        pytest.param(1, 0.5, id="attempt 1 waits the initial delay"),
        pytest.param(2, 1.0, id="attempt 2 doubles it"),
        pytest.param(3, 2.0, id="attempt 3 doubles again"),
        pytest.param(6, 16.0, id="attempt 6 waits sixteen seconds"),
        pytest.param(7, 30.0, id="attempt 7 is capped at backoff_max"),
        pytest.param(50, 30.0, id="a huge attempt number stays at the cap"),
    ],
)
def test_backoff_grows_exponentially_and_is_capped(attempt: int, expected: float) -> None:
    assert backoff(attempt, POLICY) == expected


def test_backoff_respects_a_custom_policy() -> None:
    policy = RetryPolicy(backoff_initial=2.0, backoff_max=5.0)
    assert [backoff(n, policy) for n in (1, 2, 3, 4)] == [2.0, 4.0, 5.0, 5.0]


# (fault, inline_attempt, task_attempt, elapsed, retry_after) -> (action, delay or None)
PLAN_CASES = [
    pytest.param(
        Fault.PERMANENT,
        1,
        1,
        0.0,
        None,
        Action.GIVE_UP,
        0.0,
        id="a permanent error gives up at once",
    ),
    pytest.param(
        Fault.PERMANENT,
        1,
        1,
        0.0,
        1.0,
        Action.GIVE_UP,
        0.0,
        id="a permanent error gives up even with a retry-after",
    ),
    pytest.param(
        Fault.RATE_LIMITED,
        1,
        1,
        0.0,
        3.0,
        Action.RETRY_INLINE,
        3.0,
        id="a 429 with a short retry-after retries inline after exactly retry-after",
    ),
    pytest.param(
        Fault.RATE_LIMITED,
        1,
        1,
        0.0,
        10.0,
        Action.RETRY_INLINE,
        10.0,
        id="a 429 with retry-after equal to inline_max_wait still retries inline",
    ),
    pytest.param(
        Fault.RATE_LIMITED,
        1,
        1,
        0.0,
        45.0,
        Action.RETRY_LATER,
        45.0,
        id="a 429 with a long retry-after retries later with countdown retry-after",
    ),
    pytest.param(
        Fault.RATE_LIMITED,
        4,
        1,
        0.0,
        2.0,
        Action.RETRY_LATER,
        2.0,
        id="a 429 after the last inline attempt retries later with countdown retry-after",
    ),
    pytest.param(
        Fault.RATE_LIMITED,
        1,
        3,
        0.0,
        None,
        Action.RETRY_INLINE,
        2.0,
        id="a 429 without retry-after falls back to backoff of the task attempt",
    ),
    pytest.param(
        Fault.RATE_LIMITED,
        1,
        9,
        0.0,
        None,
        Action.RETRY_LATER,
        30.0,
        id="a 429 without retry-after on a late task attempt waits the capped backoff later",
    ),
    pytest.param(
        Fault.TRANSIENT,
        1,
        1,
        0.0,
        None,
        Action.RETRY_INLINE,
        0.5,
        id="a first transient failure retries inline after the initial backoff",
    ),
    pytest.param(
        Fault.TRANSIENT,
        2,
        1,
        0.0,
        None,
        Action.RETRY_INLINE,
        1.0,
        id="a second transient failure retries inline after a doubled backoff",
    ),
    pytest.param(
        Fault.TRANSIENT,
        3,
        1,
        0.0,
        None,
        Action.RETRY_INLINE,
        2.0,
        id="a third transient failure still retries inline",
    ),
    pytest.param(
        Fault.TRANSIENT,
        4,
        1,
        0.0,
        None,
        Action.RETRY_LATER,
        4.0,
        id="a transient failure on the last inline attempt retries later",
    ),
    pytest.param(
        Fault.TRANSIENT,
        4,
        6,
        0.0,
        None,
        Action.RETRY_LATER,
        30.0,
        id="a later retry of a transient failure waits at least the next task backoff",
    ),
    pytest.param(
        Fault.TRANSIENT,
        1,
        1,
        3599.9,
        None,
        Action.GIVE_UP,
        0.0,
        id="a transient failure gives up when the delay would overrun the budget",
    ),
    pytest.param(
        Fault.RATE_LIMITED,
        1,
        1,
        3500.0,
        200.0,
        Action.GIVE_UP,
        0.0,
        id="a 429 gives up when retry-after would overrun the budget",
    ),
    pytest.param(
        Fault.RATE_LIMITED,
        1,
        1,
        3500.0,
        100.0,
        Action.RETRY_LATER,
        100.0,
        id="a 429 whose retry-after ends exactly at the budget still retries",
    ),
    pytest.param(
        Fault.TRANSIENT,
        4,
        12,
        0.0,
        None,
        Action.GIVE_UP,
        0.0,
        id="a transient failure gives up when task attempts are exhausted",
    ),
    pytest.param(
        Fault.RATE_LIMITED,
        1,
        12,
        0.0,
        60.0,
        Action.GIVE_UP,
        0.0,
        id="a long 429 gives up when task attempts are exhausted",
    ),
    pytest.param(
        Fault.TRANSIENT,
        1,
        12,
        0.0,
        None,
        Action.RETRY_INLINE,
        0.5,
        id="inline retries are still allowed on the last task attempt",
    ),
]


@pytest.mark.parametrize(
    ("fault", "inline_attempt", "task_attempt", "elapsed", "retry_after", "action", "delay"),
    PLAN_CASES,
)
def test_plan_retry(
    fault: Fault,
    inline_attempt: int,
    task_attempt: int,
    elapsed: float,
    retry_after: float | None,
    action: Action,
    delay: float,
) -> None:
    plan = plan_retry(
        fault,
        inline_attempt=inline_attempt,
        task_attempt=task_attempt,
        elapsed=elapsed,
        retry_after=retry_after,
        policy=POLICY,
    )
    assert plan.action is action
    assert plan.delay == pytest.approx(delay)


@pytest.mark.parametrize(
    ("fault", "inline_attempt", "task_attempt", "elapsed", "reason"),
    [
        pytest.param(Fault.PERMANENT, 1, 1, 0.0, "permanent error", id="permanent says so"),
        pytest.param(Fault.TRANSIENT, 1, 1, 3600.0, "retry budget exhausted", id="budget says so"),
        pytest.param(Fault.TRANSIENT, 4, 12, 0.0, "retry attempts exhausted", id="attempts say so"),
    ],
)
def test_give_up_gives_a_reason(
    fault: Fault, inline_attempt: int, task_attempt: int, elapsed: float, reason: str
) -> None:
    plan = plan_retry(
        fault,
        inline_attempt=inline_attempt,
        task_attempt=task_attempt,
        elapsed=elapsed,
        retry_after=None,
        policy=POLICY,
    )
    assert plan.action is Action.GIVE_UP
    assert plan.reason == reason


def test_transient_inline_sequence_follows_inline_attempts() -> None:
    policy = RetryPolicy(inline_attempts=3, inline_max_wait=10.0)
    actions = [
        plan_retry(
            Fault.TRANSIENT,
            inline_attempt=n,
            task_attempt=1,
            elapsed=0.0,
            retry_after=None,
            policy=policy,
        ).action
        for n in (1, 2, 3)
    ]
    assert actions == [Action.RETRY_INLINE, Action.RETRY_INLINE, Action.RETRY_LATER]


def test_inline_retry_needs_the_delay_within_inline_max_wait() -> None:
    policy = RetryPolicy(inline_max_wait=0.25)
    plan = plan_retry(
        Fault.TRANSIENT,
        inline_attempt=1,
        task_attempt=1,
        elapsed=0.0,
        retry_after=None,
        policy=policy,
    )
    assert plan.action is Action.RETRY_LATER


@pytest.mark.parametrize(
    ("state", "terminal", "success"),
    [
        pytest.param(State.SCHEDULED, False, False, id="scheduled is neither terminal nor done"),
        pytest.param(State.QUEUED, False, False, id="queued is neither terminal nor done"),
        pytest.param(State.RUNNING, False, False, id="running is neither terminal nor done"),
        pytest.param(State.RETRYING, False, False, id="retrying is neither terminal nor done"),
        pytest.param(State.REVOKED, True, True, id="revoked is a terminal success"),
        pytest.param(State.ALREADY_REVOKED, True, True, id="already revoked is a terminal success"),
        pytest.param(
            State.OCCUPANT_MISMATCH, True, True, id="occupant mismatch is a terminal success"
        ),
        pytest.param(State.NO_ACTIVE_SEAT, True, True, id="no active seat is a terminal success"),
        pytest.param(State.FAILED, True, False, id="failed is terminal but not a success"),
        pytest.param(State.CANCELLED, True, False, id="cancelled is terminal but not a success"),
        pytest.param(State.NEEDS_REVIEW, True, False,
                     id="needs review is terminal but never a success"),
        pytest.param(State.HELD, False, False,
                     id="held at the breaker waits for an operator: not an outcome"),
        pytest.param(State.AWAITING_APPROVAL, False, False,
                     id="awaiting approval waits for a second identity: not an outcome"),
        pytest.param(State.RESTORED, True, True, id="restored is a terminal success"),
        pytest.param(State.CHANGED_HANDS, True, True,
                     id="changed hands: the person named no longer held the seat"),
    ],
)
def test_state_sets(state: State, terminal: bool, success: bool) -> None:
    assert state.is_terminal is terminal
    assert state.is_success is success


def test_every_success_state_is_terminal() -> None:
    assert SUCCESS_STATES <= TERMINAL_STATES
    assert len(TERMINAL_STATES) == 9
    assert {State.FAILED, State.NEEDS_REVIEW} == ATTENTION_STATES
    assert not ATTENTION_STATES & SUCCESS_STATES


# Bodies as Polar sends them (polarsource/polar server/polar/kit/versioning.py,
# server/polar/auth/dependencies.py, server/polar/exception_handlers.py).
@pytest.mark.parametrize(
    ("status", "error", "detail", "portal", "expected"),
    [
        pytest.param(404, None, "Not Found", False, FleetFault.API_VERSION,
                     id="unserved Polar-Version: bare 404"),
        pytest.param(404, None, "Not Found", True, FleetFault.API_VERSION,
                     id="unserved Polar-Version hits the portal too"),
        pytest.param(404, "ResourceNotFound", "Seat not found", False, None,
                     id="a missing seat is one request's problem"),
        pytest.param(401, "invalid_token", None, False, FleetFault.TOKEN_INVALID,
                     id="revoked organization token"),
        pytest.param(401, "Unauthorized", "Unauthorized", False, FleetFault.TOKEN_INVALID,
                     id="no usable credentials"),
        pytest.param(401, "invalid_token", None, True, None,
                     id="an expired portal session is one customer's"),
        pytest.param(403, "insufficient_scope", None, False, FleetFault.FORBIDDEN,
                     id="token without the seat scopes"),
        pytest.param(403, "FeatureNotEnabled",
                     "Seat-based pricing is not enabled for this organization", False,
                     FleetFault.FORBIDDEN, id="seat-based pricing off"),
        pytest.param(403, "NotPermitted", "Only owners and billing managers", True, None,
                     id="a member without the role"),
        pytest.param(422, "RequestValidationError", [], False, None, id="bad id"),
        pytest.param(500, None, None, False, None, id="server error"),
    ],
)
def test_classify_fleet_fault(status: int, error: str | None, detail: object, portal: bool,
                              expected: FleetFault | None) -> None:
    assert classify_fleet_fault(status, error, detail, portal=portal) is expected


def test_state_values_are_the_stored_strings() -> None:
    assert State("occupant_mismatch") is State.OCCUPANT_MISMATCH
    assert str(State.ALREADY_REVOKED) == "already_revoked"


def test_a_later_retry_never_lands_past_the_budget() -> None:
    plan = plan_retry(
        Fault.TRANSIENT,
        inline_attempt=4,
        task_attempt=6,
        elapsed=3590.0,
        retry_after=None,
        policy=POLICY,
    )
    assert plan.action is Action.GIVE_UP or 3590.0 + plan.delay <= POLICY.budget_seconds


def test_by_default_a_transient_backoff_gives_the_worker_slot_back() -> None:
    """A slot sleeping 0.5 s per 503 revokes nothing meanwhile: by default the first retry
    of a transient fault is a Celery retry with a countdown, not an inline sleep."""
    plan = plan_retry(Fault.TRANSIENT, inline_attempt=1, task_attempt=1, elapsed=0.0,
                      retry_after=None, policy=RetryPolicy())
    assert plan.action is Action.RETRY_LATER


CANCEL_CASES = [
    # state, kind, delete_sent, with_person, may cancel
    (State.SCHEDULED, "seat", False, False, True),
    (State.QUEUED, "seat", False, False, True),
    (State.RETRYING, "seat", True, False, True),  # a past try failed: its next one stops
    (State.HELD, "seat", False, True, True),
    (State.AWAITING_APPROVAL, "person", False, False, True),
    (State.RUNNING, "seat", False, False, False),  # its own run may be sending the DELETE
    (State.RUNNING, "seat", False, True, True),  # a person's child, DELETE not sent: stops
    (State.RUNNING, "seat", True, True, False),  # DELETE sent: it finishes on its own
    (State.RUNNING, "person", False, False, True),  # discovery or children in flight
    (State.QUEUED, "person", False, False, True),
    (State.REVOKED, "seat", True, True, False),
    (State.NEEDS_REVIEW, "person", False, False, False),
    (State.CANCELLED, "seat", False, True, False),
]


@pytest.mark.parametrize(("state", "kind", "delete_sent", "with_person", "expected"),
                         CANCEL_CASES,
                         ids=[f"{c[0]}-{c[1]}-sent={c[2]}-child={c[3]}" for c in CANCEL_CASES])
def test_may_cancel(state: State, kind: str, delete_sent: bool, with_person: bool,
                    expected: bool) -> None:
    assert may_cancel(state, kind=kind, delete_sent=delete_sent,
                      with_person=with_person) is expected


def test_no_terminal_state_is_cancellable() -> None:
    for state in TERMINAL_STATES:
        for kind in ("seat", "person"):
            assert not may_cancel(state, kind=kind, with_person=True)
