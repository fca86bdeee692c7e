"""Unit tests of the sandbox state model (no HTTP): seats, shapes, people, bookkeeping."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from worker.sandbox.state import (
    DEFAULT_SANDBOX_TOKEN,
    FaultRule,
    MemberRole,
    SandboxError,
    SandboxState,
    SeatSpec,
    SeatStatus,
    SeatVariant,
    token_hash,
)

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
SEAT_FIELDS = {
    "id", "created_at", "modified_at", "status", "subscription_id", "order_id", "customer_id",
    "member_id", "email", "customer_email", "member", "invitation_token_expires_at",
    "claimed_at", "revoked_at", "seat_metadata",
}
MEMBER_FIELDS = {
    "id", "created_at", "modified_at", "customer_id", "email", "name", "external_id", "role",
}


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
    spec = SeatSpec(subscription_id=sub, email=fields.pop("email", "alice@example.com"), **fields)
    seat = state.create_seats([spec], owner_customer_id=owner)[0]
    return seat.id, sub


def seat_json(state: SandboxState, seat_id: str) -> dict[str, Any]:
    seat = state.seat(seat_id)
    assert seat is not None
    return seat.to_json()


def billing_of(state: SandboxState, seat_id: str) -> str:
    """The billing customer of a seat's subscription."""
    seat = state.seat(seat_id)
    assert seat is not None and seat.subscription_id is not None
    return str(state.container_json("subscription", seat.subscription_id)["customer_id"])


def error_of(call: Any, *args: Any, **kwargs: Any) -> SandboxError:
    with pytest.raises(SandboxError) as info:
        call(*args, **kwargs)
    return info.value


# -- seat shapes ---------------------------------------------------------------------------


def test_member_model_seat_shape(state: SandboxState) -> None:
    seat_id, sub = occupied(state, external_id="hr-7", name="Alice")
    body = seat_json(state, seat_id)
    billing = billing_of(state, seat_id)
    assert set(body) == SEAT_FIELDS and set(body["member"]) == MEMBER_FIELDS
    assert body["customer_id"] == billing  # the purchaser, not Alice
    assert body["email"] == body["customer_email"] == "alice@example.com"
    assert body["member"] == {
        "id": body["member_id"], "created_at": "2026-01-01T12:00:00Z", "modified_at": None,
        "customer_id": billing, "email": "alice@example.com", "name": "Alice",
        "external_id": "hr-7", "role": "member",
    }
    assert body["seat_metadata"] == {} and body["claimed_at"] == "2026-01-01T12:00:00Z"
    assert state.container_json("subscription", sub)["customer"]["email"].startswith("billing-")


def test_every_seat_of_a_container_names_the_same_billing_customer(state: SandboxState) -> None:
    seats = state.create_seats([SeatSpec(email=f"p{i}@example.com") for i in range(3)])
    assert len({s.customer_id for s in seats}) == 1
    assert len({s.member_id for s in seats}) == 3
    assert seats[0].customer_id not in {s.member_id for s in seats}


def test_legacy_seat_shape_since_march_2026(state: SandboxState) -> None:
    state.configure(member_model_enabled=False)
    seat_id, _ = occupied(state, external_id="hr-1", name="Alice")
    body = seat_json(state, seat_id)
    billing = billing_of(state, seat_id)
    [own] = [c for c in state.customers() if c.id == body["customer_id"]]
    assert own.id != billing and (own.email, own.external_id) == ("alice@example.com", "hr-1")
    assert body["email"] == body["customer_email"] == "alice@example.com"
    assert body["member"]["customer_id"] == billing  # the member sits under the purchaser
    assert body["member"]["external_id"] is None and body["member"]["email"] == own.email


@pytest.mark.parametrize(
    ("variant", "member_model", "own_customer", "has_member", "email"),
    [
        pytest.param(SeatVariant.CURRENT, True, False, True, True, id="current-member-model"),
        pytest.param(SeatVariant.CURRENT, False, True, True, True, id="current-legacy"),
        pytest.param(SeatVariant.LEGACY_BEFORE_2026_03, True, True, False, False,
                     id="legacy-before-2026-03"),
        pytest.param(SeatVariant.MEMBER_BEFORE_2026_01, False, False, True, False,
                     id="member-before-2026-01"),
        pytest.param(SeatVariant.MEMBER_2025_12, True, True, True, False, id="member-2025-12"),
    ],
)
def test_variant_shapes(
    state: SandboxState,
    variant: SeatVariant,
    member_model: bool,
    own_customer: bool,
    has_member: bool,
    email: bool,
) -> None:
    state.configure(member_model_enabled=member_model)
    seat_id, _ = occupied(state, external_id="hr-9", variant=variant)
    body = seat_json(state, seat_id)
    assert (body["customer_id"] != billing_of(state, seat_id)) is own_customer
    assert (body["member"] is not None) is has_member
    assert (body["member_id"] is not None) is has_member
    assert body["email"] == ("alice@example.com" if email else None)
    assert body["customer_email"] == "alice@example.com"  # always reachable through the chain
    if has_member:
        assert body["member"]["customer_id"] == billing_of(state, seat_id)


def test_existing_seats_keep_their_shape_when_the_mode_changes(state: SandboxState) -> None:
    legacy_id, _ = occupied(state, variant=SeatVariant.LEGACY_BEFORE_2026_03)
    member_id, _ = occupied(state)
    state.configure(member_model_enabled=False)
    assert seat_json(state, legacy_id)["member"] is None
    assert seat_json(state, member_id)["customer_id"] == billing_of(state, member_id)


def test_customer_id_is_rejected_on_member_model_seats(state: SandboxState) -> None:
    customer = state.create_customer("own@example.com")
    error = error_of(occupied, state, customer_id=customer.id)
    assert error.status == 400 and "member_2025_12" in error.detail
    seat_id, _ = occupied(state, customer_id=customer.id, variant=SeatVariant.MEMBER_2025_12)
    assert seat_json(state, seat_id)["customer_id"] == customer.id


def test_legacy_customer_id_names_an_existing_customer(state: SandboxState) -> None:
    state.configure(member_model_enabled=False)
    customer = state.create_customer("own@example.com", external_id="E-1")
    seat_id, _ = occupied(state, customer_id=customer.id, email=None)
    body = seat_json(state, seat_id)
    assert body["customer_id"] == customer.id and body["email"] == "own@example.com"
    error = error_of(occupied, state, customer_id=new_id())
    assert (error.status, error.error) == (404, "CustomerNotFound")


def test_legacy_holder_customer_is_found_by_email_or_external_id(state: SandboxState) -> None:
    state.configure(member_model_enabled=False)
    first, _ = occupied(state, email="Ann@Example.com", external_id="E-5")
    again, _ = occupied(state, email="ann@example.com")
    by_external, _ = occupied(state, email=None, external_id="E-5")
    owners = {seat_json(state, s)["customer_id"] for s in (first, again, by_external)}
    assert len(owners) == 1


def test_seeding_without_an_email_generates_distinct_ones(state: SandboxState) -> None:
    seats = state.create_seats([SeatSpec() for _ in range(2000)])
    emails = {s.email for s in seats}
    assert len(emails) == 2000 and all(e and e.endswith("@members.test") for e in emails)
    assert len({s.member_id for s in seats}) == 2000
    billing = state.customers()
    assert len(billing) == 1 and billing[0].email is not None
    assert billing[0].email.startswith("billing-") and billing[0].email.endswith(
        "@customers.test"
    )


def test_role_and_member_id_of_a_seeded_holder(state: SandboxState) -> None:
    member_id = new_id()
    seat_id, _ = occupied(state, member_id=member_id, role=MemberRole.BILLING_MANAGER)
    body = seat_json(state, seat_id)
    assert body["member_id"] == member_id and body["member"]["role"] == "billing_manager"


# -- revoke --------------------------------------------------------------------------------


def test_revoke_clears_occupant(state: SandboxState, clock: FakeTime) -> None:
    seat_id, sub = occupied(state, external_id="hr-1", name="Alice")
    clock.seconds = 30
    seat = state.revoke(seat_id)
    assert seat.status is SeatStatus.REVOKED
    assert seat.revoked_at == seat.modified_at == clock.wall()
    assert seat.customer_id is seat.member_id is seat.email is None
    body = seat.to_json()
    assert set(body) == SEAT_FIELDS
    assert body["member"] is None and body["customer_email"] is None
    assert body["claimed_at"] == "2026-01-01T12:00:00Z"  # Polar leaves claimed_at
    assert body["subscription_id"] == sub and body["revoked_at"] == "2026-01-01T12:00:30Z"
    assert state.stats()["revocations_by_seat"] == {seat_id: 1}


def test_revoke_pending_seat_drops_the_invitation_token(state: SandboxState) -> None:
    seat = state.create_seats([SeatSpec(status=SeatStatus.PENDING, email="p@example.com")])[0]
    assert seat.invitation_token and seat.invitation_token_expires_at == T0 + timedelta(days=1)
    assert seat.claimed_at is None
    revoked = state.revoke(seat.id)
    assert revoked.invitation_token is None and revoked.email is None
    # revoke_seat clears the token but not its expiry (customer_seat/service.py).
    assert revoked.invitation_token_expires_at == seat.invitation_token_expires_at


def test_revoke_already_revoked_is_a_no_op(state: SandboxState, clock: FakeTime) -> None:
    seat_id, _ = occupied(state)
    first = state.revoke(seat_id)
    clock.seconds = 60
    again = state.revoke(seat_id)
    assert again == first  # old revoked_at, nothing bumped
    assert state.stats()["revocations_by_seat"] == {seat_id: 1}
    assert len(state.revocations()) == 1


def test_legacy_rerevoke_bumps_revoked_at(state: SandboxState, clock: FakeTime) -> None:
    state.configure(legacy_rerevoke=True)
    seat_id, _ = occupied(state)
    first = state.revoke(seat_id)
    clock.seconds = 60
    again = state.revoke(seat_id)
    assert again.revoked_at == clock.wall() != first.revoked_at
    assert state.stats()["revocations_by_seat"] == {seat_id: 2}
    assert len(state.revocations()) == 1  # only the real one has an occupant


def test_revoke_unknown_seat(state: SandboxState) -> None:
    error = error_of(state.revoke, new_id())
    assert (error.status, error.error, error.detail) == (404, "ResourceNotFound", "Seat not found")


def test_seats_disabled(state: SandboxState) -> None:
    seat_id, sub = occupied(state)
    owner = billing_of(state, seat_id)
    state.configure(seats_enabled=False)
    for call, args in [(state.revoke, (seat_id,)), (state.list_seats, (sub,))]:
        error = error_of(call, *args)
        assert (error.status, error.error) == (403, "FeatureNotEnabled")
        assert error.detail == "Seat-based pricing is not enabled for this organization"
    assert error_of(state.revoke, new_id()).status == 404  # the lookup comes first
    state.configure(seats_enabled=True)
    state.revoke(seat_id)
    state.configure(seats_enabled=False)
    # The portal checks the feature only for a seat still occupied (service.py revoke_seat).
    assert state.revoke(seat_id, customer_id=owner).status is SeatStatus.REVOKED
    assert error_of(state.revoke, seat_id).error == "FeatureNotEnabled"


@pytest.mark.parametrize(
    ("variant", "member_model"),
    [
        pytest.param(SeatVariant.CURRENT, True, id="member-model: member.external_id"),
        pytest.param(SeatVariant.CURRENT, False, id="legacy: own customer's external_id"),
        pytest.param(SeatVariant.LEGACY_BEFORE_2026_03, False, id="old legacy: no member"),
        pytest.param(SeatVariant.MEMBER_2025_12, True, id="2025-12: member.external_id"),
    ],
)
def test_revocations_record_the_occupant(
    state: SandboxState, variant: SeatVariant, member_model: bool
) -> None:
    state.configure(member_model_enabled=member_model)
    seat_id, _ = occupied(state, external_id="hr-3", variant=variant)
    before = seat_json(state, seat_id)
    state.revoke(seat_id)
    assert state.revocations() == [
        {
            "seat_id": seat_id,
            "email": "alice@example.com",
            "member_id": before["member_id"],
            "customer_id": before["customer_id"],
            "external_id": "hr-3",
        }
    ]
    assert state.stats()["revocations"] == state.revocations()


def test_returned_seats_are_copies(state: SandboxState) -> None:
    seat_id, _ = occupied(state)
    copy = state.seat(seat_id)
    assert copy is not None and copy.member is not None
    copy.status = SeatStatus.REVOKED
    copy.member.email = "changed@example.com"
    stored = state.seat(seat_id)
    assert stored is not None and stored.status is SeatStatus.CLAIMED
    assert stored.member is not None and stored.member.email == "alice@example.com"


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
    assert [r["email"] for r in state.revocations()] == ["alice@example.com", "bob@example.com"]


def test_assign_adds_row_when_none_revoked(state: SandboxState) -> None:
    seat_id, sub = occupied(state)
    seat = state.assign(
        SeatSpec(subscription_id=sub, email="bob@example.com", status=SeatStatus.PENDING)
    )
    assert seat.id != seat_id and seat.status is SeatStatus.PENDING
    assert state.list_seats(subscription_id=sub).total_seats == 2


def test_assign_refuses_a_second_seat_for_the_same_member(state: SandboxState) -> None:
    _, sub = occupied(state)
    error = error_of(state.assign, SeatSpec(subscription_id=sub, email="ALICE@example.com"))
    assert (error.status, error.error) == (400, "SeatAlreadyAssigned")


def test_assign_reuses_the_member_of_the_billing_customer(state: SandboxState) -> None:
    seat_id, sub = occupied(state, external_id="hr-1")
    member_id = seat_json(state, seat_id)["member_id"]
    state.revoke(seat_id)
    again = state.assign(SeatSpec(subscription_id=sub, email="alice@example.com"))
    assert again.member_id == member_id  # get_or_create_by_email under the billing customer
    state.revoke(seat_id)
    mismatch = error_of(
        state.assign, SeatSpec(subscription_id=sub, email="x@example.com", external_id="hr-1")
    )
    assert (mismatch.status, mismatch.error) == (400, "MemberEmailMismatch")


def test_assign_to_order_and_unknown_container(state: SandboxState) -> None:
    order = new_id()
    state.create_seats([SeatSpec(order_id=order, status=SeatStatus.REVOKED)])
    seat = state.assign(SeatSpec(order_id=order, email="o@example.com", member_id=new_id()))
    assert seat.order_id == order and seat.subscription_id is None
    error = error_of(state.assign, SeatSpec(subscription_id=new_id(), email="x@example.com"))
    assert error.detail == "Subscription not found"


# -- seeding and listing -------------------------------------------------------------------


def test_create_seats_batch_shares_a_subscription(state: SandboxState) -> None:
    old = T0 - timedelta(days=3)
    seats = state.create_seats(
        [
            SeatSpec(email="a@example.com"),
            SeatSpec(status=SeatStatus.REVOKED, revoked_at=old, email="gone@example.com"),
            SeatSpec(status=SeatStatus.PENDING, email="c@example.com"),
        ]
    )
    assert len({s.subscription_id for s in seats}) == 1
    assert seats[1].revoked_at == old
    assert seats[1].member_id is seats[1].email is seats[1].customer_id is None  # as Polar's
    listing = state.list_seats(subscription_id=seats[0].subscription_id)
    assert [s.id for s in listing.seats] == [s.id for s in seats]
    assert (listing.total_seats, listing.available_seats) == (3, 1)


def test_create_seats_rejects_duplicate_ids(state: SandboxState) -> None:
    seat_id = new_id()
    state.create_seats([SeatSpec(id=seat_id, email="a@example.com")])
    assert error_of(state.create_seats, [SeatSpec(id=seat_id)]).status == 409
    same = new_id()
    assert error_of(state.create_seats, [SeatSpec(id=same), SeatSpec(id=same)]).status == 409


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param({"customer_id": "00000000-0000-4000-8000-000000000000"},
                     id="customer_id on a member-model seat"),
        pytest.param({"variant": SeatVariant.LEGACY_BEFORE_2026_03, "role": MemberRole.OWNER},
                     id="role on a seat without member"),
        pytest.param({"email": "x@example.com", "external_id": "E-taken"},
                     id="external id of another member's email"),
    ],
)
def test_a_failing_batch_leaves_no_trace(state: SandboxState, bad: dict[str, Any]) -> None:
    owner = new_id()
    seat_id, sub = occupied(state, owner=owner, external_id="E-taken")
    before = (state.all_seats(), state.customers(), state.members())
    specs = [SeatSpec(subscription_id=sub, email=f"n{i}@example.com") for i in range(3)]
    specs += [SeatSpec(email="new@example.com"), SeatSpec(subscription_id=sub, **bad)]
    error_of(state.create_seats, specs)
    assert (state.all_seats(), state.customers(), state.members()) == before
    assert state.list_seats(subscription_id=sub).total_seats == 1
    state.revoke(seat_id)
    failed = SeatSpec(subscription_id=sub, email="y@example.com", external_id="E-taken")
    error_of(state.assign, failed)
    assert len(state.members()) == 1 and state.seat(seat_id) is not None


def test_owner_customer_id_is_the_billing_customer(state: SandboxState) -> None:
    owner = new_id()
    seat_id, sub = occupied(state, owner=owner)
    assert seat_json(state, seat_id)["customer_id"] == owner
    assert [c.id for c in state.customers()] == [owner]
    error = error_of(state.create_seats, [SeatSpec(subscription_id=sub)], new_id())
    assert error.status == 409  # a subscription keeps its purchaser


def test_list_needs_a_known_container(state: SandboxState) -> None:
    assert error_of(state.list_seats).status == 400
    error = error_of(state.list_seats, order_id=new_id())
    assert (error.status, error.detail) == (404, "Order not found")


# -- portal visibility and sessions --------------------------------------------------------


def test_portal_sees_only_own_containers(state: SandboxState) -> None:
    owner, stranger = new_id(), new_id()
    seat_id, sub = occupied(state, owner=owner)
    assert len(state.list_seats(subscription_id=sub, customer_id=owner).seats) == 1
    assert error_of(state.list_seats, subscription_id=sub, customer_id=stranger).status == 404
    assert error_of(state.revoke, seat_id, customer_id=stranger).detail == "Seat not found"
    assert state.revoke(seat_id, customer_id=owner).status is SeatStatus.REVOKED


def test_sessions_authenticate_until_they_expire(state: SandboxState, clock: FakeTime) -> None:
    seat_id, _ = occupied(state, role=MemberRole.OWNER)
    body = seat_json(state, seat_id)
    customer_token = state.create_customer_session(body["customer_id"])
    member_token = state.create_member_session(body["member_id"], ttl=10)
    assert customer_token.startswith("polar_cst_") and member_token.startswith("polar_mst_")
    customer = state.authenticate(customer_token)
    member = state.authenticate(member_token)
    assert customer is not None and customer.rate_key == f"customer:{body['customer_id']}"
    assert member is not None and member.rate_key == f"member:{body['member_id']}"
    assert (member.customer_id, member.role) == (body["customer_id"], MemberRole.OWNER)
    clock.seconds = 10
    assert state.authenticate(member_token) is None
    clock.seconds = 3599
    assert state.authenticate(customer_token) is not None
    clock.seconds = 3600
    assert state.authenticate(customer_token) is None
    assert state.authenticate("polar_cst_nope") is None
    assert error_of(state.create_member_session, new_id()).status == 404
    assert error_of(state.create_customer_session, new_id()).status == 404


def test_org_tokens_and_revoked_tokens(state: SandboxState) -> None:
    subject = state.authenticate(DEFAULT_SANDBOX_TOKEN)
    assert subject is not None and subject.rate_key == f"organization:{state.organization_id}"
    assert state.authenticate("polar_oat_other") is None
    state.configure(tokens=["polar_oat_other"])
    assert state.authenticate("polar_oat_other") is not None
    state.configure(revoked_tokens=["polar_oat_other"])
    assert state.authenticate("polar_oat_other") is None
    with pytest.raises(ValueError):
        state.configure(colour="blue")


# -- identity reads ------------------------------------------------------------------------


def test_customers_and_members_reads(state: SandboxState) -> None:
    state.configure(member_model_enabled=False)
    seat_id, sub = occupied(state, external_id="E-1")
    body = seat_json(state, seat_id)
    own = state.customer_by_external_id_json("E-1")
    assert own["id"] == body["customer_id"] and own["organization_id"] == state.organization_id
    assert state.customer_json(own["id"])["email"] == "alice@example.com"
    assert error_of(state.customer_by_external_id_json, "E-404").detail == "Not found"
    billing = billing_of(state, seat_id)
    page = state.members_page(billing, None, None, 1, 10)
    assert page["pagination"] == {"total_count": 1, "max_page": 1}
    assert page["items"][0]["id"] == body["member_id"]
    assert state.members_page(own["id"], None, None, 1, 10)["items"] == []
    subscription = state.container_json("subscription", sub)
    assert subscription["customer_id"] == subscription["customer"]["id"] == billing


def test_members_page_filters_and_paginates(state: SandboxState, clock: FakeTime) -> None:
    customer = state.create_customer("team@example.com", external_id="T-1")
    for i in range(5):
        clock.seconds = i
        state.create_member(customer.id, f"m{i}@example.com", role=MemberRole.MEMBER)
    state.create_member(customer.id, "boss@example.com", role=MemberRole.OWNER)
    page = state.members_page(None, "T-1", MemberRole.MEMBER, 2, 2)
    assert [m["email"] for m in page["items"]] == ["m2@example.com", "m1@example.com"]
    assert page["pagination"] == {"total_count": 5, "max_page": 3}
    assert state.members_page(None, "T-2", None, 1, 10)["pagination"]["total_count"] == 0


def test_containers_page_by_customer(state: SandboxState) -> None:
    owner = state.create_customer("buyer@example.com", external_id="B-1")
    _, mine = occupied(state, owner=owner.id)
    occupied(state)
    page = state.containers_page("subscription", [owner.id], [], 1, 10)
    assert [s["id"] for s in page["items"]] == [mine]
    by_external = state.containers_page("subscription", [], ["B-1"], 1, 10)
    assert by_external == page
    assert state.containers_page("order", [owner.id], [], 1, 10)["items"] == []


def test_people_conflicts(state: SandboxState) -> None:
    state.create_customer("a@example.com", external_id="A")
    assert error_of(state.create_customer, "A@example.com").status == 409
    assert error_of(state.create_customer, "b@example.com", "A").status == 409
    assert error_of(state.create_member, new_id(), "x@example.com").status == 404


# -- config, faults, bookkeeping -----------------------------------------------------------


def test_reset_clears_everything(state: SandboxState) -> None:
    seat_id, _ = occupied(state)
    state.configure(rate_limit="1/second", legacy_rerevoke=True)
    state.add_fault(FaultRule(status=500))
    state.revoke(seat_id)
    organization = state.organization_id
    config = state.reset(member_model_enabled=False)
    assert config.rate_limit is None and not config.legacy_rerevoke
    assert not config.member_model_enabled
    assert state.all_seats() == [] and state.faults() == [] and state.customers() == []
    assert state.stats()["revocations_by_seat"] == {} and state.revocations() == []
    assert state.organization_id == organization


@pytest.mark.parametrize("value", [-0.1, 1.5])
def test_background_usage_must_be_a_share(state: SandboxState, value: float) -> None:
    with pytest.raises(ValueError):
        state.configure(background_usage=value)


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
