"""What operators do at the circuit breaker: see what it holds, release it, reject it.

One place for the CLI (``seat-revoker held|release|reject``), the REST API and the
dashboard. A target is a scope (``org``, ``customer:<id>``) or a request id: a seat request
that is held, or a person request (its held seats). Releasing sends the held requests on
(they go past the breaker and count in its window); rejecting ends them ``cancelled``
("rejected at the breaker"). Either records who acted. A scope's breaker closes when an
operator acts on the scope, or when nothing of it is held any more.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from worker.decisions.breaker import CUSTOMER_PREFIX, ORG_SCOPE, scope_customer
from worker.decisions.outcomes import State
from worker.intake.producer import Producer
from worker.intake.sender import PUBLISH_ERRORS, NotSent
from worker.jobs.breaker import Breaker, OpenBreaker
from worker.store.models import RevocationRequest, utcnow
from worker.telemetry.logs import get_logger

log = get_logger("seat_revoker.breaker")

REJECTED = "rejected at the breaker"


class UnknownTarget(ValueError):
    """Neither a breaker scope nor a request this store has."""


@dataclass
class Acted:
    """What a release or reject did."""

    moved: list[str] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)  # scopes whose breaker closed
    not_sent: str | None = None  # released, but Redis did not take the messages (yet)


def is_scope(target: str) -> bool:
    return target == ORG_SCOPE or (target.startswith(CUSTOMER_PREFIX)
                                   and bool(scope_customer(target)))


class BreakerDesk:
    def __init__(self, producer: Producer, breaker: Breaker) -> None:
        self.producer = producer
        self.store = producer.store
        self.breaker = breaker

    def open_breakers(self) -> list[OpenBreaker]:
        return self.breaker.open_breakers()

    def held(self, scope: str | None = None) -> list[RevocationRequest]:
        return self.store.held(scope)

    def held_by_scope(self) -> dict[str, list[RevocationRequest]]:
        groups: dict[str, list[RevocationRequest]] = {}
        for record in self.store.held():
            groups.setdefault(str(record.held_scope), []).append(record)
        return groups

    def release(self, targets: list[str], *, actor: str) -> Acted:
        records, scopes = self._resolve(targets)
        now = utcnow()
        acted = Acted()
        acted.moved = self.store.transition(
            [r.id for r in records], from_states=[State.HELD], to_state=State.QUEUED,
            detail={"released": {"by": actor, "at": now.isoformat()}},
            lease_expires_at=now + timedelta(
                seconds=self.producer.settings.queued_lease_seconds),
            outcome_detail=f"released at the breaker by {actor}")
        acted.closed = self._close(records, scopes)
        if acted.moved:
            try:
                self.producer.send(acted.moved)
            except NotSent as error:  # recorded queued: the scheduler sends them
                acted.not_sent = f"Redis at {error.redis_url} did not take them ({error.cause})"
        log.warning("breaker.released", by=actor, requests=len(acted.moved),
                    scopes=acted.closed)
        return acted

    def reject(self, targets: list[str], *, actor: str) -> Acted:
        records, scopes = self._resolve(targets)
        acted = Acted()
        acted.moved = self.store.transition(
            [r.id for r in records], from_states=[State.HELD], to_state=State.CANCELLED,
            detail={"cancelled": REJECTED, "by": actor},
            outcome_detail=f"{REJECTED} by {actor}")
        acted.closed = self._close(records, scopes)
        log.warning("breaker.rejected", by=actor, requests=len(acted.moved),
                    scopes=acted.closed)
        self._nudge_parents(records)
        return acted

    def _resolve(self, targets: list[str]) -> tuple[list[RevocationRequest], set[str]]:
        """The held requests the targets name, and the scopes named outright. Every target
        is checked before anything changes: one unknown target changes nothing."""
        if not targets:
            raise UnknownTarget("name a scope (org, customer:<id>) or a request id")
        records: dict[str, RevocationRequest] = {}
        scopes: set[str] = set()
        for target in targets:
            if is_scope(target):
                scopes.add(target)
                records.update((r.id, r) for r in self.store.held(target))
                continue
            record = self.store.get(target)
            if record is None:
                raise UnknownTarget(f"{target!r} is neither a breaker scope (org, "
                                    f"customer:<id>) nor a request id")
            found = ([c for c in self.store.children_of(record.id) if c.state == State.HELD]
                     if record.kind == "person" else
                     [record] if record.state == State.HELD else [])
            if not found:
                raise UnknownTarget(f"request {record.id} is {record.state}: nothing of it "
                                    "is held at the breaker")
            records.update((r.id, r) for r in found)
        return list(records.values()), scopes

    def _close(self, records: list[RevocationRequest], scopes: set[str]) -> list[str]:
        touched = scopes | {str(r.held_scope) for r in records if r.held_scope}
        closed = []
        for scope in sorted(touched):
            if (scope in scopes or not self.store.held(scope)) and self.breaker.close(scope):
                closed.append(scope)
        return closed

    def _nudge_parents(self, records: list[RevocationRequest]) -> None:
        """A person request whose last held seat was rejected runs at once to finish."""
        parents = sorted({str(r.parent_id) for r in records if r.parent_id})
        if parents:
            try:
                self.producer.publish(parents, priority="urgent")
            except PUBLISH_ERRORS:  # its own look comes within HELD_WAIT
                log.warning("person.nudge_failed", parents=len(parents))
