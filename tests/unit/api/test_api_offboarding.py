"""Mapping of employee.offboarded events to revocation requests (pure logic)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from pydantic import ValidationError

from worker.api.offboarding import (
    REQUESTED_BY,
    MappingError,
    OffboardingEvent,
    idempotency_key,
    to_requests,
)

SEAT, SUB, ORDER = (str(uuid.uuid4()) for _ in range(3))


def event(targets: list[dict[str, Any]], **data: Any) -> OffboardingEvent:
    person = data.pop("person", {"email": "jane@acme.com", "external_id": "E-1042"})
    return OffboardingEvent.model_validate(
        {"type": "employee.offboarded",
         "data": {"person": person, "targets": targets, "reason": "termination", **data}}
    )


def test_each_target_becomes_one_request_with_a_derived_key() -> None:
    requests = to_requests(
        event([{"seat_id": SEAT, "subscription_id": SUB}, {"order_id": ORDER}]), "msg_1"
    )
    assert [r.key for r in requests] == [idempotency_key("msg_1", 0), idempotency_key("msg_1", 1)]
    guarded, by_container = requests
    assert (guarded.seat_id, guarded.subscription_id, guarded.email) == (SEAT, SUB, "jane@acme.com")
    assert guarded.external_id == "E-1042"
    assert (by_container.seat_id, by_container.order_id) == (None, ORDER)
    assert by_container.email == "jane@acme.com"
    assert all(r.requested_by == REQUESTED_BY and r.reason == "termination" for r in requests)


def test_keys_differ_between_deliveries_and_stay_printable() -> None:
    a = idempotency_key("msg_1", 0)
    assert a != idempotency_key("msg_2", 0) != idempotency_key("msg_1", 1)
    weird = idempotency_key("id with spaces ü " * 30, 3)
    assert weird.isascii() and " " not in weird and len(weird) < 200


def test_seat_only_target_keeps_the_person_and_leaves_the_guard_to_the_producer() -> None:
    # Accepted here whatever the store knows: the producer guards it through the seat's
    # known subscription/order, or refuses it (the webhook then answers 422).
    (request,) = to_requests(event([{"seat_id": SEAT}]), "msg_1")
    assert request.seat_id == SEAT and request.subscription_id is None
    assert (request.email, request.external_id) == ("jane@acme.com", "E-1042")
    assert request.guard is True
    assert request.reason == "termination"


def test_guard_false_opts_one_target_out_of_the_occupant_check() -> None:
    unguarded, guarded = to_requests(
        event([{"seat_id": SEAT, "guard": False}, {"seat_id": SEAT, "subscription_id": SUB}]),
        "msg_1",
    )
    assert (unguarded.seat_id, unguarded.guard, unguarded.email) == (SEAT, False, "jane@acme.com")
    assert guarded.guard is True and guarded.subscription_id == SUB


def test_member_and_customer_ids_go_with_every_target() -> None:
    person = {"member_id": str(uuid.uuid4()), "customer_id": str(uuid.uuid4())}
    for request in to_requests(
        event([{"seat_id": SEAT}, {"order_id": ORDER}], person=person), "msg_1"
    ):
        assert (request.member_id, request.customer_id) == (person["member_id"],
                                                            person["customer_id"])


def test_guard_alone_is_not_a_target() -> None:
    with pytest.raises(ValidationError, match="target needs seat_id"):
        event([{"guard": False}])


def test_a_non_boolean_guard_is_refused_at_its_place() -> None:
    with pytest.raises(ValidationError) as caught:
        event([{"seat_id": SEAT, "guard": "sometimes"}])
    assert caught.value.errors()[0]["loc"] == ("data", "targets", 0, "guard")


def test_effective_at_is_kept() -> None:
    (request,) = to_requests(
        event([{"subscription_id": SUB}], effective_at="2030-01-02T03:04:05Z"), "m"
    )
    assert request.effective_at is not None
    assert request.effective_at.isoformat() == "2030-01-02T03:04:05+00:00"


@pytest.mark.parametrize(
    ("targets", "person", "field"),
    [
        ([{"seat_id": "not-a-uuid"}], None, "seat_id"),
        ([{"subscription_id": SUB, "order_id": ORDER}], None, "targets"),
        ([{"subscription_id": SUB}], {"email": "not an email"}, "email"),
    ],
)
def test_invalid_targets_name_the_field(
    targets: list[dict[str, Any]], person: dict[str, Any] | None, field: str
) -> None:
    kwargs = {"person": person} if person else {}
    with pytest.raises(MappingError) as caught:
        to_requests(event(targets, **kwargs), "msg_1")
    assert any(field in map(str, error["loc"]) for error in caught.value.errors)


@pytest.mark.parametrize(
    "body",
    [
        {"type": "employee.offboarded", "data": {"person": {}, "targets": [{"seat_id": SEAT}]}},
        {"type": "employee.offboarded", "data": {"person": {"email": "a@b.co"}, "targets": []}},
        {"type": "employee.offboarded", "data": {"person": {"email": "a@b.co"},
                                                  "targets": [{"seat": SEAT}]}},
        {"type": "employee.offboarded", "data": {"person": {"email": "a@b.co"},
                                                  "targets": [{}]}},
        {"type": "employee.offboarded",
         "data": {"person": {"email": "a@b.co"}, "targets": [{"seat_id": SEAT}],
                  "effective_at": "2030-01-01T00:00:00"}},  # no timezone
    ],
    ids=["anonymous person", "no targets", "unknown target field", "empty target", "naive"],
)
def test_malformed_events_fail_validation(body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        OffboardingEvent.model_validate(body)
