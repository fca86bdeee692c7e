"""The circuit breaker as an identity provider gone wrong meets it: a SCIM tenant
deactivates 30 of a customer's 40 users (Okta's and Entra ID's payloads). Exactly the limit
is revoked — counted by the sandbox, not by us — the rest is held, the breaker is open in
``status`` and ``held``; ``release`` revokes every held seat once, ``reject`` cancels them
and leaves their seats alone. A single termination in a quiet customer is never held.
Real worker processes, the sandbox over HTTP, SQLite and PostgreSQL; the product's limits
(5 seats, or 20 % of the customer's active seats, per hour)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from tests.integration.test_scim import PATCH_SCHEMA, entra_user, headers, okta_user
from worker.api import create_app
from worker.api.settings import ApiSettings
from worker.decisions.outcomes import State
from worker.sandbox.localstack import LocalStack
from worker.store.scim import create_tenant

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def brake_stack(stack_database: str | None, redis_url: str,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with LocalStack(workdir=tmp_path_factory.mktemp("brake"), database_url=stack_database,
                    redis_url=redis_url, breaker_limits={}) as local:
        local.add_worker(concurrency=2)
        yield local


API_KEY = "breaker-ops-key-" + "7" * 24


@pytest.fixture
def client(brake_stack: LocalStack) -> Iterator[TestClient]:
    app = create_app(brake_stack.settings, producer=brake_stack.producer,
                     api_settings=ApiSettings(  # type: ignore[call-arg]
                         _env_file=None, api_keys=f"ops-bob:{API_KEY}"))
    with TestClient(app) as test_client:
        yield test_client


def signed_in(client: TestClient) -> TestClient:
    login = client.post("/dashboard/login", data={"api_key": API_KEY}, follow_redirects=False)
    assert login.status_code == 303
    return client


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found
    return found.group(1)


def cli(stack: LocalStack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "worker.cli.main", *args],
                          env={**os.environ, **stack.env}, capture_output=True, text=True,
                          timeout=120)


def customer_of_40(stack: LocalStack) -> dict[str, Any]:
    """A customer whose 40 users each hold one seat of one subscription."""
    tag = uuid.uuid4().hex[:6]
    customer = stack.control.create_customer(f"billing.{tag}@acmecorp.com")
    subscription = str(uuid.uuid4())
    emails = [f"u{i:02d}.{tag}@acmecorp.com" for i in range(40)]
    seats = stack.control.create_seats(
        [{"subscription_id": subscription, "email": e} for e in emails],
        owner_customer_id=customer["id"])
    return {"customer": customer, "emails": emails, "subscription": subscription,
            "seat_of": {s["email"]: s["id"] for s in seats}}


def deactivate(client: TestClient, token: str, emails: list[str]) -> list[str]:
    """Provision each user, then deactivate it: Okta's payload for even ones, Entra's for
    odd ones. The person requests the deactivations made."""
    auth = headers(token)
    parents = []
    for i, email in enumerate(emails):
        body = okta_user(email) if i % 2 == 0 else entra_user(email)
        body["externalId"] = f"ext-{uuid.uuid4().hex[:8]}"
        created = client.post("/scim/v2/Users", json=body, headers=auth)
        assert created.status_code == 201, created.text
        patch = ({"schemas": [PATCH_SCHEMA],
                  "Operations": [{"op": "replace", "value": {"active": False}}]}
                 if i % 2 == 0 else
                 {"schemas": [PATCH_SCHEMA],
                  "Operations": [{"op": "Replace", "path": "active", "value": "False"}]})
        answer = client.patch(f"/scim/v2/Users/{created.json()['id']}", json=patch,
                              headers=auth)
        assert answer.status_code == 200, answer.text
        parents.append(answer.headers["Seat-Revoker-Offboarding"])
    return parents


def settle(stack: LocalStack, parents: list[str], *, revoked: int, held: int,
           timeout: float = 90.0) -> dict[str, int]:
    """Wait until the children of ``parents`` are ``revoked`` revoked and ``held`` held."""
    deadline = time.monotonic() + timeout
    counts: Counter[str] = Counter()
    while time.monotonic() < deadline:
        counts = Counter(child.state for p in parents
                         for child in stack.store.children_of(p))
        if counts["revoked"] >= revoked and counts["held"] >= held:
            time.sleep(1.0)  # nothing more may move: a second look
            again = Counter(child.state for p in parents
                            for child in stack.store.children_of(p))
            assert again == counts, (counts, again)
            return dict(counts)
        time.sleep(0.3)
    raise AssertionError(f"never settled: {dict(counts)}")


def revoked_in_sandbox(stack: LocalStack, seat_ids: set[str]) -> list[str]:
    return [e["seat_id"] for e in stack.control.revocations() if e["seat_id"] in seat_ids]


def test_thirty_of_forty_deactivated_revokes_the_limit_holds_the_rest_and_release_revokes_them_once(
    brake_stack: LocalStack, client: TestClient, tmp_path: Path,
) -> None:
    stack = brake_stack
    world = customer_of_40(stack)
    seats = set(world["seat_of"].values())
    scope = f"customer:{world['customer']['id']}"
    token = create_tenant(stack.store, customer_id=world["customer"]["id"]).token
    parents = deactivate(client, token, world["emails"][:30])

    # 20 % of 40 active seats is 8 (more than the floor of 5): 8 revoked, 22 held.
    counts = settle(stack, parents, revoked=8, held=22)
    assert counts == {"revoked": 8, "held": 22}
    assert len(revoked_in_sandbox(stack, seats)) == 8, "the sandbox saw exactly 8 DELETEs"
    untouched = {world["seat_of"][e] for e in world["emails"][30:]}
    assert all(stack.control.seat(s)["status"] != "revoked" for s in untouched)

    status = cli(stack, "status")
    assert status.returncode == 5, status.stdout + status.stderr
    assert "breaker OPEN" in status.stdout and scope in status.stdout
    assert "22 held" in status.stdout
    listed = [json.loads(line) for line in cli(stack, "held", "--json").stdout.splitlines()]
    assert len(listed) == 22 and {h["scope"] for h in listed} == {scope}
    assert all("held at the breaker" in h["detail"] for h in listed)
    # A person whose seat is held stays in flight, and says so.
    time.sleep(1.0)
    held_parent = stack.store.get(listed[0]["parent_id"])
    assert held_parent is not None and held_parent.state in ("retrying", "running", "queued")
    assert "held at the breaker" in (held_parent.outcome_detail or "")

    metrics = client.get("/metrics").text
    assert f'seat_revoker_breaker_open{{scope="{scope}"}} 1.0' in metrics
    assert "seat_revoker_held_requests 22.0" in metrics
    rest = client.get("/v1/breaker", headers={"Authorization": f"Bearer {API_KEY}"}).json()
    assert [b["scope"] for b in rest["open"]] == [scope] and rest["open"][0]["held"] == 22
    assert rest["open"][0]["limit"] == 8
    page = signed_in(client).get("/dashboard").text
    assert 'id="breaker-open"' in page and scope in page
    detail = client.get("/dashboard/breaker", params={"scope": scope}).text
    assert detail.count('data-state="held"') == 22
    assert world["emails"][29] in detail or any(e in detail for e in world["emails"][:30])

    released = cli(stack, "release", scope)
    assert released.returncode == 0, released.stderr
    assert "released 22" in released.stdout and f"breaker closed: {scope}" in released.stdout
    finals = stack.wait_terminal(parents, timeout=120)
    assert {p.state for p in finals} == {"revoked"}, [p.outcome_detail for p in finals]
    deletes = revoked_in_sandbox(stack, seats)
    assert len(deletes) == 30 and len(set(deletes)) == 30, "every held seat revoked once"
    assert all(stack.control.seat(s)["status"] != "revoked" for s in untouched)
    history = stack.store.history(listed[0]["id"])
    assert any((e.detail or {}).get("released", {}).get("by", "").startswith("cli")
               for e in history), "the release names who released"


def test_reject_cancels_the_held_requests_and_leaves_their_seats(
    brake_stack: LocalStack, client: TestClient,
) -> None:
    stack = brake_stack
    world = customer_of_40(stack)
    seats = set(world["seat_of"].values())
    scope = f"customer:{world['customer']['id']}"
    token = create_tenant(stack.store, customer_id=world["customer"]["id"]).token
    parents = deactivate(client, token, world["emails"][:30])
    settle(stack, parents, revoked=8, held=22)

    # Another termination of that customer while its breaker is open: held at once, and
    # `revoke --wait` says so (exit 5) instead of waiting out its timeout.
    email = world["emails"][35]
    one = cli(stack, "revoke", world["seat_of"][email], "--subscription-id",
              world["subscription"], "--email", email, "--wait", "--timeout", "60")
    assert one.returncode == 5, one.stdout + one.stderr
    assert "held at the circuit breaker" in one.stderr

    # Rejected from the dashboard's button: the signed-in key's name is who rejected.
    page = signed_in(client).get("/dashboard/breaker").text
    answer = client.post("/dashboard/breaker/reject", data={"target": scope,
                                                            "csrf": csrf_of(page)},
                         follow_redirects=False)
    assert answer.status_code == 303 and "23" in answer.headers["location"]
    children = [c for p in parents for c in stack.store.children_of(p)]
    cancelled = [c for c in children if c.state == "cancelled"]
    assert len(cancelled) == 22
    single = [r for r in stack.store.find(states=[State.CANCELLED], limit=10_000)
              if r.seat_id == world["seat_of"][email]]
    assert len(single) == 1 and "rejected at the breaker" in (single[0].outcome_detail or "")
    assert all("rejected at the breaker by dashboard:ops-bob" in (c.outcome_detail or "")
               for c in cancelled)
    time.sleep(2.0)
    assert len(revoked_in_sandbox(stack, seats)) == 8, "no held seat was revoked"
    assert all(stack.control.seat(str(c.seat_id))["status"] != "revoked" for c in cancelled)
    assert scope not in cli(stack, "status").stdout, "the rejected scope's breaker closed"
    finals = stack.wait_terminal(parents, timeout=90)
    assert Counter(p.state for p in finals) == {"revoked": 8, "cancelled": 22}
    assert all("rejected at the breaker" in (p.outcome_detail or "")
               for p in finals if p.state == "cancelled")


def test_a_single_termination_in_a_quiet_customer_is_never_held(
    brake_stack: LocalStack, client: TestClient,
) -> None:
    stack = brake_stack
    world = customer_of_40(stack)
    token = create_tenant(stack.store, customer_id=world["customer"]["id"]).token
    (parent,) = deactivate(client, token, world["emails"][:1])
    (final,) = stack.wait_terminal([parent], timeout=60)
    assert final.state == "revoked", final.outcome_detail
    assert revoked_in_sandbox(stack, {world["seat_of"][world["emails"][0]]})


@pytest.fixture(scope="module")
def racing_stack(stack_database: str | None, redis_url: str,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """Two nodes of two processes each; the organization may lose 12 seats per window."""
    with LocalStack(workdir=tmp_path_factory.mktemp("race"), database_url=stack_database,
                    redis_url=redis_url, breaker_limits={"breaker_org_max": 12}) as local:
        local.add_worker(concurrency=2, name="n1")
        local.add_worker(concurrency=2, name="n2")
        yield local


def test_two_nodes_racing_a_batch_and_scim_never_revoke_one_seat_over_the_limit(
    racing_stack: LocalStack,
) -> None:
    from worker.intake.requests import RevocationInput

    stack = racing_stack
    app = create_app(stack.settings, producer=stack.producer,
                     api_settings=ApiSettings(_env_file=None))  # type: ignore[call-arg]
    a, b = customer_of_40(stack), customer_of_40(stack)
    token = create_tenant(stack.store, customer_id=a["customer"]["id"]).token
    batch_rows = [RevocationInput(seat_id=w["seat_of"][e], email=e,
                                  subscription_id=w["subscription"])
                  for w in (b, a) for e in w["emails"][:15]]
    with TestClient(app) as client:
        batch = stack.producer.submit_batch(batch_rows, name="race")
        parents = deactivate(client, token, a["emails"][15:30])
    seats_a, seats_b = set(a["seat_of"].values()), set(b["seat_of"].values())
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        rows = [stack.store.get(i) for i in batch.request_ids]
        children = [c for p in parents for c in stack.store.children_of(p)]
        states = Counter(str(r.state) for r in [*rows, *children] if r is not None)
        if states["revoked"] + states["held"] == 30 + len(children) and len(children) == 15:
            break
        time.sleep(0.3)
    time.sleep(1.0)
    deletes = stack.control.revocations()
    of_a = [d for d in deletes if d["seat_id"] in seats_a]
    of_b = [d for d in deletes if d["seat_id"] in seats_b]
    # The organization's 12, never one more; each customer within its 8 (20 % of 40).
    assert len(of_a) + len(of_b) == 12, (len(of_a), len(of_b), states)
    assert len(of_a) <= 8 and len(of_b) <= 8
    assert states["revoked"] == 12 and states["held"] == 33, states
    assert len({d["seat_id"] for d in deletes}) == len(deletes), "no seat revoked twice"
