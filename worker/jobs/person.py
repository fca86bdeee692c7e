"""Carry out a person request: find every seat the person holds in the scope, revoke each
through a child request, and finish once a fresh read shows none left.

    load ─ terminal? → done
      │ person lock (one worker per person request at a time)
      │ children in flight? → wait (a Celery retry in a second or two; no Polar call)
      │ discover: the scope's subscriptions and orders → their seat lists → ``Finding``s
      │           (shared per batch/run, but only reads started after what they must
      │           show: the request; in later rounds, the end of its last child)
      │ ``plan_person``: children to create (guarded per-seat requests) / wait / outcome
      ▼
    outcome stored with what was found; the children carry each seat's own proof

Every discovery read goes through the Polar client, so through the shared rate limiter.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

from config.settings import Priority
from worker.decisions.identity import (
    IdentityContext,
    Occupant,
    billing_customer_of,
    needs_external_lookup,
)
from worker.decisions.occupant import Verdict, locate_in
from worker.decisions.outcomes import State
from worker.decisions.personplan import Finding, PersonPlan, plan_person
from worker.intake.producer import Producer
from worker.intake.sender import PUBLISH_ERRORS, NotSent
from worker.jobs.outcome import Outcome, RetryLater
from worker.jobs.polarstep import Halted, PolarStep
from worker.jobs.runtime import Runtime
from worker.jobs.seatlists import SeatLists
from worker.jobs.seatlock import Heartbeat, SeatBusy, seat_lock
from worker.polar.seats import ContainerKind, SeatContainer
from worker.store.cancels import ParentStopped
from worker.store.models import RevocationRequest, utcnow
from worker.telemetry.logs import bind_task_context, get_logger

log = get_logger("seat_revoker.person")

PERSON = "person"
# Between looks at the children while they run; the last child to end also sends the
# person request at once (``nudge_parent``), so this is the safety net.
WAIT_SECONDS = 3.0
# Between looks while every unfinished seat is held at the breaker.
HELD_WAIT = 30.0


@dataclass(frozen=True)
class Scope:
    customer_id: str | None = None
    external_customer_id: str | None = None
    all_customers: bool = False

    @classmethod
    def of(cls, record: RevocationRequest) -> Scope:
        return cls(record.scope_customer_id, record.scope_external_customer_id,
                   bool(record.scope_all_customers))

    def describe(self) -> str:
        if self.customer_id:
            return f"customer {self.customer_id}"
        if self.external_customer_id:
            return f"customer with external id {self.external_customer_id}"
        return "the whole organization"


class ScopeUnknown(Exception):
    """The scope names a customer Polar does not have."""


def discover(
    lists: SeatLists, scope: Scope, wanted: Occupant, *, share_in: str | None, after: float
) -> list[Finding]:
    """What every seat list in the scope says about the person (reads only). Listings and
    seat lists are read at ``after`` (epoch seconds) or later: a read another person request
    of the batch made since then is reused."""
    customer_id = scope.customer_id
    if customer_id is not None and not lists.customer_exists(customer_id, share_in=share_in,
                                                             after=after):
        raise ScopeUnknown(f"Polar has no customer {customer_id}: check the scope")
    if scope.external_customer_id is not None:
        customer_id = lists.customer_by_external_id(scope.external_customer_id,
                                                    share_in=share_in, after=after)
        if customer_id is None:
            raise ScopeUnknown(f"Polar has no customer with external id "
                               f"{scope.external_customer_id!r}: check the scope")
    findings: list[Finding] = []
    kinds: tuple[ContainerKind, ...] = ("subscription", "order")
    for kind in kinds:
        for container_id, owner, seated in lists.containers(
                kind, customer_id=customer_id, external_customer_id=None, share_in=share_in,
                after=after):
            if not seated:
                continue
            found = _judge_container(lists, kind, container_id, owner, wanted, share_in,
                                     after)
            if found is not None:
                findings.append(found)
    return findings


def _judge_container(
    lists: SeatLists, kind: ContainerKind, container_id: str, owner: str | None,
    wanted: Occupant, share_in: str | None, after: float,
) -> Finding | None:
    container = SeatContainer(kind, container_id)
    seats = lists.read_after(container, share_in=share_in, after=after)
    # The listing already named the subscription's/order's own customer: no lookup needed.
    context = IdentityContext(billing_customer_id=billing_customer_of(seats) or owner)
    resolved: str | None = None
    if wanted.external_id and not wanted.member_id and context.billing_customer_id:
        # A member's external id may be missing from a seat body; the members API has it.
        members = lists.members_by_external_id(context.billing_customer_id,
                                               wanted.external_id, share_in=share_in,
                                               after=after)
        if len(members) == 1:
            resolved = members[0]
            wanted = replace(wanted, member_id=resolved)
    if wanted.external_id and needs_external_lookup(seats, wanted, context):
        context = replace(context, external_customer=lists.customer_by_external_id(
            wanted.external_id, share_in=share_in, after=after))
    decision = locate_in(lists.index_of(seats, context.billing_customer_id), wanted, context)
    if decision.verdict is Verdict.PROCEED and decision.seat is not None:
        return Finding("holds", kind, container_id, decision.seat.id, member_id=resolved)
    if decision.verdict is Verdict.REVIEW:
        return Finding("review", kind, container_id,
                       decision.seat.id if decision.seat else None, decision.why)
    return None


def run_person(
    rt: Runtime, record: RevocationRequest, sleep: Callable[[float], None]
) -> Outcome:
    """One pass over a person request: its stored record, or ``RetryLater``."""
    try:
        with seat_lock(rt.redis, rt.settings.redis_key("lock", "person", record.id),
                       ttl=rt.settings.seat_lock_seconds) as heartbeat:
            return _step(rt, record, PolarStep.of(rt, sleep), heartbeat)
    except SeatBusy:
        return RetryLater(2.0 + random.random(), "another worker holds this person")


def _step(
    rt: Runtime, record: RevocationRequest, step: PolarStep, heartbeat: Heartbeat,
) -> Outcome:
    outcomes = step.outcomes
    current = rt.store.get(record.id)
    assert current is not None
    if State(current.state).is_terminal:
        return current
    children = rt.store.children_of(current.id)
    unfinished = [child for child in children if not State(child.state).is_terminal]
    if unfinished:
        held = sum(child.state == State.HELD for child in unfinished)
        if held == len(unfinished):
            # Nothing moves until an operator releases or rejects them; the last child to
            # end nudges this request, so looking is only the safety net.
            why = f"{held} of its seats held at the breaker: waiting for an operator"
            if current.outcome_detail != why:
                rt.store.update(current.id, outcome_detail=why,
                                event_detail={"children_held": held})
            rt.store.update(current.id, lease_expires_at=outcomes.retry_lease(HELD_WAIT))
            return RetryLater(HELD_WAIT + random.random(), why)
        rt.store.update(current.id, lease_expires_at=outcomes.retry_lease(WAIT_SECONDS))
        return RetryLater(WAIT_SECONDS + random.random() * 0.5,
                          "waiting for the seats' requests")
    known = current.discovered or {}
    rounds = int(known.get("rounds", 0)) + 1
    claimed = rt.store.claim(current.id, lease_until=outcomes.running_lease())
    if claimed is None:
        final = rt.store.get(current.id)
        assert final is not None
        return final
    # A discovery of a large scope may take longer than a lease: renewed while it runs.
    heartbeat.also("lease", lambda: rt.store.renew_lease(claimed.id,
                                                         until=outcomes.running_lease()))
    bind_task_context(person=True, round=rounds)
    scope = Scope.of(claimed)
    wanted = Occupant.named_by(claimed)
    # Reads are shared with the batch (or this run), but only those started after what
    # they must show: the first round, after the request was made; a later one, after its
    # last child ended (so it shows what the children left). Plus the fleet's clock skew.
    share_in = claimed.batch_id or claimed.id
    since = max([claimed.created_at, *([claimed.window_started_at]
                                        if claimed.window_started_at else []),
                 *(c.finished_at for c in children if c.finished_at)])
    after = since.timestamp() + rt.settings.clock_skew_seconds
    # A manual retry opens a new window: the rounds limit counts from there.
    window = claimed.window_started_at.isoformat() if claimed.window_started_at else None
    in_window = (int(known.get("rounds_in_window", 0)) + 1
                 if known.get("window") == window else 1)
    if not wanted.is_named:  # nothing to look for: no read could prove anything
        return _finish(rt, claimed, plan_person([], {}, rounds=in_window, named=False),
                       known, rounds, [], window=(window, in_window))
    try:
        findings = step.run(claimed, lambda: discover(rt.seat_lists, scope, wanted,
                                                      share_in=share_in, after=after))
    except ScopeUnknown as unknown:
        return _finish(rt, claimed, PersonPlan(outcome=State.NEEDS_REVIEW, why=str(unknown)),
                       known, rounds, [])
    if isinstance(findings, Halted):
        return findings.outcome
    states = {_seat_of(child): State(child.state) for child in children}
    rejected = frozenset(_seat_of(child) for child in children
                         if child.state == State.CANCELLED and child.held_scope)
    plan = plan_person(findings, states, rounds=in_window, named=wanted.is_named,
                       rejected=rejected)
    log.info("person.discovered", round=rounds, scope=scope.describe(),
             held=sum(f.kind == "holds" for f in findings),
             review=sum(f.kind == "review" for f in findings), new=len(plan.create))
    try:
        created = _create_children(rt, claimed, plan.create) if plan.create else []
    except ParentStopped:  # cancelled while it looked: no child is made, none is sent
        log.info("person.cancelled", round=rounds, not_created=len(plan.create))
        stopped = rt.store.get(claimed.id)
        assert stopped is not None
        return stopped
    if plan.outcome is None:
        rt.store.update(
            claimed.id, state=State.RETRYING,
            discovered=_discovered(known, rounds, findings, created,
                                   window=(window, in_window)),
            event_detail={"round": rounds, "seats_found": len(plan.create)},
            lease_expires_at=outcomes.retry_lease(WAIT_SECONDS))
        return RetryLater(WAIT_SECONDS + random.random() * 0.5,
                          "waiting for the seats' requests")
    return _finish(rt, claimed, plan, known, rounds, findings, window=(window, in_window))


def _finish(rt: Runtime, record: RevocationRequest, plan: PersonPlan, known: dict[str, Any],
            rounds: int, findings: list[Finding],
            window: tuple[str | None, int] | None = None) -> RevocationRequest:
    assert plan.outcome is not None
    updated = rt.store.update(
        record.id, state=plan.outcome, outcome_detail=plan.why, last_error=None,
        end_state_verified=plan.verified,
        verified_at=utcnow() if plan.verified is not None else None,
        discovered=_discovered(known, rounds, findings, [], final=True, window=window),
        event_detail={"reason": plan.why, "round": rounds})
    event = f"person.{plan.outcome}"
    if plan.outcome in (State.NEEDS_REVIEW, State.FAILED):
        log.warning(event, reason=plan.why)
    else:
        log.info(event, reason=plan.why, verified=plan.verified)
    return updated


def _seat_of(child: RevocationRequest) -> str:
    """The seat a child was made for (a stale id it switched from stays the key)."""
    return str(child.requested_seat_id or child.seat_id)


def _discovered(known: dict[str, Any], rounds: int, findings: list[Finding],
                created: list[tuple[Finding, str]], *, final: bool = False,
                window: tuple[str | None, int] | None = None) -> dict[str, Any]:
    """The record of what each round found (JSON): seats with the child made for each."""
    seats: list[dict[str, Any]] = list(known.get("seats", []))
    for finding, child_id in created:
        seats.append({**finding.to_json(), "request_id": child_id, "round": rounds})
    reads: list[dict[str, Any]] = list(known.get("reads", []))
    reads.append({"round": rounds, "at": utcnow().isoformat(), "final": final,
                  "found": [f.to_json() for f in findings]})
    since, in_window = window if window is not None else (known.get("window"),
                                                           known.get("rounds_in_window", 0))
    return {"rounds": rounds, "seats": seats, "reads": reads, "window": since,
            "rounds_in_window": in_window}


def child_key(parent_id: str, seat_id: str) -> str:
    return f"person:{parent_id}:{seat_id}"


def _create_children(
    rt: Runtime, parent: RevocationRequest, found: tuple[Finding, ...]
) -> list[tuple[Finding, str]]:
    """Record one guarded per-seat request per seat found, then send them (the scheduler
    sends any Redis did not take)."""
    now = utcnow()
    lease = now + timedelta(seconds=rt.settings.queued_lease_seconds)
    rows = [{
        "id": str(uuid.uuid4()),
        "idempotency_key": child_key(parent.id, str(f.seat_id)),
        "kind": "seat",
        "parent_id": parent.id,
        "seat_id": f.seat_id,
        "mode": "organization",
        "subscription_id": f.container_id if f.container == "subscription" else None,
        "order_id": f.container_id if f.container == "order" else None,
        "occupant_email": parent.occupant_email,
        "occupant_member_id": parent.occupant_member_id or f.member_id,
        "occupant_customer_id": parent.occupant_customer_id,
        "occupant_external_id": parent.occupant_external_id,
        "state": State.QUEUED.value,
        "lease_expires_at": lease,
        "requested_by": parent.requested_by,
        "reason": parent.reason,
        "priority": parent.priority,
        "sent_at": None,
    } for f in found]
    recorded = rt.store.add_requests(rows, parent_id=parent.id)
    unsent = [r.id for r, _ in recorded if r.state == State.QUEUED and r.sent_at is None]
    _send(rt, unsent)
    return [(f, r.id) for f, (r, _) in zip(found, recorded, strict=True)]


def nudge_parent(rt: Runtime, parent_id: str) -> None:
    """A seat request of a person ended: if it was the last one running, run the person
    request now instead of at its next look (``WAIT_SECONDS``). A second message for it is
    harmless: the person lock and the terminal check make extra runs no-ops."""
    if any(not State(child.state).is_terminal for child in rt.store.children_of(parent_id)):
        return
    parent = rt.store.get(parent_id)
    if parent is None or State(parent.state).is_terminal:
        return
    # In the parent's own lane: nudged into the urgent lane, each person of a bulk batch
    # ran the moment its last seat ended, and no two shared a verification read.
    lane: Priority = "bulk" if parent.priority == "bulk" else "urgent"
    try:
        _producer(rt).publish([parent_id], priority=lane)
    except PUBLISH_ERRORS as exc:  # its own retry still comes
        log.warning("person.nudge_failed", parent_id=parent_id, error=type(exc).__name__)


def _producer(rt: Runtime) -> Producer:
    producer = _producers.get(id(rt))
    if producer is None:
        producer = _producers[id(rt)] = Producer(rt.settings, store=rt.store, role="worker")
    return producer


# One per runtime (per worker process): its broker connection publishes the children.
_producers: dict[int, Producer] = {}


def _send(rt: Runtime, request_ids: list[str]) -> None:
    try:
        _producer(rt).send(request_ids)
    except NotSent as error:  # recorded: the scheduler sends them
        log.warning("person.children_not_sent", unsent=len(error.unsent), error=error.cause)
