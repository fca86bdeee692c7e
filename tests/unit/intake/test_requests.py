"""Table-driven tests of producer input validation in ``worker.intake.requests``."""

from __future__ import annotations

import re
from typing import Any

import pytest
from pydantic import ValidationError

from worker.decisions.identity import Occupant
from worker.intake.requests import RevocationInput

SEAT = "5a1e0a4c-0000-4000-8000-000000000001"
SUB = "6b2f1b5d-0000-4000-8000-000000000002"
ORDER = "7c302c6e-0000-4000-8000-000000000003"
MEMBER = "8d413d7f-0000-4000-8000-000000000004"
CUSTOMER = "9e524e80-0000-4000-8000-000000000005"


@pytest.mark.parametrize(
    "fields",
    [
        pytest.param({"seat_id": SEAT}, id="a seat id alone is enough"),
        pytest.param(
            {"seat_id": SEAT, "subscription_id": SUB, "email": "ada@example.com"},
            id="a seat id with its subscription and person is valid",
        ),
        pytest.param(
            {"subscription_id": SUB, "email": "ada@example.com"},
            id="a subscription plus an email is valid",
        ),
        pytest.param(
            {"order_id": ORDER, "member_id": MEMBER}, id="an order plus a member id is valid"
        ),
        pytest.param(
            {"subscription_id": SUB, "customer_id": CUSTOMER},
            id="a subscription plus a customer id is valid",
        ),
        pytest.param(
            {"order_id": ORDER, "external_id": "emp-42"},
            id="an order plus an external id is valid",
        ),
        pytest.param(
            {"seat_id": SEAT, "mode": "customer_portal", "key": "hr-123", "reason": "left"},
            id="customer portal mode with a key and reason is valid",
        ),
        pytest.param(
            {"seat_id": SEAT, "email": "", "external_id": "", "key": "", "order_id": ""},
            id="empty strings count as absent",
        ),
        pytest.param(
            {"seat_id": SEAT, "email": "ada@example.com"},
            id="a seat id and the person: the producer finds the subscription/order",
        ),
        pytest.param({"seat_id": SEAT, "guard": False}, id="a seat id opting out of the guard"),
    ],
)
def test_valid_forms(fields: dict[str, Any]) -> None:
    request = RevocationInput(**fields)
    for name, value in fields.items():
        assert getattr(request, name) == (value if isinstance(value, bool) else value or None)


def test_defaults() -> None:
    request = RevocationInput(seat_id=SEAT)
    assert request.mode == "organization"
    assert request.key is None
    assert request.occupant == Occupant()


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        pytest.param({"seat_id": "seat-1"}, "seat_id", "is not a UUID", id="a bad seat id"),
        pytest.param({"seat_id": "6ba7b810-9dad-11d1-80b4-00c04fd430c8"}, "seat_id",
                     "is not a UUID version 4", id="a UUID v1 seat id (Polar answers 422)"),
        pytest.param({"seat_id": "5a1e0a4c-0000-4000-8000-000000000001",
                      "order_id": "6ba7b810-9dad-11d1-80b4-00c04fd430c8"}, "order_id",
                     "is not a UUID version 4", id="a UUID v1 order id"),
        pytest.param(
            {"subscription_id": "sub_1", "email": "ada@example.com"},
            "subscription_id",
            "is not a UUID",
            id="a bad subscription id",
        ),
        pytest.param(
            {"order_id": "12345", "email": "ada@example.com"},
            "order_id",
            "is not a UUID",
            id="a bad order id",
        ),
        pytest.param(
            {"subscription_id": SUB, "member_id": "mem"},
            "member_id",
            "is not a UUID",
            id="a bad member id",
        ),
        pytest.param(
            {"subscription_id": SUB, "customer_id": SEAT + "0"},
            "customer_id",
            "is not a UUID",
            id="a customer id one digit too long",
        ),
        pytest.param(
            {"subscription_id": SUB, "email": "ada.example.com"},
            "email",
            "is not an email address",
            id="an email without an at sign",
        ),
        pytest.param(
            {"subscription_id": SUB, "email": "ada@localhost"},
            "email",
            "is not an email address",
            id="an email without a domain dot",
        ),
        pytest.param(
            {"subscription_id": SUB, "email": "a da@example.com"},
            "email",
            "is not an email address",
            id="an email with a space",
        ),
        pytest.param(
            {"seat_id": SEAT, "subscription_id": SUB, "order_id": ORDER},
            None,
            "give subscription_id or order_id, not both",
            id="both subscription and order",
        ),
        pytest.param({}, None, "give seat_id, or subscription_id/order_id", id="nothing at all"),
        pytest.param(
            {"subscription_id": SUB},
            None,
            "give seat_id, or subscription_id/order_id plus the person",
            id="a subscription without a person",
        ),
        pytest.param(
            {"seat_id": SEAT, "seat": SEAT},
            "seat",
            "Extra inputs are not permitted",
            id="an unknown field",
        ),
        pytest.param(
            {"seat_id": SEAT, "key": "hr ticket 7"},
            "key",
            "should match pattern",
            id="a key with spaces",
        ),
        pytest.param(
            {"seat_id": SEAT, "mode": "portal"},
            "mode",
            "organization",
            id="an unknown mode",
        ),
    ],
)
def test_invalid_forms(fields: dict[str, Any], field: str | None, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        RevocationInput(**fields)
    errors = info.value.errors()
    assert len(errors) == 1
    if field is not None:
        assert errors[0]["loc"] == (field,)
    assert message in errors[0]["msg"]
    assert message in str(info.value)


@pytest.mark.parametrize(
    "given",
    [
        pytest.param(SEAT.upper(), id="upper case"),
        pytest.param(SEAT.replace("-", ""), id="without hyphens"),
        pytest.param("{" + SEAT.upper() + "}", id="in braces"),
        pytest.param(f"  {SEAT}  ", id="with surrounding spaces"),
    ],
)
def test_uuids_are_normalised_to_lowercase_canonical(given: str) -> None:
    request = RevocationInput(
        seat_id=given,
        subscription_id=given,
        member_id=given,
        customer_id=given,
    )
    assert request.seat_id == SEAT
    assert request.subscription_id == SEAT
    assert request.member_id == SEAT
    assert request.customer_id == SEAT


def key_of(**fields: Any) -> str:
    return RevocationInput(**fields).idempotency_key()


BASE = {"seat_id": SEAT, "subscription_id": SUB, "email": "ada@example.com"}


def test_derived_key_is_stable_and_shaped() -> None:
    key = key_of(**BASE)
    assert re.fullmatch(r"auto:[0-9a-f]{40}", key)
    assert key == key_of(**BASE)
    # Pinned: a change here changes the dedup key of every request already stored.
    assert key == "auto:3ce73d5db46259e81ab0fda09272e2d9199499c2"


@pytest.mark.parametrize(
    ("left", "right"),
    [
        pytest.param(
            BASE, {**BASE, "email": "ADA@Example.COM"}, id="email case does not change the key"
        ),
        pytest.param(
            BASE,
            {**BASE, "seat_id": SEAT.upper()},
            id="seat id spelling does not change the key",
        ),
        pytest.param(
            {"subscription_id": SUB, "member_id": MEMBER},
            {"subscription_id": SUB, "member_id": MEMBER.upper()},
            id="member id spelling does not change the key",
        ),
        pytest.param(
            {**BASE, "reason": "left"},
            {**BASE, "reason": "fired", "requested_by": "hr"},
            id="reason and requester do not change the key",
        ),
    ],
)
def test_same_seat_and_person_share_a_key(left: dict[str, Any], right: dict[str, Any]) -> None:
    assert key_of(**left) == key_of(**right)


@pytest.mark.parametrize(
    ("left", "right"),
    [
        pytest.param(
            BASE, {**BASE, "email": "bob@example.com"}, id="another email gives another key"
        ),
        pytest.param(
            {**BASE, "member_id": MEMBER},
            {**BASE, "member_id": CUSTOMER},
            id="another member id gives another key",
        ),
        pytest.param(
            BASE,
            {**BASE, "seat_id": "5a1e0a4c-0000-4000-8000-0000000000ff"},
            id="another seat gives another key",
        ),
        pytest.param(
            {"subscription_id": SUB, "email": "ada@example.com"},
            {"subscription_id": ORDER, "email": "ada@example.com"},
            id="the same person in another subscription gives another key",
        ),
        pytest.param(
            {"seat_id": SEAT},
            {"seat_id": SEAT, "mode": "customer_portal"},
            id="another mode gives another key",
        ),
        pytest.param(
            {"seat_id": SEAT},
            {"seat_id": SEAT, "subscription_id": SUB, "email": "ada@example.com"},
            id="naming the person gives another key than the bare seat",
        ),
    ],
)
def test_different_person_or_seat_gets_another_key(
    left: dict[str, Any], right: dict[str, Any]
) -> None:
    assert key_of(**left) != key_of(**right)


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        pytest.param("hr-ticket-7", "hr-ticket-7", id="the producer key is used as given"),
        pytest.param("  hr-ticket-7 ", "hr-ticket-7", id="the producer key is stripped"),
        pytest.param("", None, id="an empty producer key falls back to the derived one"),
    ],
)
def test_producer_key_wins(key: str, expected: str | None) -> None:
    got = key_of(**BASE, key=key)
    if expected is None:
        assert got == key_of(**BASE)
        assert got.startswith("auto:")
    else:
        assert got == expected
