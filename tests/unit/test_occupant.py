"""Table-driven tests of seat occupant checks in ``worker.occupant``."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from worker.occupant import (
    Occupant,
    Verdict,
    find_seat,
    find_seat_of,
    judge_seat,
    mismatched_fields,
    occupant_of,
)
from worker.polar import CustomerSeat

SEAT_ID = "5a1e0a4c-0000-4000-8000-000000000001"
OTHER_SEAT_ID = "5a1e0a4c-0000-4000-8000-000000000002"
MEMBER_ID = "11111111-1111-4111-8111-111111111111"
CUSTOMER_ID = "22222222-2222-4222-8222-222222222222"
OTHER_ID = "33333333-3333-4333-8333-333333333333"
SKEW = timedelta(seconds=2)
DELETE_AT = datetime(2026, 4, 1, 12, 0, 0, tzinfo=UTC)


def seat(**fields: Any) -> CustomerSeat:
    body: dict[str, Any] = {
        "id": SEAT_ID,
        "status": "claimed",
        "created_at": "2026-01-01T00:00:00Z",
        "modified_at": "2026-01-02T00:00:00Z",
    }
    body.update(fields)
    return CustomerSeat.model_validate(body)


def member(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": MEMBER_ID,
        "customer_id": CUSTOMER_ID,
        "email": "ada@example.com",
        "name": "Ada",
        "external_id": "emp-42",
        "role": "member",
    }
    body.update(fields)
    return body


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        pytest.param(
            {"email": "ada@example.com", "member_id": MEMBER_ID, "customer_id": CUSTOMER_ID},
            Occupant("ada@example.com", MEMBER_ID, CUSTOMER_ID, None),
            id="flat fields alone give email and ids but no external id",
        ),
        pytest.param(
            {"member": member()},
            Occupant("ada@example.com", MEMBER_ID, CUSTOMER_ID, "emp-42"),
            id="the member object alone gives every field",
        ),
        pytest.param(
            {
                "email": "flat@example.com",
                "member_id": OTHER_ID,
                "customer_id": OTHER_ID,
                "member": member(),
            },
            Occupant("flat@example.com", OTHER_ID, OTHER_ID, "emp-42"),
            id="flat fields win over the member object where both are set",
        ),
        pytest.param(
            {"email": None, "member_id": None, "customer_id": None, "member": None},
            Occupant(None, None, None, None),
            id="a seat without flat fields or member names nobody",
        ),
        pytest.param(
            {"member": member(email=None, external_id=None), "email": "ada@example.com"},
            Occupant("ada@example.com", MEMBER_ID, CUSTOMER_ID, None),
            id="missing member fields fall back to the flat ones",
        ),
    ],
)
def test_occupant_of(fields: dict[str, Any], expected: Occupant) -> None:
    assert occupant_of(seat(**fields)) == expected


def test_occupant_of_an_empty_seat_is_not_named() -> None:
    assert occupant_of(seat()).is_named is False
    assert occupant_of(seat()).as_dict() == {}


SEEN = Occupant("Ada@Example.com", MEMBER_ID, CUSTOMER_ID, "emp-42")


@pytest.mark.parametrize(
    ("seen", "wanted", "wrong"),
    [
        pytest.param(SEEN, Occupant(), [], id="naming nobody confirms nothing and flags nothing"),
        pytest.param(
            SEEN, Occupant(email="ada@example.com"), [], id="email matches case-insensitively"
        ),
        pytest.param(
            SEEN, Occupant(email="ADA@EXAMPLE.COM"), [], id="upper-case email also matches"
        ),
        pytest.param(
            SEEN, Occupant(email="bob@example.com"), ["email"], id="another email is flagged"
        ),
        pytest.param(
            SEEN, Occupant(member_id=OTHER_ID), ["member_id"], id="another member id is flagged"
        ),
        pytest.param(
            SEEN,
            Occupant(customer_id=OTHER_ID),
            ["customer_id"],
            id="another customer id is flagged",
        ),
        pytest.param(
            SEEN,
            Occupant(external_id="emp-7"),
            ["external_id"],
            id="another external id is flagged",
        ),
        pytest.param(
            SEEN,
            Occupant("ada@example.com", MEMBER_ID, CUSTOMER_ID, "emp-42"),
            [],
            id="every field matching flags nothing",
        ),
        pytest.param(
            SEEN,
            Occupant("bob@example.com", OTHER_ID, OTHER_ID, "emp-7"),
            ["email", "member_id", "customer_id", "external_id"],
            id="every field differing flags all four in order",
        ),
        pytest.param(
            Occupant("ada@example.com", MEMBER_ID, CUSTOMER_ID, None),
            Occupant(external_id="emp-42"),
            ["external_id"],
            id="an external id cannot be confirmed without a member object",
        ),
        pytest.param(
            Occupant(),
            Occupant(email="ada@example.com"),
            ["email"],
            id="a seat showing no email does not confirm the email",
        ),
        pytest.param(
            Occupant(email="ada@example.com"),
            Occupant(email="ada@example.com", member_id=MEMBER_ID),
            ["member_id"],
            id="a missing member id on the seat counts as a mismatch",
        ),
    ],
)
def test_mismatched_fields(seen: Occupant, wanted: Occupant, wrong: list[str]) -> None:
    assert mismatched_fields(seen, wanted) == wrong


ADA = Occupant(email="ada@example.com", member_id=MEMBER_ID)
HELD_BY_ADA = {"email": "ada@example.com", "member_id": MEMBER_ID, "customer_id": CUSTOMER_ID}


@pytest.mark.parametrize(
    ("fields", "first_delete_at", "verdict"),
    [
        pytest.param(None, DELETE_AT, Verdict.NOT_FOUND, id="no seat means not found"),
        pytest.param(
            {"status": "revoked", "revoked_at": "2026-03-01T00:00:00Z"},
            DELETE_AT,
            Verdict.ALREADY_REVOKED,
            id="revoked well before our first delete is already revoked",
        ),
        pytest.param(
            {"status": "revoked", "revoked_at": "2026-04-01T11:59:57Z"},
            DELETE_AT,
            Verdict.ALREADY_REVOKED,
            id="revoked just beyond the skew before our first delete is already revoked",
        ),
        pytest.param(
            {"status": "revoked", "revoked_at": "2026-04-01T11:59:58Z"},
            DELETE_AT,
            Verdict.REVOKED_BY_US,
            id="revoked exactly at first delete minus skew is revoked by us",
        ),
        pytest.param(
            {"status": "revoked", "revoked_at": "2026-04-01T12:00:01Z"},
            DELETE_AT,
            Verdict.REVOKED_BY_US,
            id="revoked after our first delete is revoked by us",
        ),
        pytest.param(
            {"status": "revoked", "revoked_at": None},
            DELETE_AT,
            Verdict.REVOKED_BY_US,
            id="revoked without revoked_at after our delete is revoked by us",
        ),
        pytest.param(
            {"status": "revoked", "revoked_at": "2026-04-01T12:00:01Z"},
            None,
            Verdict.ALREADY_REVOKED,
            id="revoked before we ever sent a delete is already revoked",
        ),
        pytest.param(
            {**HELD_BY_ADA, "status": "claimed"},
            None,
            Verdict.PROCEED,
            id="a claimed seat held by the named person proceeds",
        ),
        pytest.param(
            {**HELD_BY_ADA, "status": "pending", "email": "ADA@example.com"},
            DELETE_AT,
            Verdict.PROCEED,
            id="a pending seat held by the named person proceeds",
        ),
        pytest.param(
            {"status": "claimed", "member": member()},
            None,
            Verdict.PROCEED,
            id="a seat showing the person only through member proceeds",
        ),
        pytest.param(
            {**HELD_BY_ADA, "email": "bob@example.com", "member_id": OTHER_ID},
            DELETE_AT,
            Verdict.MISMATCH,
            id="a seat reassigned to someone else is a mismatch",
        ),
        pytest.param(
            {"status": "claimed"},
            None,
            Verdict.MISMATCH,
            id="a seat showing nobody is a mismatch for a named person",
        ),
    ],
)
def test_judge_seat(
    fields: dict[str, Any] | None, first_delete_at: datetime | None, verdict: Verdict
) -> None:
    the_seat = seat(**fields) if fields is not None else None
    got, why = judge_seat(the_seat, ADA, first_delete_at=first_delete_at, skew=SKEW)
    assert got is verdict
    assert why


def test_judge_seat_mismatch_reason_names_the_differing_fields() -> None:
    the_seat = seat(**{**HELD_BY_ADA, "email": "bob@example.com", "member_id": OTHER_ID})
    verdict, why = judge_seat(the_seat, ADA, first_delete_at=None, skew=SKEW)
    assert verdict is Verdict.MISMATCH
    assert "email" in why
    assert "member_id" in why


def make_list() -> list[CustomerSeat]:
    return [
        seat(id=SEAT_ID, status="revoked", revoked_at="2026-03-01T00:00:00Z", member=member()),
        seat(id=OTHER_SEAT_ID, status="claimed", email="bob@example.com", member_id=OTHER_ID),
        seat(
            id="5a1e0a4c-0000-4000-8000-000000000003",
            status="pending",
            email="ada@example.com",
            member_id=MEMBER_ID,
        ),
    ]


@pytest.mark.parametrize(
    ("seat_id", "expected"),
    [
        pytest.param(SEAT_ID, SEAT_ID, id="finds a revoked seat by id"),
        pytest.param(OTHER_SEAT_ID, OTHER_SEAT_ID, id="finds an active seat by id"),
        pytest.param(OTHER_ID, None, id="an unknown id finds nothing"),
    ],
)
def test_find_seat(seat_id: str, expected: str | None) -> None:
    found = find_seat(make_list(), seat_id)
    assert (found.id if found else None) == expected


def test_find_seat_in_an_empty_list_finds_nothing() -> None:
    assert find_seat([], SEAT_ID) is None


@pytest.mark.parametrize(
    ("wanted", "expected"),
    [
        pytest.param(
            Occupant(email="ada@example.com"),
            "5a1e0a4c-0000-4000-8000-000000000003",
            id="skips the revoked seat that once showed the person and finds the active one",
        ),
        pytest.param(
            Occupant(email="BOB@example.com"),
            OTHER_SEAT_ID,
            id="finds the active seat by email case-insensitively",
        ),
        pytest.param(
            Occupant(external_id="emp-42"),
            None,
            id="an external id shown only on a revoked seat finds nothing",
        ),
        pytest.param(
            Occupant(email="carol@example.com"),
            None,
            id="a person holding no seat finds nothing",
        ),
    ],
)
def test_find_seat_of(wanted: Occupant, expected: str | None) -> None:
    found = find_seat_of(make_list(), wanted)
    assert (found.id if found else None) == expected


def test_find_seat_of_ignores_revoked_seats_even_when_they_match() -> None:
    only_revoked = [seat(status="revoked", email="ada@example.com", member_id=MEMBER_ID)]
    assert find_seat_of(only_revoked, ADA) is None
