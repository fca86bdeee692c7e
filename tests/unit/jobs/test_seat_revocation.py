"""The orchestration seam ``worker.jobs.revocation.SeatRevocation`` against in-memory fakes.

No Redis, database or HTTP: the store, Polar client, seat lists, locks, fleet pause and
clock are the fakes below, so each test runs one request through lock → claim → guard →
DELETE → stored outcome in milliseconds.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import SecretStr

from worker.decisions.breaker import Check
from worker.decisions.breaker import Verdict as BreakerVerdict
from worker.decisions.occupant import Decision, SeatIndex
from worker.decisions.outcomes import FleetFault, RetryPolicy
from worker.jobs.outcome import Outcomes, RetryLater
from worker.jobs.polarstep import PolarStep
from worker.jobs.revocation import SeatRevocation
from worker.jobs.seatlock import SeatBusy
from worker.polar.client import Mode
from worker.polar.errors import PolarError, PolarHTTPError
from worker.polar.ratelimit import ThrottleWait
from worker.polar.seats import CustomerSeat, SeatContainer
from worker.store.models import RevocationRequest

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
SUBSCRIPTION = str(uuid.uuid4())


def clock() -> datetime:
    return NOW


class FakeStore:
    def __init__(self, *records: RevocationRequest) -> None:
        self.records = {record.id: record for record in records}
        self.events: list[tuple[str, str]] = []

    def get(self, request_id: str) -> RevocationRequest | None:
        return self.records.get(request_id)

    def claim(self, request_id: str, *, lease_until: datetime) -> RevocationRequest | None:
        record = self.records[request_id]
        if record.state in ("revoked", "failed", "occupant_mismatch"):
            return None
        record.state, record.attempts = "running", record.attempts + 1
        record.lease_expires_at = lease_until
        self.events.append((request_id, "running"))
        return record

    def update(self, request_id: str, *, event_detail: dict[str, Any] | None = None,
               **changes: Any) -> RevocationRequest:
        record = self.records[request_id]
        for name, value in changes.items():
            setattr(record, name, str(value) if name == "state" else value)
        if "state" in changes:
            self.events.append((request_id, str(changes["state"])))
        return record

    def renew_lease(self, request_id: str, *, until: datetime) -> bool:
        return True

    cancelled_people: frozenset[str] = frozenset()

    def begin_delete(self, request_id: str, *, at: datetime) -> bool:
        record = self.records[request_id]
        if record.state != "running" or record.parent_id in self.cancelled_people:
            return False
        record.first_delete_at = record.first_delete_at or at
        return True

    def cancel_children(self, parent_id: str, *, child_id: str | None = None) -> list[str]:
        assert child_id is not None and parent_id in self.cancelled_people
        self.records[child_id].state = "cancelled"
        self.events.append((child_id, "cancelled"))
        return [child_id]

    def last_revocation_of_seat(self, seat_id: str, *, excluding: str
                                ) -> RevocationRequest | None:
        return None

    def last_snapshot_of_seat(self, seat_id: str) -> dict[str, Any] | None:
        return None


@dataclass
class FakePolar:
    """Seats by id; ``errors`` are raised by the next DELETEs, in turn."""

    seats: dict[str, CustomerSeat]
    errors: list[Exception] = field(default_factory=list)
    deletes: list[str] = field(default_factory=list)

    def revoke_seat(self, seat_id: str, *, mode: Mode = "organization",
                    portal_token: SecretStr | None = None) -> CustomerSeat:
        self.deletes.append(seat_id)
        if self.errors:
            raise self.errors.pop(0)
        seat = self.seats[seat_id].model_copy(update={"status": "revoked", "revoked_at": NOW})
        self.seats[seat_id] = seat
        return seat


@dataclass
class FakeSeatLists:
    polar: FakePolar
    reads: int = 0

    def read(self, container: SeatContainer, *, mode: Mode, portal_token: SecretStr | None,
             share_in: str | None) -> list[CustomerSeat]:
        self.reads += 1
        return [seat for seat in self.polar.seats.values()
                if seat.subscription_id == container.subscription_id]

    def index_of(self, seats: list[CustomerSeat], billing: str | None) -> SeatIndex:
        return SeatIndex(seats, billing)

    def billing_customer(self, container: SeatContainer, *, share_in: str | None
                         ) -> str | None:
        return None

    def customer_by_external_id(self, external_id: str, *, share_in: str | None,
                                after: float | None = None) -> str | None:
        return None


class Beats:
    def also(self, name: str, beat: Any) -> None:
        return None


@dataclass
class FakeLocks:
    busy: set[str] = field(default_factory=set)

    @contextmanager
    def hold(self, seat_id: str) -> Iterator[Beats]:
        if seat_id in self.busy:
            raise SeatBusy(seat_id)
        yield Beats()

    def take(self, seat_id: str) -> bool:
        return seat_id not in self.busy


@dataclass
class Note:
    hint: str


@dataclass
class FakePause:
    probe_seconds: float = 30.0
    paused: list[FleetFault] = field(default_factory=list)

    def pause(self, scope: str, fault: FleetFault, status: int | None) -> Note:
        self.paused.append(fault)
        return Note("the token was refused")


class NoMetrics:
    def retry(self, kind: str) -> None:
        return None


@dataclass
class FakeBrakes:
    """Lets ``room`` revocations go, then holds (the scope of the seat list's customer)."""

    room: int = 1_000
    admitted: list[tuple[str, str | None, int | None]] = field(default_factory=list)

    def admit(self, record: RevocationRequest, container: SeatContainer | None,
              decision: Decision | None) -> Check:
        customer = decision.billing_customer_id if decision else None
        self.admitted.append((record.id, customer, decision.active_seats if decision else None))
        if len(self.admitted) > self.room:
            return Check(BreakerVerdict.HOLD, f"customer:{customer}", self.room, self.room,
                         tripped=len(self.admitted) == self.room + 1)
        return Check(BreakerVerdict.GO)


@dataclass
class World:
    store: FakeStore
    polar: FakePolar
    lists: FakeSeatLists
    pause: FakePause
    locks: FakeLocks
    sleeps: list[float]
    service: SeatRevocation
    brakes: FakeBrakes


def seat(email: str, seat_id: str | None = None) -> CustomerSeat:
    return CustomerSeat(id=seat_id or str(uuid.uuid4()), status="claimed",
                        created_at=NOW - timedelta(days=30), subscription_id=SUBSCRIPTION,
                        email=email)


def request(**fields: Any) -> RevocationRequest:
    defaults: dict[str, Any] = dict(
        id=str(uuid.uuid4()), idempotency_key=str(uuid.uuid4()), mode="organization",
        subscription_id=SUBSCRIPTION, state="queued", attempts=0, attempts_before_window=0,
        created_at=NOW - timedelta(seconds=1), guarded=True, kind="seat", priority="urgent",
    )
    return RevocationRequest(**{**defaults, **fields})


def world(record: RevocationRequest, seats: list[CustomerSeat], *,
          tokens: dict[str, str] | None = None, room: int = 1_000) -> World:
    store = FakeStore(record)
    polar = FakePolar({s.id: s for s in seats})
    lists = FakeSeatLists(polar)
    pause = FakePause()
    locks = FakeLocks()
    sleeps: list[float] = []
    outcomes = Outcomes(store, NoMetrics(), running_lease_seconds=60.0, clock=clock)
    step = PolarStep(outcomes, policy=RetryPolicy(inline_max_wait=10.0), metrics=NoMetrics(),
                     pause=pause, pause_scope="token:v1", clock=clock, sleep=sleeps.append)
    known = {ref: SecretStr(value) for ref, value in (tokens or {}).items()}
    brakes = FakeBrakes(room)
    service = SeatRevocation(store=store, polar=polar, seat_lists=lists, locks=locks,
                             step=step, portal_tokens=known.get, skew=timedelta(seconds=5),
                             brakes=brakes, clock=clock)
    return World(store, polar, lists, pause, locks, sleeps, service, brakes)


def test_a_seat_held_by_the_person_named_is_revoked_once_and_verified() -> None:
    held = seat("leaver@acme.test")
    record = request(seat_id=held.id, occupant_email="leaver@acme.test")
    w = world(record, [held, seat("stays@acme.test")])
    done = w.service.run(record)
    assert isinstance(done, RevocationRequest)
    assert (done.state, done.end_state_verified, done.attempts) == ("revoked", True, 1)
    assert done.occupant_seen == {"email": "leaver@acme.test"}
    assert done.first_delete_at == NOW and done.last_http_status is None
    assert w.polar.deletes == [held.id] and w.sleeps == []


def test_a_guard_verdict_stores_no_http_status() -> None:
    """Someone else holds the seat: the guard decides, Polar is never asked to DELETE,
    and the record carries the verdict's words, not an HTTP status Polar never sent."""
    other = seat("successor@acme.test")
    record = request(seat_id=other.id, occupant_email="leaver@acme.test")
    w = world(record, [other])
    done = w.service.run(record)
    assert isinstance(done, RevocationRequest)
    assert done.state == "occupant_mismatch" and done.end_state_verified is True
    assert done.last_http_status is None and done.last_error is None
    assert "held by someone else" in (done.outcome_detail or "")
    assert w.polar.deletes == []


def test_a_missing_portal_token_fails_with_a_way_forward_and_no_http_status() -> None:
    held = seat("p@acme.test")
    record = request(seat_id=held.id, occupant_email="p@acme.test", mode="customer_portal",
                     portal_token_ref="gone")
    w = world(record, [held])
    done = w.service.run(record)
    assert isinstance(done, RevocationRequest)
    assert done.state == "failed" and done.last_http_status is None
    assert "--portal-token-file" in (done.outcome_detail or "")
    assert (w.lists.reads, w.polar.deletes) == (0, [])


def test_a_portal_request_reads_and_deletes_with_its_token() -> None:
    held = seat("p@acme.test")
    record = request(seat_id=held.id, occupant_email="p@acme.test", mode="customer_portal",
                     portal_token_ref="ref-1")
    w = world(record, [held], tokens={"ref-1": "polar_cst_x"})
    done = w.service.run(record)
    assert isinstance(done, RevocationRequest) and done.state == "revoked"


def test_a_rate_limit_wait_is_returned_as_retry_later() -> None:
    held = seat("leaver@acme.test")
    record = request(seat_id=held.id, occupant_email="leaver@acme.test")
    w = world(record, [held])
    w.polar.errors.append(ThrottleWait(4.5))
    later = w.service.run(record)
    assert later == RetryLater(4.5, "waiting for rate-limit budget")
    assert record.state == "retrying"
    assert record.lease_expires_at == NOW + timedelta(seconds=4.5 + 60.0)


def test_a_transient_failure_is_retried_inline_then_revoked() -> None:
    held = seat("leaver@acme.test")
    record = request(seat_id=held.id, occupant_email="leaver@acme.test")
    w = world(record, [held])
    w.polar.errors.append(PolarHTTPError(503, None, "unavailable"))
    done = w.service.run(record)
    assert isinstance(done, RevocationRequest) and done.state == "revoked"
    assert len(w.sleeps) == 1 and len(w.polar.deletes) == 2
    assert w.lists.reads == 2  # the retry read the list afresh before its DELETE


@pytest.mark.parametrize(("error", "status"), [
    pytest.param(PolarHTTPError(404, "ResourceNotFound", "Seat not found"), 404, id="404"),
    pytest.param(PolarHTTPError(422, "RequestValidationError", []), 422, id="422"),
])
def test_polars_own_permanent_error_fails_with_its_status(error: PolarError,
                                                          status: int) -> None:
    held = seat("leaver@acme.test")
    record = request(seat_id=held.id, occupant_email="leaver@acme.test")
    w = world(record, [held])
    w.polar.errors.append(error)
    done = w.service.run(record)
    assert isinstance(done, RevocationRequest)
    assert (done.state, done.last_http_status, done.attempts) == ("failed", status, 1)
    assert w.sleeps == []


def test_a_token_wide_fault_pauses_the_queue_instead_of_failing() -> None:
    held = seat("leaver@acme.test")
    record = request(seat_id=held.id, occupant_email="leaver@acme.test")
    w = world(record, [held])
    w.polar.errors.append(PolarHTTPError(401, "Unauthorized", "Unauthorized"))
    later = w.service.run(record)
    assert isinstance(later, RetryLater) and 30.0 <= later.countdown <= 31.0
    assert w.pause.paused == [FleetFault.TOKEN_INVALID]
    assert record.state == "retrying" and record.last_http_status == 401


def test_a_seat_another_worker_holds_comes_back_later_unclaimed() -> None:
    held = seat("leaver@acme.test")
    record = request(seat_id=held.id, occupant_email="leaver@acme.test")
    w = world(record, [held])
    w.locks.busy.add(held.id)
    later = w.service.run(record)
    assert isinstance(later, RetryLater)
    assert record.attempts == 0 and w.store.events == []


def test_a_request_naming_only_a_person_finds_their_seat_then_revokes_it() -> None:
    held = seat("leaver@acme.test")
    record = request(occupant_email="leaver@acme.test")
    w = world(record, [seat("stays@acme.test"), held])
    done = w.service.run(record)
    assert isinstance(done, RevocationRequest)
    assert (done.state, done.seat_id) == ("revoked", held.id)
    assert w.polar.deletes == [held.id]


def test_a_person_with_no_seat_there_finishes_without_a_claim() -> None:
    record = request(occupant_email="leaver@acme.test")
    w = world(record, [seat("stays@acme.test")])
    done = w.service.run(record)
    assert isinstance(done, RevocationRequest)
    assert done.state == "no_active_seat" and done.attempts == 0
    assert w.polar.deletes == []


def test_a_finished_request_is_not_run_again() -> None:
    held = seat("leaver@acme.test")
    record = request(seat_id=held.id, occupant_email="leaver@acme.test", state="revoked")
    w = world(record, [held])
    assert w.service.run(record) is record
    assert w.polar.deletes == [] and w.lists.reads == 0


def test_a_revocation_over_the_breakers_limit_is_held_with_no_delete() -> None:
    held = seat("leaver@acme.test")
    record = request(seat_id=held.id, occupant_email="leaver@acme.test")
    w = world(record, [held, seat("stays@acme.test")], room=0)
    done = w.service.run(record)
    assert not isinstance(done, RetryLater)
    assert done.state == "held"
    assert done.held_scope is not None and done.held_scope.startswith("customer:")
    assert "held at the breaker" in (done.outcome_detail or "")
    assert w.polar.deletes == []
    assert done.first_delete_at is None
    # The breaker saw the seat list's active seats (two: the leaver's and a colleague's).
    assert w.brakes.admitted[0][2] == 2


def test_the_breaker_is_asked_once_before_the_first_delete_only() -> None:
    held = seat("leaver@acme.test")
    record = request(seat_id=held.id, occupant_email="leaver@acme.test")
    w = world(record, [held])
    w.polar.errors = [PolarHTTPError(503, None, "unavailable")]
    w.service.run(record)
    assert len(w.polar.deletes) == 2  # retried inline after the 503
    assert len(w.brakes.admitted) == 1


def test_a_request_cancelled_while_its_guard_reads_sends_no_delete() -> None:
    """The cancel lands between the claim and the DELETE: the last look before the DELETE
    (a compare-and-set in the store) finds it, and the outcome the run would have written
    does not replace the cancellation."""
    held = seat("leaver@acme.test")
    record = request(seat_id=held.id, occupant_email="leaver@acme.test")
    w = world(record, [held])
    read = w.lists.read

    def read_then_cancel(*args: Any, **kwargs: Any) -> list[CustomerSeat]:
        w.store.records[record.id].state = "cancelled"  # an operator, meanwhile
        return read(*args, **kwargs)

    w.lists.read = read_then_cancel  # type: ignore[method-assign]
    done = w.service.run(record)
    assert isinstance(done, RevocationRequest)
    assert done.state == "cancelled" and done.first_delete_at is None
    assert w.polar.deletes == []


def test_a_child_of_a_cancelled_person_sends_no_delete_and_ends_cancelled() -> None:
    held = seat("leaver@acme.test")
    parent = str(uuid.uuid4())
    record = request(seat_id=held.id, occupant_email="leaver@acme.test", parent_id=parent)
    w = world(record, [held])
    w.store.cancelled_people = frozenset({parent})
    done = w.service.run(record)
    assert isinstance(done, RevocationRequest)
    assert done.state == "cancelled" and w.polar.deletes == []
    assert w.store.events == [(record.id, "running"), (record.id, "cancelled")]
