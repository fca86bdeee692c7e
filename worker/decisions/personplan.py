"""Offboarding a person: what the seats found mean (pure; no I/O).

A person request names a person and a scope. Its worker reads the scope's subscriptions
and orders and their seat lists (``worker.jobs.person``), and each read ends here as a list of
``Finding``: a seat the person holds, or a subscription/order where it cannot be told.
``plan_person`` turns the latest findings and the states of the child requests already
made (one per seat) into what to do next: children to create, wait, or the parent's
outcome. The parent finishes only after a read made once every child was terminal, so its
outcome is verified by that read: a person who still holds a seat is never reported done.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from worker.decisions.outcomes import State

# Rounds of "read, revoke what was found, read again" before giving up: a seat that keeps
# (re)appearing means someone is assigning seats to the person meanwhile.
MAX_ROUNDS = 3

FindingKind = Literal["holds", "review"]


@dataclass(frozen=True)
class Finding:
    """What one subscription's/order's seat list says about the person."""

    kind: FindingKind
    container: Literal["subscription", "order"]
    container_id: str
    seat_id: str | None = None  # the seat the person holds (or the one that is unclear)
    why: str = ""
    # The member id the person's external id resolved to through the members API (the
    # seat's own request then names the person by it too).
    member_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, f"{self.container}_id": self.container_id,
                "seat_id": self.seat_id, "why": self.why or None,
                "resolved_member_id": self.member_id}

    @property
    def container_field(self) -> dict[str, str]:
        return {f"{self.container}_id": self.container_id}


@dataclass(frozen=True)
class PersonPlan:
    create: tuple[Finding, ...] = ()  # seats to revoke by a new child request each
    outcome: State | None = None  # None: wait for the children (and read again)
    why: str = ""
    verified: bool | None = None  # the last read shows the person holds no active seat


UNNAMED = ("the request names no one (no email address, external id, member id or "
           "customer id), the only things that can find the person's seats: nothing was "
           "revoked and nothing is verified. Offboard the person with `seat-revoker "
           "offboard --email …`")

FAILED_CHILD = frozenset({State.FAILED})
UNDECIDED_CHILD = frozenset({State.NEEDS_REVIEW, State.CANCELLED})


def plan_person(
    findings: Sequence[Finding],
    children: Mapping[str, State],
    *,
    rounds: int,
    named: bool = True,
    max_rounds: int = MAX_ROUNDS,
    rejected: frozenset[str] = frozenset(),
) -> PersonPlan:
    """Next step of a person request.

    ``findings``: the latest discovery read. ``children``: seat id → state of the child
    request made for it. ``rounds``: discovery reads made so far, this one included.
    ``named``: the request names the person by something a seat can show (an address,
    external id, member id or customer id); a request that names no one can find no seat,
    and finding none proves nothing, so it needs review however often it is retried.
    A child still in flight means wait (the caller reads again only once all are
    terminal, so this is the final read otherwise). ``rejected``: seats whose request an
    operator rejected at the circuit breaker — the person request then ends ``cancelled``,
    as the operator decided, not ``needs_review``.
    """
    if not named:
        return PersonPlan(outcome=State.NEEDS_REVIEW, verified=None, why=UNNAMED)
    if any(not state.is_terminal for state in children.values()):
        return PersonPlan(why="waiting for the seats' requests")
    held = [f for f in findings if f.kind == "holds" and f.seat_id]
    new = tuple(f for f in held if f.seat_id not in children)
    if new:
        if rounds > max_rounds:
            ids = ", ".join(str(f.seat_id) for f in new)
            return PersonPlan(outcome=State.NEEDS_REVIEW, verified=False,
                              why=f"the person still holds seats after {max_rounds} rounds "
                                  f"of revoking ({ids}): someone keeps assigning seats to "
                                  "them; check and retry")
        return PersonPlan(create=new, why=f"{len(new)} seat(s) found")
    failed = sorted(seat for seat, state in children.items() if state in FAILED_CHILD)
    if failed:
        return PersonPlan(outcome=State.FAILED, verified=None,
                          why=f"revoking seat(s) {', '.join(failed)} failed: see their "
                              "requests, fix the cause and retry them, then this one")
    if rejected:
        kept = [f for f in held if str(f.seat_id) not in rejected]
        if not kept and not any(f.kind == "review" for f in findings):
            revoked = sum(s is State.REVOKED for s in children.values())
            return PersonPlan(outcome=State.CANCELLED, verified=False,
                              why=f"{len(rejected)} seat(s) rejected at the breaker by an "
                                  f"operator (not revoked); {revoked} revoked")
    still = [f for f in held]  # held, and its child ended: not revoked after all
    reviews = [f for f in findings if f.kind == "review"]
    undecided = sorted(seat for seat, state in children.items() if state in UNDECIDED_CHILD)
    problems: list[str] = []
    if undecided:
        problems.append(f"seat request(s) for {', '.join(undecided)} ended needs_review or "
                        "cancelled")
    problems += [f"{f.container} {f.container_id}: {f.why}" for f in reviews]
    problems += [f"seat {f.seat_id} ({f.container} {f.container_id}) is still held by the "
                 f"person after its request ended {children[str(f.seat_id)]}" for f in still]
    if problems:
        return PersonPlan(outcome=State.NEEDS_REVIEW, verified=False if still else None,
                          why="; ".join(problems))
    states = set(children.values())
    if State.REVOKED in states:
        outcome = State.REVOKED
        why = f"{sum(s is State.REVOKED for s in children.values())} seat(s) revoked"
    elif State.ALREADY_REVOKED in states:
        outcome, why = State.ALREADY_REVOKED, "the seats found were already revoked"
    else:
        outcome = State.NO_ACTIVE_SEAT
        why = ("the person holds no active seat in the scope" if not children else
               "the seats found were no longer the person's when their requests ran")
    return PersonPlan(outcome=outcome, verified=True,
                      why=f"{why}; a read after the last one finished shows no active seat "
                          "of the person in the scope")
