"""Offboarding a person end to end: the worker finds every seat the person holds in a
scope (the customer's subscriptions and orders, their seat lists) and revokes each through a
guarded child request. The sandbox's own record of revocations proves nobody else lost a
seat."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import uuid
from typing import Any

import pytest

from worker.intake.producer import PersonInput
from worker.sandbox.localstack import LocalStack

pytestmark = pytest.mark.integration


def estate(stack: LocalStack, tag: str) -> dict[str, Any]:
    """One customer with three subscriptions and one order; ada holds a seat in each, bob
    and carol in some; ada also holds a seat at another customer (out of scope)."""
    customer = stack.control.create_customer(f"billing.{tag}@acme.test",
                                             external_id=f"CUST-{tag}")
    ada, bob, carol = (f"{n}.{tag}@acme.test" for n in ("ada", "bob", "carol"))
    subs = [str(uuid.uuid4()) for _ in range(3)]
    order = str(uuid.uuid4())
    specs: list[dict[str, Any]] = []
    for sub in subs:
        specs += [{"subscription_id": sub, "email": ada, "external_id": f"E-ada-{tag}"},
                  {"subscription_id": sub, "email": bob}]
    specs += [{"order_id": order, "email": ada, "external_id": f"E-ada-{tag}"},
              {"order_id": order, "email": carol}]
    seats = stack.control.create_seats(specs, owner_customer_id=customer["id"])
    elsewhere = stack.control.create_seats(
        [{"subscription_id": str(uuid.uuid4()), "email": ada}])
    return {"customer": customer, "ada": ada, "bob": bob,
            "ada_seats": sorted(s["id"] for s in seats if s["email"] == ada),
            "others": sorted(s["id"] for s in seats if s["email"] != ada),
            "elsewhere": elsewhere[0]["id"]}


def offboard(stack: LocalStack, timeout: float = 60.0, **fields: Any) -> Any:
    record = stack.producer.offboard(PersonInput(**fields)).record
    return stack.wait_terminal([record.id], timeout=timeout)[0]


def revoked_seats(stack: LocalStack) -> list[str]:
    return sorted(entry["seat_id"] for entry in stack.control.revocations())


def test_person_loses_every_seat_of_the_customer_and_nobody_else_does(
    sandbox_reset: LocalStack,
) -> None:
    stack = sandbox_reset
    world = estate(stack, uuid.uuid4().hex[:6])
    assert len(world["ada_seats"]) == 4

    parent = offboard(stack, email=world["ada"].upper(), customer_id=world["customer"]["id"],
                      reason="left the company", requested_by="hr")

    assert parent.state == "revoked", parent.outcome_detail
    assert parent.kind == "person" and parent.end_state_verified is True
    assert revoked_seats(stack) == world["ada_seats"]
    assert stack.control.seat(world["elsewhere"])["status"] != "revoked"
    children = stack.producer.store.children_of(parent.id)
    assert sorted(c.seat_id for c in children) == world["ada_seats"]
    assert {c.state for c in children} == {"revoked"}
    assert all(c.end_state_verified and c.requested_by == "hr" for c in children)
    found = parent.discovered
    assert sorted(s["seat_id"] for s in found["seats"]) == world["ada_seats"]
    assert found["reads"][-1]["final"] is True and found["reads"][-1]["found"] == []


def test_by_external_ids_of_person_and_customer(sandbox_reset: LocalStack) -> None:
    stack = sandbox_reset
    tag = uuid.uuid4().hex[:6]
    world = estate(stack, tag)

    parent = offboard(stack, external_id=f"E-ada-{tag}", customer_external_id=f"CUST-{tag}")

    assert parent.state == "revoked", parent.outcome_detail
    assert revoked_seats(stack) == world["ada_seats"]


def test_no_seat_ends_no_active_seat_after_discovery(sandbox_reset: LocalStack) -> None:
    stack = sandbox_reset
    world = estate(stack, uuid.uuid4().hex[:6])

    parent = offboard(stack, email="nobody@acme.test", customer_id=world["customer"]["id"])

    assert parent.state == "no_active_seat", parent.outcome_detail
    assert parent.end_state_verified is True
    assert stack.producer.store.children_of(parent.id) == []
    assert revoked_seats(stack) == []
    routes = stack.control.stats()["by_route"]
    assert any(route.startswith("GET /v1/subscriptions") for route in routes)


def test_unknown_customer_needs_review_and_deletes_nothing(sandbox_reset: LocalStack) -> None:
    stack = sandbox_reset
    estate(stack, uuid.uuid4().hex[:6])
    parent = offboard(stack, email="x@acme.test", customer_external_id="no-such-customer")
    assert parent.state == "needs_review"
    assert "no customer" in (parent.outcome_detail or "")
    assert revoked_seats(stack) == []


def test_replayed_person_request_collapses_to_the_first(sandbox_reset: LocalStack) -> None:
    stack = sandbox_reset
    world = estate(stack, uuid.uuid4().hex[:6])
    person = PersonInput(email=world["ada"], customer_id=world["customer"]["id"])

    first = stack.producer.offboard(person)
    again = stack.producer.offboard(person)
    done = stack.wait_terminal([first.record.id], timeout=60)[0]
    late = stack.producer.offboard(person)

    assert first.created and not again.created and not late.created
    assert again.record.id == late.record.id == first.record.id
    assert done.state == "revoked"
    assert revoked_seats(stack) == world["ada_seats"]
    assert len(stack.producer.store.children_of(done.id)) == 4


def cli(stack: LocalStack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker.cli.main", *args],
        env={**os.environ, **stack.env}, capture_output=True, text=True, timeout=300,
    )


def test_cli_offboard_wait_and_person_report(sandbox_reset: LocalStack) -> None:
    stack = sandbox_reset
    world = estate(stack, uuid.uuid4().hex[:6])

    done = cli(stack, "offboard", "--email", world["ada"], "--customer-id",
               world["customer"]["id"], "--reason", "left", "--wait")
    assert done.returncode == 0, done.stderr
    assert ": revoked" in done.stdout.splitlines()[0]
    assert sum(": revoked" in line for line in done.stdout.splitlines()[1:]) == 4

    as_csv = cli(stack, "report", "--person", world["ada"])
    assert as_csv.returncode == 0, as_csv.stderr
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert sorted(r["seat_id"] for r in rows) == world["ada_seats"]
    assert {r["seat_outcome"] for r in rows} == {"revoked"}
    assert all(r["revoked_at"] and r["seat_verified"] == "True" and r["requested_by"] == "cli"
               for r in rows)
    as_json = json.loads(cli(stack, "report", "--person", world["ada"], "--format",
                             "json").stdout)
    assert as_json[0]["verified"] is True and len(as_json[0]["seats"]) == 4
    status = cli(stack, "status", as_json[0]["request_id"])
    assert status.returncode == 0, status.stderr
    assert "person: every seat in customer" in status.stdout
    assert all(seat in status.stdout for seat in world["ada_seats"])


def test_cli_offboard_refuses_bad_input_and_records_nothing(sandbox_reset: LocalStack) -> None:
    stack = sandbox_reset
    before = stack.producer.store.count_by_state()
    no_scope = cli(stack, "offboard", "--email", "a@acme.test")
    two_scopes = cli(stack, "offboard", "--email", "a@acme.test", "--all-customers",
                     "--customer-external-id", "C1")
    nobody = cli(stack, "offboard", "--all-customers")
    for result in (no_scope, two_scopes, nobody):
        assert result.returncode == 2 and result.stderr.startswith("error:"), result.stderr
    assert "exactly one scope" in no_scope.stderr and "name the person" in nobody.stderr
    assert stack.producer.store.count_by_state() == before


class CountingPolar:
    """Stands in for PolarClient's listing call (counts it)."""

    def __init__(self) -> None:
        self.calls = 0

    def list_containers(self, kind: str, **_: Any) -> list[Any]:
        from worker.polar.seats import CustomerRef

        self.calls += 1
        return [CustomerRef(id=f"{kind}-{self.calls}", customer_id="c")]


def test_shared_reads_serve_only_requests_that_may_see_them(redis_url: str) -> None:
    import time as clock

    from redis import Redis

    from worker.jobs.seatlists import SeatLists

    polar = CountingPolar()
    lists = SeatLists(Redis.from_url(redis_url), f"t-{uuid.uuid4().hex}", polar)  # type: ignore[arg-type]
    before = clock.time()

    first = lists.containers("subscription", customer_id="c", external_customer_id=None,
                             share_in="batch", after=before)
    again = lists.containers("subscription", customer_id="c", external_customer_id=None,
                             share_in="batch", after=before)
    later = lists.containers("subscription", customer_id="c", external_customer_id=None,
                             share_in="batch", after=clock.time() + 0.001)

    assert first == again and polar.calls == 2, "a read older than `after` is not reused"
    assert later[0][0] == "subscription-2"


def test_a_seat_assigned_while_the_seats_are_revoked_is_found_by_the_final_read(
    sandbox_reset: LocalStack,
) -> None:
    import time as clock

    stack = sandbox_reset
    tag = uuid.uuid4().hex[:6]
    customer = stack.control.create_customer(f"billing.{tag}@acme.test")
    ada = f"ada.{tag}@acme.test"
    first = stack.control.create_seats(
        [{"subscription_id": str(uuid.uuid4()), "email": ada}],
        owner_customer_id=customer["id"])
    stack.control.add_fault(method="DELETE", latency_ms=700)  # keeps the children running
    record = stack.producer.offboard(PersonInput(email=ada, customer_id=customer["id"])).record
    deadline = clock.monotonic() + 30
    while not stack.producer.store.children_of(record.id):
        assert clock.monotonic() < deadline
        clock.sleep(0.02)
    late = stack.control.create_seats(  # assigned after discovery, before the final read
        [{"subscription_id": str(uuid.uuid4()), "email": ada}],
        owner_customer_id=customer["id"])

    parent = stack.wait_terminal([record.id], timeout=60)[0]

    assert parent.state == "revoked", parent.outcome_detail
    assert parent.discovered["rounds"] == 3
    assert [s["round"] for s in parent.discovered["seats"]] == [1, 2]
    assert revoked_seats(stack) == sorted([first[0]["id"], late[0]["id"]])


def test_a_person_request_needing_review_can_be_retried_once_fixed(
    sandbox_reset: LocalStack,
) -> None:
    stack = sandbox_reset
    tag = uuid.uuid4().hex[:6]
    ada = f"ada.{tag}@acme.test"
    parent = offboard(stack, email=ada, customer_external_id=f"LATER-{tag}")
    assert parent.state == "needs_review"

    customer = stack.control.create_customer(f"b.{tag}@acme.test", external_id=f"LATER-{tag}")
    seat = stack.control.create_seats([{"subscription_id": str(uuid.uuid4()), "email": ada}],
                                      owner_customer_id=customer["id"])[0]
    stack.producer.retry(parent.id)
    again = stack.wait_terminal([parent.id], timeout=60)[0]

    assert again.state == "revoked", again.outcome_detail
    assert revoked_seats(stack) == [seat["id"]]


@pytest.mark.parametrize("by", ["email", "external_id"])
def test_legacy_organization_person_by_address_or_external_id(
    sandbox_reset: LocalStack, by: str,
) -> None:
    """Member model off, seats from before March 2026: no member, no email on the seat; the
    address is only in customer_email and the external id only on the holder's own
    customer."""
    stack = sandbox_reset
    stack.control.configure(member_model_enabled=False)
    tag = uuid.uuid4().hex[:6]
    billing = stack.control.create_customer(f"billing.{tag}@acme.test")
    ada, bob = f"ada.{tag}@acme.test", f"bob.{tag}@acme.test"
    specs = [{"subscription_id": sub, "email": email, "external_id": f"E-{email[:3]}-{tag}",
              "variant": "legacy_before_2026_03"}
             for sub in (str(uuid.uuid4()), str(uuid.uuid4())) for email in (ada, bob)]
    seats = stack.control.create_seats(specs, owner_customer_id=billing["id"])
    assert all(s["email"] is None and s["member"] is None for s in seats)
    person = {"email": ada} if by == "email" else {"external_id": f"E-ada-{tag}"}

    parent = offboard(stack, customer_id=billing["id"], **person)

    assert parent.state == "revoked", parent.outcome_detail
    assert revoked_seats(stack) == sorted(s["id"] for s in seats if s["customer_email"] == ada)


def test_whole_organization_scope_reaches_every_customer(sandbox_reset: LocalStack) -> None:
    stack = sandbox_reset
    world = estate(stack, uuid.uuid4().hex[:6])

    parent = offboard(stack, email=world["ada"], all_customers=True)

    assert parent.state == "revoked", parent.outcome_detail
    assert revoked_seats(stack) == sorted([*world["ada_seats"], world["elsewhere"]])


def wait_for(check: Any, what: str, timeout: float = 30.0) -> Any:
    import time as clock

    deadline = clock.monotonic() + timeout
    while not (found := check()):
        assert clock.monotonic() < deadline, f"never: {what}"
        clock.sleep(0.02)
    return found


def test_cancelling_a_person_mid_way_cancels_its_unsent_children_and_spares_their_seats(
    sandbox_reset: LocalStack,
) -> None:
    """Eight seats, two worker processes, each DELETE slowed: the operator cancels once the
    first DELETE is on its way. What had sent its DELETE finishes (revoked, honestly); every
    other child ends cancelled with the operator's name, its seat untouched at Polar, and
    the person request makes no new child on its later looks."""
    import time as clock

    from worker.jobs.person import WAIT_SECONDS

    stack = sandbox_reset
    store = stack.producer.store
    tag = uuid.uuid4().hex[:6]
    customer = stack.control.create_customer(f"billing.{tag}@acme.test")
    ada = f"ada.{tag}@acme.test"
    seats = stack.control.create_seats(
        [{"subscription_id": str(uuid.uuid4()), "email": ada} for _ in range(8)],
        owner_customer_id=customer["id"])
    stack.control.add_fault(method="DELETE", latency_ms=700, times=1000)
    record = stack.producer.offboard(PersonInput(email=ada, customer_id=customer["id"])).record
    wait_for(lambda: any(c.first_delete_at for c in store.children_of(record.id)),
             "a child sent its DELETE")

    cancelled = stack.producer.cancel(record.id, actor="ops:ana")

    assert cancelled.state == "cancelled"
    children = stack.wait_terminal([c.id for c in store.children_of(record.id)], timeout=60)
    sent = [c for c in children if c.first_delete_at is not None]
    stopped = [c for c in children if c.state == "cancelled"]
    assert len(children) == 8 and sent and len(stopped) >= 4, [c.state for c in children]
    assert len(sent) + len(stopped) == 8, "every child either sent its DELETE or was stopped"
    assert {c.state for c in sent} == {"revoked"}
    assert revoked_seats(stack) == sorted(str(c.seat_id) for c in sent)
    for child in stopped:
        assert stack.control.seat(str(child.seat_id))["status"] != "revoked"
        last = store.history(child.id)[-1]
        assert last.state == "cancelled" and last.detail is not None
        assert last.detail["by"] == "ops:ana" and last.detail["person_request"] == record.id
    note = stack.producer.cancel_note(cancelled)
    assert note.startswith(f"{len(stopped)} seat request(s) cancelled with it"), note
    clock.sleep(WAIT_SECONDS + 1.5)  # the person request's next look, had it one
    after = store.get(record.id)
    assert after is not None and after.state == "cancelled"
    assert len(store.children_of(record.id)) == 8
    assert revoked_seats(stack) == sorted(str(c.seat_id) for c in sent)
    assert len(seats) == 8


def test_a_person_cancelled_while_it_discovers_makes_no_child(
    sandbox_reset: LocalStack,
) -> None:
    """Cancelled while running (its seat-list reads slowed): cancellable, and its discovery,
    once done, records no child and revokes nothing."""
    import time as clock

    stack = sandbox_reset
    store = stack.producer.store
    tag = uuid.uuid4().hex[:6]
    customer = stack.control.create_customer(f"billing.{tag}@acme.test")
    ada = f"ada.{tag}@acme.test"
    seat = stack.control.create_seats([{"subscription_id": str(uuid.uuid4()), "email": ada}],
                                      owner_customer_id=customer["id"])[0]
    stack.control.add_fault(method="GET", latency_ms=600, times=1000)
    record = stack.producer.offboard(PersonInput(email=ada, customer_id=customer["id"])).record
    wait_for(lambda: store.get(record.id).state == "running",  # type: ignore[union-attr]
             "the person request running")

    cancelled = stack.producer.cancel(record.id, actor="ops:ana")

    assert cancelled.state == "cancelled"
    gets = wait_for(lambda: sum(n for route, n in stack.control.stats()["by_route"].items()
                                if "customer-seats" in route and route.startswith("GET")),
                    "the discovery read the seat list", timeout=30)
    assert gets >= 1
    clock.sleep(2.0)  # discovery returns and would record children now
    after = store.get(record.id)
    assert after is not None and after.state == "cancelled"
    assert store.children_of(record.id) == []
    assert revoked_seats(stack) == [] and stack.control.seat(seat["id"])["status"] != "revoked"
