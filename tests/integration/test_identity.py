"""The right person in both kinds of Polar organization, end to end.

Producer → Redis → real worker processes → the sandbox over HTTP → the record store. The
sandbox stores seats the way Polar does (polarsource/polar
``server/polar/customer_seat/service.py``): with the member model on, ``customer_id`` is
the billing customer on every seat; in legacy organizations it is the holder's own
customer, and seats from before March 2026 show the address only in ``customer_email``.
The sandbox's own record of every revocation proves nobody but the person named lost a
seat.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from pydantic import SecretStr

from worker.intake.producer import RevocationInput, UnguardedRequest
from worker.sandbox.localstack import LocalStack

pytestmark = pytest.mark.integration

PEOPLE = ("ada", "bob", "carol", "dan")


def team(stack: LocalStack, variant: str = "current", **extra: Any) -> dict[str, dict[str, Any]]:
    """Four people with a seat each in one new subscription; name → seat body."""
    subscription_id = str(uuid.uuid4())
    tag = uuid.uuid4().hex[:6]
    specs = [
        {"subscription_id": subscription_id, "email": f"{name}.{tag}@acme.test",
         "external_id": f"E-{name}-{tag}", "name": name.title(), "variant": variant, **extra}
        for name in PEOPLE
    ]
    return dict(zip(PEOPLE, stack.control.create_seats(specs), strict=True))


def submit(stack: LocalStack, timeout: float = 30.0, **fields: Any) -> Any:
    record = stack.producer.submit(RevocationInput(**fields)).record
    return stack.wait_terminal([record.id], timeout=timeout)[0]


def revoked_seats(stack: LocalStack) -> list[str]:
    """Seat ids the sandbox revoked since its last reset, from its own counters."""
    return sorted(entry["seat_id"] for entry in stack.control.revocations())


def deletes(stack: LocalStack) -> int:
    return int(stack.control.stats()["by_route"].get("DELETE /v1/customer-seats", 0))


def test_member_model_by_email_member_id_and_external_id(sandbox_reset: LocalStack) -> None:
    stack = sandbox_reset
    seats = team(stack)
    sub = seats["ada"]["subscription_id"]
    assert seats["ada"]["customer_id"] == seats["bob"]["customer_id"], "billing customer"

    ada = submit(stack, subscription_id=sub, email=seats["ada"]["email"].upper())
    bob = submit(stack, subscription_id=sub, member_id=seats["bob"]["member_id"])
    carol = submit(stack, subscription_id=sub, external_id=seats["carol"]["member"]["external_id"])

    for record, name in ((ada, "ada"), (bob, "bob"), (carol, "carol")):
        assert record.state == "revoked", record.outcome_detail
        assert record.seat_id == seats[name]["id"]
        assert record.end_state_verified is True and record.verified_at is not None
    assert revoked_seats(stack) == sorted(seats[n]["id"] for n in ("ada", "bob", "carol"))
    assert stack.control.seat(seats["dan"]["id"])["status"] == "claimed"


def test_member_model_billing_customer_alone_never_deletes(sandbox_reset: LocalStack) -> None:
    stack = sandbox_reset
    seats = team(stack)
    sub, billing = seats["ada"]["subscription_id"], seats["ada"]["customer_id"]

    by_container = submit(stack, subscription_id=sub, customer_id=billing)
    by_seat = submit(stack, seat_id=seats["bob"]["id"], subscription_id=sub, customer_id=billing)

    for record in (by_container, by_seat):
        assert record.state == "needs_review"
        assert "billing customer" in (record.outcome_detail or "")
        assert record.end_state_verified is None
    assert deletes(stack) == 0 and revoked_seats(stack) == []


def test_contradictory_fields_need_review_and_can_be_retried(sandbox_reset: LocalStack) -> None:
    stack = sandbox_reset
    seats = team(stack)
    ada = seats["ada"]
    record = submit(stack, seat_id=ada["id"], subscription_id=ada["subscription_id"],
                    email=ada["email"], member_id=seats["bob"]["member_id"])
    assert record.state == "needs_review"
    assert "member_id differ" in (record.outcome_detail or "")
    assert deletes(stack) == 0

    retried = stack.producer.retry(record.id)
    assert retried.state == "queued"
    again = stack.wait_terminal([record.id], timeout=30)[0]
    assert again.state == "needs_review" and deletes(stack) == 0


def test_legacy_holder_by_email_only_in_customer_email(sandbox_reset: LocalStack) -> None:
    stack = sandbox_reset
    stack.control.configure(member_model_enabled=False)
    seats = team(stack, variant="legacy_before_2026_03")
    ada = seats["ada"]
    assert ada["email"] is None and ada["member"] is None and ada["customer_email"]

    record = submit(stack, subscription_id=ada["subscription_id"], email=ada["customer_email"])

    assert record.state == "revoked", record.outcome_detail
    assert record.seat_id == ada["id"] and record.end_state_verified is True
    assert revoked_seats(stack) == [ada["id"]]


def test_legacy_holder_by_external_id(sandbox_reset: LocalStack) -> None:
    stack = sandbox_reset
    stack.control.configure(member_model_enabled=False)
    seats = team(stack, variant="legacy_before_2026_03")
    bob = seats["bob"]
    external_id = next(c["external_id"] for c in stack.control.customers()
                       if c["id"] == bob["customer_id"])

    record = submit(stack, subscription_id=bob["subscription_id"], external_id=external_id)

    assert record.state == "revoked", record.outcome_detail
    assert revoked_seats(stack) == [bob["id"]]
    routes = stack.control.stats()["by_route"]
    assert any(route.startswith("GET /v1/customers/external") for route in routes), routes


def test_legacy_current_seats_by_customer_id(sandbox_reset: LocalStack) -> None:
    stack = sandbox_reset
    stack.control.configure(member_model_enabled=False)
    seats = team(stack)
    carol = seats["carol"]
    assert carol["customer_id"] != carol["member"]["customer_id"], "holder's own customer"

    record = submit(stack, subscription_id=carol["subscription_id"],
                    customer_id=carol["customer_id"])

    assert record.state == "revoked", record.outcome_detail
    assert revoked_seats(stack) == [carol["id"]]


def test_stale_seat_id_revokes_the_seat_the_person_holds(sandbox_reset: LocalStack) -> None:
    stack = sandbox_reset
    seats = team(stack)
    ada, sub = seats["ada"], seats["ada"]["subscription_id"]
    # Ada's old seat went to a newcomer (same row, same id); Ada holds another one now.
    stack.control.revoke(ada["id"])
    newcomer = stack.control.assign("newcomer@acme.test", subscription_id=sub)
    assert newcomer["id"] == ada["id"]
    again = stack.control.assign(ada["email"], subscription_id=sub)
    assert again["id"] != ada["id"]
    before = revoked_seats(stack)

    record = submit(stack, seat_id=ada["id"], subscription_id=sub, email=ada["email"])

    assert record.state == "revoked", record.outcome_detail
    assert record.requested_seat_id == ada["id"] and record.seat_id == again["id"]
    assert record.end_state_verified is True
    assert revoked_seats(stack) == sorted([*before, again["id"]])
    assert stack.control.seat(ada["id"])["email"] == "newcomer@acme.test"


def test_reassigned_seat_with_the_person_gone_is_a_verified_mismatch(
    sandbox_reset: LocalStack,
) -> None:
    stack = sandbox_reset
    seats = team(stack)
    ada, sub = seats["ada"], seats["ada"]["subscription_id"]
    stack.control.revoke(ada["id"])
    stack.control.assign("newcomer@acme.test", subscription_id=sub)
    before = revoked_seats(stack)

    record = submit(stack, seat_id=ada["id"], subscription_id=sub, email=ada["email"])

    assert record.state == "occupant_mismatch"
    assert record.end_state_verified is True
    assert revoked_seats(stack) == before


def test_seat_id_alone_is_refused_unless_known_or_opted_out(sandbox_reset: LocalStack) -> None:
    stack = sandbox_reset
    seats = team(stack)
    stranger = seats["ada"]["id"]

    stored = stack.store.count_by_state()
    with pytest.raises(UnguardedRequest, match="add subscription_id or order_id"):
        stack.producer.submit(RevocationInput(seat_id=stranger, reason="offboarding"))
    assert stack.store.count_by_state() == stored, "a refused request writes nothing"

    unguarded = submit(stack, seat_id=stranger, guard=False)
    assert unguarded.state == "revoked" and unguarded.guarded is False
    assert unguarded.end_state_verified is None

    # A seat this system has seen is guarded through the subscription it was seen in.
    known = seats["bob"]
    submit(stack, subscription_id=known["subscription_id"], email=known["email"])
    stack.control.assign("successor@acme.test", subscription_id=known["subscription_id"])
    replay = submit(stack, seat_id=known["id"], key=f"replay-{known['id']}")
    assert replay.guarded is True
    assert replay.subscription_id == known["subscription_id"]
    assert replay.state in ("occupant_mismatch", "already_revoked")
    assert revoked_seats(stack) == sorted([stranger, known["id"]])


def test_expired_portal_session_fails_with_a_way_forward(sandbox_reset: LocalStack) -> None:
    stack = sandbox_reset
    billing = str(uuid.uuid4())
    seat = stack.control.create_seats(
        [{"subscription_id": str(uuid.uuid4()), "email": "leaver@acme.test"}],
        owner_customer_id=billing,
    )[0]
    expired = stack.control.customer_session(billing, ttl_seconds=1)
    time.sleep(1.5)

    first = stack.producer.submit(
        RevocationInput(seat_id=seat["id"], subscription_id=seat["subscription_id"],
                        email="leaver@acme.test", mode="customer_portal"),
        portal_token=SecretStr(expired),
    ).record
    failed = stack.wait_terminal([first.id], timeout=30)[0]
    assert failed.state == "failed" and failed.last_http_status == 401
    assert "expire after one hour" in (failed.outcome_detail or "")
    assert expired not in str(failed.to_dict())

    fresh = stack.control.customer_session(billing)
    stack.producer.retry(first.id, portal_token=SecretStr(fresh))
    done = stack.wait_terminal([first.id], timeout=30)[0]
    assert done.state == "revoked"
    assert revoked_seats(stack) == [seat["id"]]
