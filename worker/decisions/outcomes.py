"""Request states and the pure decisions made about them.

Nothing here touches the network, Redis or the database: ``classify_fault`` turns what a
Polar call ended with into a ``Fault``; ``plan_retry`` decides what to do about it. Both are
covered by table-driven unit tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from worker.polar.errors import Fault


class State(StrEnum):
    """Where a revocation request stands (``TERMINAL_STATES`` lists the outcomes)."""

    SCHEDULED = "scheduled"  # waits for its effective_at
    # Held at the circuit breaker before its DELETE (the limit of ``held_scope`` was hit):
    # nothing was sent to Polar; it goes on when an operator releases it, ends
    # ``cancelled`` when one rejects it.
    HELD = "held"
    # A row of a batch that waits for a second identity to approve the batch.
    AWAITING_APPROVAL = "awaiting_approval"
    QUEUED = "queued"  # recorded and sent to the broker
    RUNNING = "running"  # a worker holds it
    RETRYING = "retrying"  # a transient fault; a later attempt is planned
    REVOKED = "revoked"  # this job revoked the seat
    ALREADY_REVOKED = "already_revoked"  # the seat was revoked before this job touched it
    OCCUPANT_MISMATCH = "occupant_mismatch"  # the seat belongs to someone else now: no DELETE
    NO_ACTIVE_SEAT = "no_active_seat"  # the person holds no seat in that subscription/order
    FAILED = "failed"  # permanent error or retry budget spent
    # Who holds the seat cannot be decided (ambiguous match, contradictory fields, identity
    # not resolvable): nothing was deleted; an operator checks the input and retries.
    NEEDS_REVIEW = "needs_review"
    CANCELLED = "cancelled"  # cancelled by an operator before it ran
    RESTORED = "restored"  # kind=restore: Polar assigned the seat back (``assigned_seat_id``)
    # The seat changed hands between the guard's read and the DELETE (Polar's answer shows
    # another holder's seat row): the DELETE hit a bystander, whose seat is restored by a
    # restore request of its own. The person named no longer held it.
    CHANGED_HANDS = "changed_hands"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATES

    @property
    def is_success(self) -> bool:
        """Outcomes after which the person no longer holds this seat through us."""
        return self in SUCCESS_STATES


TERMINAL_STATES = frozenset(
    {
        State.REVOKED,
        State.ALREADY_REVOKED,
        State.OCCUPANT_MISMATCH,
        State.NO_ACTIVE_SEAT,
        State.FAILED,
        State.NEEDS_REVIEW,
        State.CANCELLED,
        State.RESTORED,
        State.CHANGED_HANDS,
    }
)
# Recorded but waiting for a person (or a date) before anything is sent to Polar.
WAITING_STATES = frozenset({State.SCHEDULED, State.HELD, State.AWAITING_APPROVAL})
IN_FLIGHT_STATES = frozenset({State.QUEUED, State.RUNNING, State.RETRYING})
# Outcomes an operator must act on: listed by `failed`, retryable with `retry`.
ATTENTION_STATES = frozenset({State.FAILED, State.NEEDS_REVIEW})
# Nothing of these has gone to Polar yet, or it waits for its next try: an operator's
# cancel stops them (``may_cancel``).
CANCELLABLE_STATES = frozenset(
    {State.SCHEDULED, State.HELD, State.AWAITING_APPROVAL, State.QUEUED, State.RETRYING}
)
# A person request also while it runs: it sends no DELETE itself (its children do).
PERSON_CANCELLABLE_STATES = CANCELLABLE_STATES | {State.RUNNING}


def may_cancel(state: State, *, kind: str, delete_sent: bool = False,
               with_person: bool = False) -> bool:
    """Whether an operator's cancel stops this request before it revokes anything.

    ``kind``: ``seat`` or ``person``. ``delete_sent``: the request stamped
    ``first_delete_at`` (its DELETE went, or is going, to Polar). ``with_person``: it is a
    seat request of a person request being cancelled. A running seat request is stopped
    only as a person's child whose DELETE has not been sent: the worker stamps
    ``first_delete_at`` by compare-and-set just before the DELETE, so either the cancel or
    the DELETE wins, never both. A running seat request of its own keeps running (it may be
    sending its DELETE right now)."""
    if state in CANCELLABLE_STATES:
        return True
    if state is State.RUNNING:
        return kind == "person" or (with_person and not delete_sent)
    return False


# Outcomes the CLI treats as a job done (exit status 0).
SUCCESS_STATES = frozenset(
    {State.REVOKED, State.ALREADY_REVOKED, State.OCCUPANT_MISMATCH, State.NO_ACTIVE_SEAT,
     State.RESTORED, State.CHANGED_HANDS}
)


class Action(StrEnum):
    RETRY_INLINE = "retry_inline"  # sleep `delay` in this process and try again (tenacity)
    RETRY_LATER = "retry_later"  # give the slot back; Celery retries after `delay`
    GIVE_UP = "give_up"  # mark the request failed


@dataclass(frozen=True)
class RetryPolicy:
    inline_attempts: int = 4  # calls per task run, first one included
    inline_max_wait: float = 0.1  # longest sleep worth holding a worker slot for
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    max_attempts: int = 12  # task runs in all
    budget_seconds: float = 3600.0  # from the first attempt to giving up


@dataclass(frozen=True)
class RetryPlan:
    action: Action
    delay: float = 0.0
    reason: str = ""


def backoff(attempt: int, policy: RetryPolicy) -> float:
    """Exponential delay before attempt ``attempt + 1`` (no jitter; callers add it)."""
    return float(min(policy.backoff_max, policy.backoff_initial * 2 ** max(attempt - 1, 0)))


def plan_retry(
    fault: Fault,
    *,
    inline_attempt: int,
    task_attempt: int,
    elapsed: float,
    retry_after: float | None,
    policy: RetryPolicy,
) -> RetryPlan:
    """Decide what follows a failed Polar call.

    ``inline_attempt`` counts calls in this task run, ``task_attempt`` counts task runs and
    ``elapsed`` is seconds since the request's first attempt.
    """
    if fault is Fault.PERMANENT:
        return RetryPlan(Action.GIVE_UP, reason="permanent error")
    if fault is Fault.RATE_LIMITED:
        delay = retry_after if retry_after is not None else backoff(task_attempt, policy)
    else:
        delay = backoff(inline_attempt, policy)
    inline = delay <= policy.inline_max_wait and inline_attempt < policy.inline_attempts
    if not inline and fault is Fault.TRANSIENT:
        delay = max(delay, backoff(task_attempt + 1, policy))
    if elapsed + delay > policy.budget_seconds:
        return RetryPlan(Action.GIVE_UP, reason="retry budget exhausted")
    if inline:
        return RetryPlan(Action.RETRY_INLINE, delay)
    if task_attempt >= policy.max_attempts:
        return RetryPlan(Action.GIVE_UP, reason="retry attempts exhausted")
    return RetryPlan(Action.RETRY_LATER, delay)


# -- faults that hit every request of a token alike ------------------------------------------


class FleetFault(StrEnum):
    """A Polar answer that every request sent with the same token and settings would get.

    Failing each request on its own would mark a whole backlog ``failed`` over one bad
    setting; instead the queue pauses until an operator fixes it (``worker.jobs.fleetpause``).
    """

    TOKEN_INVALID = "token_invalid"  # 401: token revoked, expired or mistyped
    FORBIDDEN = "forbidden"  # 403 missing scope / seat-based pricing off for the org
    API_VERSION = "api_version"  # 404 on every call: POLAR_API_VERSION not served


FLEET_FAULT_HINTS = {
    FleetFault.TOKEN_INVALID: "Polar rejected the access token (401); set a valid "
    "POLAR_ACCESS_TOKEN and restart the workers",
    FleetFault.FORBIDDEN: "Polar refused the token (403): it needs the customer_seats:read "
    "and customer_seats:write scopes, and the organization needs seat-based pricing",
    FleetFault.API_VERSION: "Polar does not serve POLAR_API_VERSION (404 on every call); "
    "unset it or use a served version",
}


def classify_fleet_fault(
    status: int | None, error: str | None, detail: object, *, portal: bool
) -> FleetFault | None:
    """Whether an error answer means "every request will fail like this".

    Polar's bodies (``server/polar/exception_handlers.py``, ``server/polar/auth/``):
    an unknown ``Polar-Version`` is 404 ``{"detail": "Not Found"}`` with no ``error`` name,
    unlike a missing seat (``ResourceNotFound``); 401 is ``Unauthorized`` or OAuth2
    ``invalid_token``; 403 ``insufficient_scope`` or ``FeatureNotEnabled`` concern the whole
    token or organization, while ``NotPermitted`` concerns one resource. A portal session
    is one customer's, never the fleet's: its 401/403 stay per request.
    """
    if status == 404 and error is None and detail == "Not Found":
        return FleetFault.API_VERSION
    if portal:
        return None
    if status == 401:
        return FleetFault.TOKEN_INVALID
    if status == 403 and error in ("insufficient_scope", "FeatureNotEnabled"):
        return FleetFault.FORBIDDEN
    return None


def failure_hint(status: int | None, error: str, *, portal: bool, reason: str) -> str:
    """What an operator should do about a request Polar's answer ``status`` failed."""
    if portal and status == 401:
        return ("the customer/member session token was rejected: Polar's portal sessions "
                "expire after one hour. Create a fresh session and run "
                "`seat-revoker retry ID --portal-token-file FILE`")
    if portal and status == 403:
        return ("the portal session may not revoke seats: only the customer, or a member "
                "with role owner or billing_manager, may (Polar answered 403)")
    if status == 404:
        return "Polar does not know this seat (404): check the seat id and the organization"
    if status == 422:
        return "Polar rejected an id (422): seat, subscription and order ids are UUID v4"
    return f"{reason}: {error}"
