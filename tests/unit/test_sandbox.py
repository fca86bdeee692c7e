"""Unit tests of the sandbox state model (no HTTP)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from worker.sandbox_state import (
    DEFAULT_SANDBOX_TOKEN,
    ORG_BUCKET,
    FaultRule,
    RateLimit,
    SandboxError,
    SandboxState,
    SeatSpec,
    SeatStatus,
    SlidingWindowLimiter,
    token_hash,
)

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


class FakeTime:
    """Injected clock: monotonic seconds and wall time move together."""

    def __init__(self) -> None:
        self.seconds = 0.0

    def monotonic(self) -> float:
        return self.seconds

    def wall(self) -> datetime:
        return T0 + timedelta(seconds=self.seconds)


@pytest.fixture
def clock() -> FakeTime:
    return FakeTime()


@pytest.fixture
def state(clock: FakeTime) -> SandboxState:
    return SandboxState(clock=clock.monotonic, now=clock.wall)


def new_id() -> str:
    return str(uuid.uuid4())


def occupied(state: SandboxState, owner: str | None = None, **fields: Any) -> tuple[str, str]:
    """Create one claimed seat; return (seat id, subscription id)."""
    sub = new_id()
    spec = SeatSpec(subscription_id=sub, email="alice@example.com", **fields)
    seat = state.create_seats([spec], owner_customer_id=owner)[0]
    return seat.id, sub


# -- rate limits ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "limit", "window"),
    [
        ("20/second", 20, 1),
        ("100/minute", 100, 60),
        ("500 per minute", 500, 60),
        ("5/10s", 5, 10),
        ("3/2 minutes", 3, 120),
        ("7/hour", 7, 3600),
    ],
)
def test_rate_limit_parse(text: str, limit: int, window: float) -> None:
    assert RateLimit.parse(text) == RateLimit(limit, window)


@pytest.mark.parametrize("text", ["", "fast", "0/second", "10/fortnight", "-1/second"])
def test_rate_limit_parse_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        RateLimit.parse(text)


def test_rate_limit_str_round_trips() -> None:
    assert str(RateLimit.parse("100/minute")) == "100/minute"
    assert RateLimit.parse(str(RateLimit(5, 10))) == RateLimit(5, 10)


def test_sliding_window_is_strict_and_rejections_do_not_count() -> None:
    limiter, rate = SlidingWindowLimiter(), RateLimit(2, 10)
    assert limiter.hit("k", rate, 0.0) is None
    assert limiter.hit("k", rate, 5.0) is None
    assert limiter.hit("k", rate, 6.0) == 4  # the 0.0 entry expires at 10.0
    assert limiter.hit("k", rate, 9.99) == 1  # ceil, never 0
    assert limiter.hit("k", rate, 10.0) is None  # 0.0 left the window; rejects not logged
    assert limiter.hit("k", rate, 10.5) == 5  # now 5.0 is the oldest
    assert limiter.hit("other", rate, 10.5) is None  # keys are independent


def test_sliding_window_no_fixed_window_burst() -> None:
    limiter, rate = SlidingWindowLimiter(), RateLimit(3, 1)
    for t in (0.9, 0.95, 0.99):
        assert limiter.hit("k", rate, t) is None
    assert limiter.hit("k", rate, 1.01) is not None  # a fixed window would allow this


def test_lowered_limit_applies_to_existing_log() -> None:
    limiter = SlidingWindowLimiter()
    for t in range(5):
        assert limiter.hit("k", RateLimit(10, 60), float(t)) is None
    assert limiter.hit("k", RateLimit(2, 60), 5.0) == 58  # waits for the entry at 3.0


def test_state_rate_limit_uses_injected_clock(state: SandboxState, clock: FakeTime) -> None:
    assert state.hit_rate_limit(ORG_BUCKET) is None  # unlimited by default
    state.configure(rate_limit="2/second")
    assert state.hit_rate_limit(ORG_BUCKET) is None
    assert state.hit_rate_limit(ORG_BUCKET) is None
    assert state.hit_rate_limit(ORG_BUCKET) == 1
    assert state.hit_rate_limit("cst:other") is None
    clock.seconds = 1.0
    assert state.hit_rate_limit(ORG_BUCKET) is None


# -- revoke --------------------------------------------------------------------------------


def test_revoke_clears_occupant(state: SandboxState, clock: FakeTime) -> None:
    seat_id, sub = occupied(state, external_id="hr-1", name="Alice")
    before = state.seat(seat_id)
    assert before is not None and before.member_id and before.customer_id
    clock.seconds = 30
    seat = state.revoke(seat_id)
    assert seat.status is SeatStatus.REVOKED
    assert seat.revoked_at == seat.modified_at == clock.wall()
    assert seat.customer_id is seat.member_id is seat.email is None
    assert seat.invitation_token_expires_at is None
    body = seat.to_json()
    assert body["member"] is None and body["customer_email"] is None
    assert body["subscription_id"] == sub and body["revoked_at"] == "2026-01-01T12:00:30Z"
    assert state.stats()["revocations_by_seat"] == {seat_id: 1}


def test_revoke_pending_seat_clears_invitation(state: SandboxState) -> None:
    seat = state.create_seats([SeatSpec(status=SeatStatus.PENDING, email="p@example.com")])[0]
    assert seat.invitation_token_expires_at is not None and seat.claimed_at is None
    revoked = state.revoke(seat.id)
    assert revoked.invitation_token_expires_at is None and revoked.email is None


def test_revoke_already_revoked_is_a_no_op(state: SandboxState, clock: FakeTime) -> None:
    seat_id, _ = occupied(state)
    first = state.revoke(seat_id)
    clock.seconds = 60
    again = state.revoke(seat_id)
    assert again == first  # old revoked_at, nothing bumped
    assert state.stats()["revocations_by_seat"] == {seat_id: 1}


def test_legacy_rerevoke_bumps_revoked_at(state: SandboxState, clock: FakeTime) -> None:
    state.configure(legacy_rerevoke=True)
    seat_id, _ = occupied(state)
    first = state.revoke(seat_id)
    clock.seconds = 60
    again = state.revoke(seat_id)
    assert again.revoked_at == clock.wall() != first.revoked_at
    assert state.stats()["revocations_by_seat"] == {seat_id: 2}


def test_revoke_unknown_seat(state: SandboxState) -> None:
    with pytest.raises(SandboxError) as info:
        state.revoke(new_id())
    assert (info.value.status, info.value.error, info.value.detail) == (
        404,
        "ResourceNotFound",
        "Seat not found",
    )


def test_returned_seats_are_copies(state: SandboxState) -> None:
    seat_id, _ = occupied(state)
    copy = state.seat(seat_id)
    assert copy is not None
    copy.status = SeatStatus.REVOKED
    stored = state.seat(seat_id)
    assert stored is not None and stored.status is SeatStatus.CLAIMED


# -- assign reuses rows --------------------------------------------------------------------


def test_assign_reuses_revoked_row_with_same_id(state: SandboxState) -> None:
    seat_id, sub = occupied(state)
    state.revoke(seat_id)
    seat = state.assign(SeatSpec(subscription_id=sub, email="bob@example.com"))
    assert seat.id == seat_id
    assert seat.status is SeatStatus.CLAIMED and seat.revoked_at is None
    assert seat.email == "bob@example.com" and seat.member_id and seat.customer_id
    listing = state.list_seats(subscription_id=sub)
    assert (listing.total_seats, listing.available_seats) == (1, 0)
    # A stale DELETE for the old occupant now revokes Bob: the hazard the worker guards.
    assert state.revoke(seat_id).status is SeatStatus.REVOKED


def test_assign_adds_row_when_none_revoked(state: SandboxState) -> None:
    seat_id, sub = occupied(state)
    seat = state.assign(
        SeatSpec(subscription_id=sub, email="bob@example.com", status=SeatStatus.PENDING)
    )
    assert seat.id != seat_id and seat.status is SeatStatus.PENDING
    assert state.list_seats(subscription_id=sub).total_seats == 2


def test_assign_to_order_and_unknown_container(state: SandboxState) -> None:
    order = new_id()
    state.create_seats([SeatSpec(order_id=order, status=SeatStatus.REVOKED)])
    seat = state.assign(SeatSpec(order_id=order, email="o@example.com", member_id=new_id()))
    assert seat.order_id == order and seat.subscription_id is None
    with pytest.raises(SandboxError) as info:
        state.assign(SeatSpec(subscription_id=new_id(), email="x@example.com"))
    assert info.value.detail == "Subscription not found"


# -- seeding and listing -------------------------------------------------------------------


def test_create_seats_batch_shares_a_subscription(state: SandboxState, clock: FakeTime) -> None:
    old = T0 - timedelta(days=3)
    seats = state.create_seats(
        [
            SeatSpec(email="a@example.com"),
            SeatSpec(status=SeatStatus.REVOKED, revoked_at=old),
            SeatSpec(status=SeatStatus.PENDING, email="c@example.com"),
        ]
    )
    assert len({s.subscription_id for s in seats}) == 1
    assert seats[1].revoked_at == old and seats[1].member_id is None
    listing = state.list_seats(subscription_id=seats[0].subscription_id)
    assert [s.id for s in listing.seats] == [s.id for s in seats]
    assert (listing.total_seats, listing.available_seats) == (3, 1)


def test_create_seats_rejects_duplicate_ids(state: SandboxState) -> None:
    seat_id = new_id()
    state.create_seats([SeatSpec(id=seat_id, email="a@example.com")])
    with pytest.raises(SandboxError) as info:
        state.create_seats([SeatSpec(id=seat_id)])
    assert info.value.status == 409
    with pytest.raises(SandboxError):
        same = new_id()
        state.create_seats([SeatSpec(id=same), SeatSpec(id=same)])


def test_list_needs_a_known_container(state: SandboxState) -> None:
    with pytest.raises(SandboxError) as info:
        state.list_seats()
    assert info.value.status == 400
    with pytest.raises(SandboxError) as info:
        state.list_seats(order_id=new_id())
    assert (info.value.status, info.value.detail) == (404, "Order not found")


def test_member_object_and_include_member(state: SandboxState) -> None:
    member_id, customer_id = new_id(), new_id()
    seat_id, _ = occupied(
        state, member_id=member_id, customer_id=customer_id, external_id="hr-7", name="Alice"
    )
    seat = state.seat(seat_id)
    assert seat is not None
    assert seat.to_json()["member"] == {
        "id": member_id,
        "customer_id": customer_id,
        "email": "alice@example.com",
        "name": "Alice",
        "external_id": "hr-7",
        "role": "member",
    }
    assert "member" not in seat.to_json(include_member=False)
    assert set(seat.to_json()) == {
        "id",
        "created_at",
        "modified_at",
        "status",
        "subscription_id",
        "order_id",
        "customer_id",
        "member_id",
        "email",
        "customer_email",
        "invitation_token_expires_at",
        "claimed_at",
        "revoked_at",
        "seat_metadata",
        "member",
    }


# -- portal visibility ---------------------------------------------------------------------


def test_portal_sees_only_own_containers(state: SandboxState) -> None:
    owner, stranger = new_id(), new_id()
    seat_id, sub = occupied(state, owner=owner)
    token = state.create_customer_session(owner)
    assert token.startswith("polar_cst_") and state.session_customer(token) == owner
    assert state.session_customer("polar_cst_nope") is None
    assert len(state.list_seats(subscription_id=sub, customer_id=owner).seats) == 1
    with pytest.raises(SandboxError) as info:
        state.list_seats(subscription_id=sub, customer_id=stranger)
    assert info.value.status == 404
    with pytest.raises(SandboxError) as info:
        state.revoke(seat_id, customer_id=stranger)
    assert info.value.detail == "Seat not found"
    assert state.revoke(seat_id, customer_id=owner).status is SeatStatus.REVOKED


def test_unowned_container_is_invisible_to_portal(state: SandboxState) -> None:
    seat_id, _ = occupied(state)
    with pytest.raises(SandboxError):
        state.revoke(seat_id, customer_id=new_id())


# -- config, faults, bookkeeping -----------------------------------------------------------


def test_tokens_and_configure(state: SandboxState) -> None:
    assert state.is_org_token(DEFAULT_SANDBOX_TOKEN)
    assert not state.is_org_token("polar_oat_other")
    state.configure(tokens=["polar_oat_other"])
    assert state.is_org_token("polar_oat_other") and state.is_org_token(DEFAULT_SANDBOX_TOKEN)
    with pytest.raises(ValueError):
        state.configure(colour="blue")


def test_reset_clears_everything(state: SandboxState) -> None:
    seat_id, _ = occupied(state)
    state.configure(rate_limit="1/second", legacy_rerevoke=True)
    state.add_fault(FaultRule(status=500))
    state.revoke(seat_id)
    config = state.reset(include_member=False)
    assert config.rate_limit is None and not config.legacy_rerevoke
    assert not config.include_member
    assert state.all_seats() == [] and state.faults() == []
    assert state.stats()["revocations_by_seat"] == {}


def test_fault_matching_order_and_times(state: SandboxState) -> None:
    seat_id = new_id()
    state.add_fault(FaultRule(method="DELETE", seat_id=seat_id.upper(), status=503, times=2))
    state.add_fault(FaultRule(method="GET", status=500))
    assert state.match_fault("GET", None) is not None
    assert state.match_fault("DELETE", new_id()) is None
    first = state.match_fault("DELETE", seat_id)
    assert first is not None and first.status == 503 and first.hits == 1
    assert state.match_fault("DELETE", seat_id) is not None
    assert state.match_fault("DELETE", seat_id) is None  # times exhausted
    assert [rule.hits for rule in state.faults()] == [2, 1]


def test_probabilistic_faults_are_reproducible(state: SandboxState) -> None:
    def pattern() -> list[bool]:
        state.reset(seed=42)
        state.add_fault(FaultRule(status=500, probability=0.3))
        return [state.match_fault("DELETE", None) is not None for _ in range(200)]

    first = pattern()
    assert first == pattern()
    assert 30 < sum(first) < 90


def test_stats_and_log_never_hold_raw_tokens(state: SandboxState) -> None:
    state.request_started()
    state.count_delete("abc")
    state.request_finished(
        method="DELETE",
        path="/v1/customer-seats/abc",
        route="DELETE /v1/customer-seats",
        status=429,
        token=DEFAULT_SANDBOX_TOKEN,
        seat_id="abc",
        started=0.0,
    )
    stats = state.stats()
    assert stats["requests"] == 1 and stats["rate_limited"] == 1
    assert stats["by_status"] == {"429": 1} and stats["deletes_by_seat"] == {"abc": 1}
    assert stats["max_concurrent"] == 1 and stats["in_flight"] == 0
    [record] = state.log_since(0)
    assert record["token"] == token_hash(DEFAULT_SANDBOX_TOKEN)
    assert DEFAULT_SANDBOX_TOKEN not in str(record)
    assert state.log_since(1) == []
