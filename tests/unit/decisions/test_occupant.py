"""Table tests of ``worker.decisions.occupant``: who holds a seat, over real-shaped seat bodies.

Seat shapes follow Polar's server source (polarsource/polar
``server/polar/customer_seat/service.py`` ``assign_seat``, ``schemas.py`` ``customer_email``):
member model on → ``customer_id`` is the billing customer and the member is the holder;
legacy → ``customer_id`` is the holder's own customer, and seats from before March 2026
have no member and ``email: null``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from worker.decisions.identity import (
    EXTERNAL_UNKNOWN,
    IdentityContext,
    Match,
    Occupant,
    billing_customer_of,
    judge_holder,
    needs_billing_lookup,
    needs_external_lookup,
    occupant_of,
)
from worker.decisions.occupant import (
    SeatIndex,
    Verdict,
    _judge_all,
    decide,
    locate,
    locate_in,
    revoked_by_this_job,
)
from worker.polar.seats import CustomerSeat

SEAT_A = "5a1e0a4c-0000-4000-8000-00000000000a"
SEAT_B = "5a1e0a4c-0000-4000-8000-00000000000b"
SEAT_C = "5a1e0a4c-0000-4000-8000-00000000000c"
SUB = "9a0e0000-0000-4000-8000-000000000001"
BILLING = "b1111111-1111-4111-8111-111111111111"
ADA_CUSTOMER = "a2222222-2222-4222-8222-222222222222"
BOB_CUSTOMER = "b3333333-3333-4333-8333-333333333333"
ADA_MEMBER = "a4444444-4444-4444-8444-444444444444"
BOB_MEMBER = "b5555555-5555-4555-8555-555555555555"
DELETE_AT = datetime(2026, 4, 1, 12, 0, 0, tzinfo=UTC)
NO_SKEW = timedelta(0)


def _body(seat_id: str, status: str, **fields: Any) -> CustomerSeat:
    body: dict[str, Any] = {
        "id": seat_id, "created_at": "2026-01-01T00:00:00Z",
        "modified_at": "2026-01-02T00:00:00Z", "status": status,
        "subscription_id": SUB, "order_id": None, "customer_id": None, "member_id": None,
        "email": None, "customer_email": None, "member": None,
        "invitation_token_expires_at": None, "claimed_at": "2026-01-02T00:00:00Z",
        "revoked_at": None, "seat_metadata": {},
    }
    body.update(fields)
    return CustomerSeat.model_validate(body)


def _member(member_id: str, email: str, external_id: str | None) -> dict[str, Any]:
    return {"id": member_id, "created_at": "2026-01-01T00:00:00Z", "modified_at": None,
            "customer_id": BILLING, "email": email, "name": None,
            "external_id": external_id, "role": "member"}


def member_model(seat_id: str = SEAT_A, email: str = "ada@acme.test",
                 member_id: str = ADA_MEMBER, external_id: str | None = "E-ADA",
                 *, email_on_seat: bool = True, customer_id: str = BILLING,
                 status: str = "claimed") -> CustomerSeat:
    """Member model on; ``email_on_seat=False`` is a seat from before January 2026;
    ``customer_id`` other than BILLING is a December 2025 seat."""
    return _body(seat_id, status, customer_id=customer_id, member_id=member_id,
                 email=email if email_on_seat else None, customer_email=email,
                 member=_member(member_id, email, external_id))


def legacy(seat_id: str = SEAT_A, email: str = "ada@acme.test",
           customer_id: str = ADA_CUSTOMER, member_id: str = ADA_MEMBER,
           *, before_march: bool = False, status: str = "claimed") -> CustomerSeat:
    """Member model off: the holder's own customer; before March 2026 no member, no email."""
    if before_march:
        return _body(seat_id, status, customer_id=customer_id, customer_email=email)
    return _body(seat_id, status, customer_id=customer_id, member_id=member_id, email=email,
                 customer_email=email, member=_member(member_id, email, None))


def revoked(seat_id: str = SEAT_A, revoked_at: str = "2026-03-01T00:00:00Z") -> CustomerSeat:
    return _body(seat_id, "revoked", revoked_at=revoked_at)


KNOWN_BILLING = IdentityContext(billing_customer_id=BILLING)


@pytest.mark.parametrize(
    ("seat", "wanted", "context", "match"),
    [
        pytest.param(member_model(), Occupant(email="ADA@acme.test"), IdentityContext(),
                     Match.HOLDS, id="member model: email, case-insensitive"),
        pytest.param(member_model(), Occupant(member_id=ADA_MEMBER), IdentityContext(),
                     Match.HOLDS, id="member model: member id"),
        pytest.param(member_model(), Occupant(external_id="E-ADA"), IdentityContext(),
                     Match.HOLDS, id="member model: external id from member.external_id"),
        pytest.param(member_model(), Occupant(customer_id=BILLING), IdentityContext(),
                     Match.UNKNOWN, id="member model: billing customer id identifies nobody"),
        pytest.param(member_model(), Occupant(email="bob@acme.test"), IdentityContext(),
                     Match.OTHER, id="member model: someone else's address"),
        pytest.param(member_model(email_on_seat=False), Occupant(email="ada@acme.test"),
                     IdentityContext(), Match.HOLDS,
                     id="member model before 2026-01: email null, member.email"),
        pytest.param(member_model(customer_id=ADA_CUSTOMER), Occupant(customer_id=ADA_CUSTOMER),
                     IdentityContext(), Match.HOLDS,
                     id="member model 2025-12: the holder's own customer id"),
        pytest.param(member_model(), Occupant(email="ada@acme.test", member_id=BOB_MEMBER),
                     IdentityContext(), Match.CONFLICT, id="email agrees, member id differs"),
        pytest.param(member_model(external_id=None), Occupant(external_id="E-ADA"),
                     KNOWN_BILLING, Match.UNKNOWN, id="member without external id: unknown"),
        pytest.param(legacy(), Occupant(email="ada@acme.test"), IdentityContext(),
                     Match.HOLDS, id="legacy since 2026-03: email"),
        pytest.param(legacy(), Occupant(customer_id=ADA_CUSTOMER), IdentityContext(),
                     Match.HOLDS, id="legacy: the holder's own customer id"),
        pytest.param(legacy(), Occupant(customer_id=BOB_CUSTOMER), IdentityContext(),
                     Match.OTHER, id="legacy: another customer"),
        pytest.param(legacy(before_march=True), Occupant(email="ada@acme.test"),
                     KNOWN_BILLING, Match.HOLDS,
                     id="legacy before 2026-03: address only in customer_email"),
        pytest.param(legacy(before_march=True), Occupant(email="ada@acme.test"),
                     IdentityContext(), Match.UNKNOWN,
                     id="no member and billing unknown: customer_email is not trusted"),
        pytest.param(legacy(before_march=True), Occupant(external_id="E-ADA"),
                     KNOWN_BILLING, Match.UNKNOWN,
                     id="legacy external id before it is resolved"),
        pytest.param(legacy(before_march=True), Occupant(external_id="E-ADA"),
                     IdentityContext(BILLING, ADA_CUSTOMER), Match.HOLDS,
                     id="legacy external id resolved to the holder's customer"),
        pytest.param(legacy(before_march=True), Occupant(external_id="E-ADA"),
                     IdentityContext(BILLING, None), Match.OTHER,
                     id="legacy external id Polar does not know"),
        pytest.param(legacy(), Occupant(external_id="E-ADA"),
                     IdentityContext(None, BOB_CUSTOMER), Match.OTHER,
                     id="legacy member without external id: the customer decides"),
    ],
)
def test_judge_holder(seat: CustomerSeat, wanted: Occupant, context: IdentityContext,
                      match: Match) -> None:
    assert judge_holder(seat, wanted, context).match is match


def test_billing_customer_is_the_members_customer() -> None:
    assert billing_customer_of([legacy(before_march=True), legacy(SEAT_B)]) == BILLING
    assert billing_customer_of([legacy(before_march=True)]) is None


@pytest.mark.parametrize(
    ("seats", "wanted", "expected"),
    [
        ([member_model()], Occupant(email="a@b.test"), False),
        ([legacy(before_march=True)], Occupant(email="a@b.test"), True),
        ([legacy(before_march=True)], Occupant(member_id=ADA_MEMBER), False),
        ([legacy(before_march=True), revoked(SEAT_B)], Occupant(customer_id=ADA_CUSTOMER),
         True),
        ([revoked()], Occupant(email="a@b.test"), False),
    ],
)
def test_needs_billing_lookup(seats: list[CustomerSeat], wanted: Occupant,
                              expected: bool) -> None:
    assert needs_billing_lookup(seats, wanted) is expected


def test_needs_external_lookup_only_for_legacy_holders() -> None:
    wanted = Occupant(external_id="E-ADA")
    assert not needs_external_lookup([member_model()], wanted, IdentityContext())
    assert needs_external_lookup([legacy()], wanted, IdentityContext())
    assert not needs_external_lookup([legacy()], wanted, IdentityContext(None, None))
    assert IdentityContext().external_customer == EXTERNAL_UNKNOWN


BOB = member_model(SEAT_B, "bob@acme.test", BOB_MEMBER, "E-BOB")
ADA = member_model()


@pytest.mark.parametrize(
    ("seats", "wanted", "context", "verdict", "seat_id"),
    [
        ([ADA, BOB], Occupant(email="ada@acme.test"), IdentityContext(), Verdict.PROCEED,
         SEAT_A),
        ([ADA, BOB], Occupant(customer_id=BILLING), IdentityContext(), Verdict.REVIEW, None),
        ([BOB], Occupant(email="ada@acme.test"), IdentityContext(), Verdict.NO_ACTIVE_SEAT,
         None),
        ([ADA, member_model(SEAT_B, member_id=BOB_MEMBER)], Occupant(email="ada@acme.test"),
         IdentityContext(), Verdict.REVIEW, None),
        ([legacy(before_march=True), legacy(SEAT_B, "bob@acme.test", BOB_CUSTOMER,
                                            BOB_MEMBER, before_march=True)],
         Occupant(email="ada@acme.test"), KNOWN_BILLING, Verdict.PROCEED, SEAT_A),
        ([revoked(), BOB], Occupant(email="ada@acme.test"), IdentityContext(),
         Verdict.NO_ACTIVE_SEAT, None),
    ],
    ids=["one match", "billing customer alone", "none held", "two seats match",
         "legacy by customer_email", "revoked seats do not count"],
)
def test_locate(seats: list[CustomerSeat], wanted: Occupant, context: IdentityContext,
                verdict: Verdict, seat_id: str | None) -> None:
    decision = locate(seats, wanted, context)
    assert decision.verdict is verdict
    if seat_id is not None:
        assert decision.seat is not None and decision.seat.id == seat_id
    if verdict is Verdict.NO_ACTIVE_SEAT:
        assert decision.verified is True


@pytest.mark.parametrize(
    ("seats", "seat_id", "wanted", "first_delete_at", "verdict", "target", "verified"),
    [
        pytest.param([ADA, BOB], SEAT_A, Occupant(email="ada@acme.test"), None,
                     Verdict.PROCEED, SEAT_A, True, id="held by the person: delete"),
        pytest.param([member_model(email="carol@acme.test", member_id=BOB_MEMBER), BOB],
                     SEAT_A, Occupant(email="ada@acme.test"), None,
                     Verdict.MISMATCH, SEAT_A, True,
                     id="reassigned, person holds nothing there: mismatch, verified"),
        pytest.param([member_model(email="carol@acme.test", member_id=BOB_MEMBER),
                      member_model(SEAT_C)],
                     SEAT_A, Occupant(email="ada@acme.test"), None,
                     Verdict.PROCEED, SEAT_C, True,
                     id="stale seat id, person holds another seat: that one"),
        pytest.param([ADA], SEAT_A, Occupant(customer_id=BILLING), None,
                     Verdict.REVIEW, SEAT_A, None, id="billing customer alone: review"),
        pytest.param([ADA], SEAT_A, Occupant(email="ada@acme.test", member_id=BOB_MEMBER),
                     None, Verdict.REVIEW, SEAT_A, None, id="contradictory fields"),
        pytest.param([ADA, member_model(SEAT_B, member_id=BOB_MEMBER)], SEAT_A,
                     Occupant(email="ada@acme.test"), None, Verdict.REVIEW, SEAT_A, None,
                     id="the person holds two seats"),
        pytest.param([revoked(revoked_at="2026-04-01T12:00:01Z")], SEAT_A,
                     Occupant(email="ada@acme.test"), DELETE_AT, Verdict.REVOKED_BY_US,
                     SEAT_A, True, id="revoked by our earlier DELETE"),
        pytest.param([revoked(), member_model(SEAT_B)], SEAT_A,
                     Occupant(email="ada@acme.test"), None, Verdict.PROCEED, SEAT_B, True,
                     id="already revoked but the person holds another seat"),
        pytest.param([revoked()], SEAT_A, Occupant(email="ada@acme.test"), None,
                     Verdict.ALREADY_REVOKED, SEAT_A, True, id="already revoked"),
        pytest.param([BOB], SEAT_A, Occupant(email="ada@acme.test"), None,
                     Verdict.NOT_FOUND, None, None, id="seat not in the subscription"),
        pytest.param([ADA], SEAT_A, Occupant(), None, Verdict.PROCEED, SEAT_A, None,
                     id="seat id only: delete, nobody to verify"),
    ],
)
def test_decide(seats: list[CustomerSeat], seat_id: str, wanted: Occupant,
                first_delete_at: datetime | None, verdict: Verdict, target: str | None,
                verified: bool | None) -> None:
    decision = decide(seats, seat_id, wanted, IdentityContext(),
                      first_delete_at=first_delete_at, skew=NO_SKEW)
    assert decision.verdict is verdict, decision.why
    assert (decision.seat.id if decision.seat else None) == target
    assert decision.verified is verified


def test_decide_seat_id_only_reassigned_after_ours_is_a_mismatch() -> None:
    decision = decide([ADA], SEAT_A, Occupant(), IdentityContext(), first_delete_at=None,
                      skew=NO_SKEW, reassigned_after_ours=True)
    assert decision.verdict is Verdict.MISMATCH


def test_review_reasons_tell_the_operator_what_to_check() -> None:
    billing = decide([ADA], SEAT_A, Occupant(customer_id=BILLING), IdentityContext(),
                     first_delete_at=None, skew=NO_SKEW)
    assert "billing customer" in billing.why and "identifies nobody" in billing.why
    conflict = decide([ADA], SEAT_A, Occupant(email="ada@acme.test", member_id=BOB_MEMBER),
                      IdentityContext(), first_delete_at=None, skew=NO_SKEW)
    assert "email match" in conflict.why and "member_id differ" in conflict.why


@pytest.mark.parametrize(
    ("revoked_at", "first_delete_at", "skew", "expected"),
    [
        ("2026-04-01T12:00:01Z", DELETE_AT, NO_SKEW, True),
        ("2026-04-01T11:59:59Z", DELETE_AT, NO_SKEW, False),
        ("2026-04-01T11:59:59Z", DELETE_AT, timedelta(seconds=2), True),
        ("2026-04-01T12:00:01Z", None, NO_SKEW, False),
    ],
)
def test_revoked_by_this_job(revoked_at: str, first_delete_at: datetime | None,
                             skew: timedelta, expected: bool) -> None:
    assert revoked_by_this_job(revoked(revoked_at=revoked_at), first_delete_at, skew) is expected


def test_occupant_of_never_reports_the_billing_customer() -> None:
    assert occupant_of(ADA).customer_id is None
    assert occupant_of(legacy()).customer_id == ADA_CUSTOMER
    assert occupant_of(legacy(before_march=True)).email == "ada@acme.test"


# -- the index decides exactly like judging every seat ----------------------------------

_EMAILS = ["ada@acme.test", "bob@acme.test", "ADA@acme.test"]
_IDS = [ADA_MEMBER, BOB_MEMBER]
_CUSTOMERS = [ADA_CUSTOMER, BOB_CUSTOMER, BILLING]


def _any_seat(draw: Any, seat_id: str) -> CustomerSeat:
    shape = draw(st.sampled_from(["member", "member_old", "member_dec", "legacy",
                                  "legacy_old", "revoked", "bare"]))
    email = draw(st.sampled_from(_EMAILS))
    member_id = draw(st.sampled_from(_IDS))
    external = draw(st.sampled_from(["E-ADA", "E-BOB", None]))
    own = draw(st.sampled_from([ADA_CUSTOMER, BOB_CUSTOMER]))
    if shape == "member":
        return member_model(seat_id, email, member_id, external)
    if shape == "member_old":
        return member_model(seat_id, email, member_id, external, email_on_seat=False)
    if shape == "member_dec":
        return member_model(seat_id, email, member_id, external, customer_id=own)
    if shape == "legacy":
        return legacy(seat_id, email, own, member_id)
    if shape == "legacy_old":
        return legacy(seat_id, email, own, before_march=True)
    if shape == "revoked":
        return revoked(seat_id)
    return _body(seat_id, "pending")


@st.composite
def _cases(draw: Any) -> tuple[list[CustomerSeat], Occupant, IdentityContext]:
    count = draw(st.integers(0, 6))
    seats = [_any_seat(draw, f"5a1e0a4c-0000-4000-8000-{n:012d}") for n in range(count)]
    wanted = Occupant(
        email=draw(st.sampled_from([None, *_EMAILS])),
        member_id=draw(st.sampled_from([None, *_IDS])),
        customer_id=draw(st.sampled_from([None, *_CUSTOMERS])),
        external_id=draw(st.sampled_from([None, "E-ADA", "E-BOB"])),
    )
    context = IdentityContext(
        billing_customer_id=draw(st.sampled_from([None, BILLING])),
        external_customer=draw(st.sampled_from([EXTERNAL_UNKNOWN, None, ADA_CUSTOMER,
                                                BOB_CUSTOMER])),
    )
    return seats, wanted, context


@settings(max_examples=400, deadline=None)
@given(_cases())
def test_the_index_skips_only_seats_judged_someone_elses(
    case: tuple[list[CustomerSeat], Occupant, IdentityContext],
) -> None:
    seats, wanted, context = case
    assume(wanted.is_named)
    index = SeatIndex(seats, context.billing_customer_id)
    candidates = {seat.id for seat in index.candidates(wanted, context)}
    for seat in seats:
        if seat.status != "revoked" and seat.id not in candidates:
            assert judge_holder(seat, wanted, context).match is Match.OTHER, seat.id
    assert locate_in(index, wanted, context) == _judge_all(seats, wanted, context)
