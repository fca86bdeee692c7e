"""PersonInput, person batch rows and the webhook's scope: bad input is refused with the
field named, good input keeps its person and scope (table tests, no I/O)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from pydantic import ValidationError

from worker.api.offboarding import MappingError, OffboardingEvent, to_requests
from worker.intake.batchfile import BatchFileError, parse_batch
from worker.intake.requests import PersonInput, RevocationInput

CUSTOMER = str(uuid.uuid4())

REFUSED = [
    ({"customer_id": CUSTOMER}, "name the person"),
    ({"email": "a@acme.com"}, "exactly one scope"),
    ({"email": "a@acme.com", "customer_id": CUSTOMER, "all_customers": True},
     "exactly one scope"),
    ({"email": "a@acme.com", "customer_id": "nope"}, "not a UUID"),
    ({"email": "not-an-address", "all_customers": True}, "not an email address"),
    ({"member_id": str(uuid.uuid1()), "all_customers": True}, "UUID version 4"),
    ({"email": "a@acme.com", "all_customers": True, "seat_id": CUSTOMER}, "Extra inputs"),
]


@pytest.mark.parametrize(("fields", "message"), REFUSED)
def test_person_input_refuses(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        PersonInput(**fields)
    assert message in str(caught.value)


def test_key_follows_person_and_scope_not_case() -> None:
    a = PersonInput(email="Jane@Acme.com", customer_id=CUSTOMER)
    b = PersonInput(email="jane@acme.com", customer_id=CUSTOMER)
    c = PersonInput(email="jane@acme.com", all_customers=True)
    assert a.idempotency_key() == b.idempotency_key() != c.idempotency_key()
    assert a.idempotency_key().startswith("auto:person:")
    seat = RevocationInput(subscription_id=CUSTOMER, email="jane@acme.com")
    assert seat.idempotency_key() != a.idempotency_key()


def test_batch_rows_without_a_seat_are_person_rows() -> None:
    parsed = parse_batch(
        (f"email,customer_id,subscription_id\n"
         f"a@acme.com,{CUSTOMER},\n"
         f"b@acme.com,,{CUSTOMER}\n").encode(), fmt="csv")
    person, seat = parsed.requests
    assert isinstance(person, PersonInput) and person.customer_id == CUSTOMER
    assert isinstance(seat, RevocationInput) and seat.subscription_id == CUSTOMER


def test_batch_person_row_with_a_guard_is_refused() -> None:
    with pytest.raises(BatchFileError, match="guard: not for a person row"):
        parse_batch(b'{"email": "a@acme.com", "all_customers": true, "guard": false}\n',
                    fmt="jsonl")


def event(**data: Any) -> OffboardingEvent:
    return OffboardingEvent.model_validate({"type": "employee.offboarded", "data": {
        "person": {"email": "jane@acme.com"}, **data}})


def test_webhook_scope_makes_one_person_request() -> None:
    (request,) = to_requests(event(scope={"customer_external_id": "acme"}), "msg_1")
    assert isinstance(request, PersonInput)
    assert request.customer_external_id == "acme" and request.key == to_requests(
        event(scope={"customer_external_id": "acme"}), "msg_1")[0].key


@pytest.mark.parametrize("data", [
    {},
    {"scope": {"all_customers": True}, "targets": [{"order_id": CUSTOMER}]},
])
def test_webhook_needs_targets_or_a_scope(data: dict[str, Any]) -> None:
    with pytest.raises(ValidationError, match="targets"):
        event(**data)


def test_webhook_scope_with_a_holder_customer_is_refused() -> None:
    bad = OffboardingEvent.model_validate({"type": "employee.offboarded", "data": {
        "person": {"customer_id": CUSTOMER}, "scope": {"all_customers": True}}})
    with pytest.raises(MappingError):
        to_requests(bad, "msg_2")
