"""SCIM 2.0 as identity providers drive it: provision users for a customer, deactivate them
with Okta's and Entra ID's payload shapes, and every seat those people held in that
customer is revoked (nobody else's). Real worker processes and the sandbox over HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from worker.api import create_app
from worker.api.settings import ApiSettings
from worker.sandbox.localstack import LocalStack
from worker.store.scim import create_tenant

pytestmark = pytest.mark.integration

SCIM_JSON = "application/scim+json"
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


@pytest.fixture
def client(sandbox_reset: LocalStack) -> Iterator[TestClient]:
    app = create_app(sandbox_reset.settings, producer=sandbox_reset.producer,
                     api_settings=ApiSettings(_env_file=None))  # type: ignore[call-arg]
    with TestClient(app) as test_client:
        yield test_client


def company(stack: LocalStack, people: list[str]) -> dict[str, Any]:
    """A customer with two subscriptions and an order; each person holds a seat in each;
    each person also holds a seat at another customer."""
    tag = uuid.uuid4().hex[:6]
    customer = stack.control.create_customer(f"billing.{tag}@acmecorp.com",
                                             external_id=f"C-{tag}")
    containers = [{"subscription_id": str(uuid.uuid4())}, {"subscription_id": str(uuid.uuid4())},
                  {"order_id": str(uuid.uuid4())}]
    emails = {p: f"{p}.{tag}@acmecorp.com" for p in people}
    specs = [{**c, "email": e} for c in containers for e in emails.values()]
    seats = stack.control.create_seats(specs, owner_customer_id=customer["id"])
    other = stack.control.create_seats(
        [{"subscription_id": str(uuid.uuid4()), "email": e} for e in emails.values()])
    by_person = {p: sorted(s["id"] for s in seats if s["email"] == e) for p, e in emails.items()}
    return {"customer": customer, "emails": emails, "seats": by_person,
            "other": [s["id"] for s in other]}


def tenant_token(stack: LocalStack, customer_id: str) -> str:
    return create_tenant(stack.producer.store, customer_id=customer_id).token


def headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": SCIM_JSON}


def okta_user(email: str) -> dict[str, Any]:
    return {"schemas": [USER_SCHEMA], "userName": email, "active": True,
            "name": {"givenName": "A", "familyName": "B"},
            "emails": [{"primary": True, "value": email, "type": "work"}],
            "displayName": "A B", "locale": "en-US", "externalId": "00u1okta",
            "groups": [], "password": "never-kept-1!"}


def entra_user(email: str) -> dict[str, Any]:
    return {"schemas": [USER_SCHEMA, ENTERPRISE], "externalId": "8a1f-entra",
            "userName": email, "active": True,
            "emails": [{"primary": True, "type": "work", "value": email}],
            "meta": {"resourceType": "User"},
            "name": {"formatted": "A B", "familyName": "B", "givenName": "A"},
            "roles": [], ENTERPRISE: {"employeeNumber": "701984", "department": "Sales"}}


def revoked(stack: LocalStack) -> list[str]:
    return sorted(entry["seat_id"] for entry in stack.control.revocations())


def wait_offboarded(stack: LocalStack, request_id: str) -> Any:
    return stack.wait_terminal([request_id], timeout=60)[0]


def test_okta_and_entra_deactivation_revoke_every_seat_of_the_user(
    sandbox_reset: LocalStack, client: TestClient,
) -> None:
    stack = sandbox_reset
    world = company(stack, ["okta", "entra", "stays"])
    token = tenant_token(stack, world["customer"]["id"])
    auth = headers(token)

    ids = {}
    for name, body in (("okta", okta_user(world["emails"]["okta"])),
                       ("entra", entra_user(world["emails"]["entra"])),
                       ("stays", okta_user(world["emails"]["stays"]))):
        created = client.post("/scim/v2/Users", json=body, headers=auth)
        assert created.status_code == 201, created.text
        assert created.headers["content-type"].startswith(SCIM_JSON)
        assert "password" not in created.json()
        ids[name] = created.json()["id"]
    assert revoked(stack) == [], "creating a user assigns and revokes nothing"
    with stack.producer.store.engine.connect() as conn:
        from sqlalchemy import text
        kept = [row[0] for row in conn.execute(text("SELECT resource FROM scim_users"))]
    assert kept and "never-kept-1!" not in json.dumps(kept, default=str), "no password"

    # Okta: a path-less replace with a value object.
    okta = client.patch(f"/scim/v2/Users/{ids['okta']}", headers=auth, json={
        "schemas": [PATCH_SCHEMA],
        "Operations": [{"op": "replace", "value": {"active": False}}]})
    # Entra ID: "Replace" capitalised, the boolean as a string.
    entra = client.patch(f"/scim/v2/Users/{ids['entra']}", headers=auth, json={
        "schemas": [PATCH_SCHEMA],
        "Operations": [{"op": "Replace", "path": "active", "value": "False"}]})
    for answer in (okta, entra):
        assert answer.status_code == 200, answer.text
        assert answer.json()["active"] is False
    parents = [wait_offboarded(stack, a.headers["Seat-Revoker-Offboarding"])
               for a in (okta, entra)]

    assert [p.state for p in parents] == ["revoked", "revoked"], [p.outcome_detail
                                                                  for p in parents]
    assert revoked(stack) == sorted(world["seats"]["okta"] + world["seats"]["entra"])
    assert all(stack.control.seat(s)["status"] != "revoked" for s in world["other"])
    assert parents[0].requested_by.startswith("scim:")

    # The same deactivation again (a provider's retry) offboards nobody new.
    again = client.patch(f"/scim/v2/Users/{ids['okta']}", headers=auth, json={
        "schemas": [PATCH_SCHEMA],
        "Operations": [{"op": "replace", "value": {"active": False}}]})
    assert again.status_code == 200 and "Seat-Revoker-Offboarding" not in again.headers

    # Reactivation re-assigns nothing, and says so.
    back = client.patch(f"/scim/v2/Users/{ids['okta']}", headers=auth, json={
        "schemas": [PATCH_SCHEMA], "Operations": [{"op": "replace", "path": "active",
                                                   "value": True}]})
    assert back.status_code == 200 and back.json()["active"] is True
    assert "not re-assigned" in back.headers["Seat-Revoker-Notice"]

    # The proof, by SCIM user id: every seat, its revocation, who asked.
    report = subprocess.run(
        [sys.executable, "-m", "worker.cli.main", "report", "--person", ids["entra"], "--format",
         "json"], env={**os.environ, **stack.env}, capture_output=True, text=True,
        timeout=120)
    assert report.returncode == 0, report.stderr
    (proof,) = json.loads(report.stdout)
    assert proof["verified"] is True and proof["requested_by"].startswith("scim:")
    assert sorted(seat["seat_id"] for seat in proof["seats"]) == world["seats"]["entra"]
    assert all(seat["state"] == "revoked" and seat["revoked_at"] for seat in proof["seats"])


def test_put_and_delete_offboard_and_filters_find_users(
    sandbox_reset: LocalStack, client: TestClient,
) -> None:
    stack = sandbox_reset
    world = company(stack, ["put", "gone"])
    auth = headers(tenant_token(stack, world["customer"]["id"]))
    users = {}
    for name in ("put", "gone"):
        response = client.post("/scim/v2/Users", json=okta_user(world["emails"][name]),
                               headers=auth)
        users[name] = response.json()

    for query in (f'userName eq "{world["emails"]["put"].upper()}"',
                  'externalId eq "00u1okta"',
                  f'emails[type eq "work"].value eq "{world["emails"]["put"]}"'):
        listed = client.get("/scim/v2/Users", params={"filter": query}, headers=auth).json()
        assert users["put"]["id"] in [r["id"] for r in listed["Resources"]], query
    page = client.get("/scim/v2/Users", params={"startIndex": 2, "count": 1},
                      headers=auth).json()
    assert page["totalResults"] == 2 and page["startIndex"] == 2
    assert page["itemsPerPage"] == 1 and page["Resources"][0]["id"] == users["gone"]["id"]

    body = {**okta_user(world["emails"]["put"]), "active": False}
    put = client.put(f"/scim/v2/Users/{users['put']['id']}", json=body, headers=auth)
    gone = client.delete(f"/scim/v2/Users/{users['gone']['id']}", headers=auth)
    assert put.status_code == 200 and gone.status_code == 204
    for answer in (put, gone):
        parent = wait_offboarded(stack, answer.headers["Seat-Revoker-Offboarding"])
        assert parent.state == "revoked", parent.outcome_detail
    assert revoked(stack) == sorted(world["seats"]["put"] + world["seats"]["gone"])
    assert client.get(f"/scim/v2/Users/{users['gone']['id']}",
                      headers=auth).status_code == 404


def test_another_tenants_token_sees_nothing_of_this_tenant(
    sandbox_reset: LocalStack, client: TestClient,
) -> None:
    stack = sandbox_reset
    world = company(stack, ["ada"])
    mine = headers(tenant_token(stack, world["customer"]["id"]))
    theirs = headers(tenant_token(stack, str(uuid.uuid4())))
    user = client.post("/scim/v2/Users", json=okta_user(world["emails"]["ada"]),
                       headers=mine).json()
    path = f"/scim/v2/Users/{user['id']}"

    assert client.get("/scim/v2/Users", headers=theirs).json()["totalResults"] == 0
    assert client.get("/scim/v2/Users", params={
        "filter": f'userName eq "{world["emails"]["ada"]}"'}, headers=theirs
    ).json()["Resources"] == []
    for call in (client.get(path, headers=theirs), client.delete(path, headers=theirs),
                 client.patch(path, headers=theirs, json={
                     "schemas": [PATCH_SCHEMA],
                     "Operations": [{"op": "replace", "value": {"active": False}}]})):
        assert call.status_code == 404
        assert call.json()["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
    time.sleep(0.5)
    assert revoked(stack) == []
    assert client.get(path, headers=mine).json()["active"] is True


def test_scim_errors_are_scim_bodies_with_their_scim_type(
    sandbox_reset: LocalStack, client: TestClient, capsys: pytest.CaptureFixture[str],
) -> None:
    stack = sandbox_reset
    token = tenant_token(stack, str(uuid.uuid4()))
    auth = headers(token)
    email = f"{uuid.uuid4().hex[:8]}@acmecorp.com"
    first = client.post("/scim/v2/Users", json=okta_user(email), headers=auth)
    assert first.status_code == 201
    created_id = first.json()["id"]

    cases = [
        (client.get("/scim/v2/Users"), 401, None),
        (client.get("/scim/v2/Users", headers=headers("srscim_wrong")), 401, None),
        (client.post("/scim/v2/Users", json=okta_user(email.upper()), headers=auth), 409,
         "uniqueness"),
        (client.get("/scim/v2/Users", params={"filter": "userName eq"}, headers=auth), 400,
         "invalidFilter"),
        (client.post("/scim/v2/Users", content=b"{not json", headers=auth), 400,
         "invalidSyntax"),
        (client.patch(f"/scim/v2/Users/{created_id}", json={
            "schemas": [PATCH_SCHEMA], "Operations": [{"op": "bogus", "path": "active",
                                                       "value": False}]},
            headers=auth), 400, "invalidValue"),
        (client.post("/scim/v2/Users", json={"schemas": [USER_SCHEMA]}, headers=auth), 400,
         None),
        (client.post("/scim/v2/ServiceProviderConfig", json={}, headers=auth), 405, None),
        (client.get("/scim/v2/Groups", headers=auth), 404, None),
        (client.get(f"/scim/v2/Users/{uuid.uuid4()}", headers=auth), 404, None),
    ]
    for response, status, scim_type in cases:
        assert response.status_code == status, response.text
        body = response.json()
        assert body["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
        assert str(body["status"]) == str(status)
        if scim_type is not None or status != 400:
            assert body.get("scimType") == scim_type, body
    assert token not in json.dumps([c[0].text for c in cases])
    logged = capsys.readouterr()
    assert "scim.auth_failed" in logged.out + logged.err
    assert token not in logged.out + logged.err and "srscim_wrong" not in logged.out
    assert token not in stack.logs()


def test_cli_creates_a_tenant_and_shows_its_token_once(sandbox_reset: LocalStack,
                                                      client: TestClient) -> None:
    stack = sandbox_reset
    customer = str(uuid.uuid4())
    done = subprocess.run(
        [sys.executable, "-m", "worker.cli.main", "scim-tenant", "create", "--customer-id",
         customer, "--json"], env={**os.environ, **stack.env}, capture_output=True,
        text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    token = json.loads(done.stdout)["token"]
    config = client.get("/scim/v2/ServiceProviderConfig", headers=headers(token))
    assert config.status_code == 200 and config.json()["patch"]["supported"] is True
    listed = subprocess.run([sys.executable, "-m", "worker.cli.main", "scim-tenant", "list"],
                            env={**os.environ, **stack.env}, capture_output=True, text=True,
                            timeout=120)
    assert customer in listed.stdout and token not in listed.stdout
    with stack.producer.store.engine.connect() as conn:
        from sqlalchemy import text
        stored = [row[0] for row in conn.execute(text("SELECT token_hash FROM scim_tenants"))]
    assert token not in stored and all(len(h) == 64 for h in stored)
    bad = subprocess.run([sys.executable, "-m", "worker.cli.main", "scim-tenant", "create",
                          "--customer-id", "nope"], env={**os.environ, **stack.env},
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "UUID" in bad.stderr


def test_deactivating_a_user_without_an_address_needs_review(
    sandbox_reset: LocalStack, client: TestClient,
) -> None:
    stack = sandbox_reset
    auth = headers(tenant_token(stack, str(uuid.uuid4())))
    user = client.post("/scim/v2/Users", json={"schemas": [USER_SCHEMA], "userName": "jdoe42",
                                               "active": True}, headers=auth).json()
    answer = client.patch(f"/scim/v2/Users/{user['id']}", headers=auth, json={
        "schemas": [PATCH_SCHEMA], "Operations": [{"op": "replace", "value": {"active": False}}]})
    assert answer.status_code == 200
    record = stack.producer.store.get(answer.headers["Seat-Revoker-Offboarding"])
    assert record is not None and record.kind == "person"
    assert record.state == "needs_review" and "no email address" in (record.outcome_detail or "")


def test_retrying_a_user_without_an_address_still_needs_review(
    sandbox_reset: LocalStack, client: TestClient,
) -> None:
    """A retry runs the person request for real this time: it still names no one, so it
    ends needs_review again, not no_active_seat "verified", and asks Polar nothing."""
    stack = sandbox_reset
    customer = stack.control.create_customer(f"billing.{uuid.uuid4().hex[:6]}@acmecorp.com")
    stack.control.create_seats([{"subscription_id": str(uuid.uuid4()),
                                 "email": f"someone.{uuid.uuid4().hex[:6]}@acmecorp.com"}],
                               owner_customer_id=customer["id"])
    auth = headers(tenant_token(stack, customer["id"]))
    user = client.post("/scim/v2/Users", json={"schemas": [USER_SCHEMA], "userName": "jdoe43",
                                               "active": True}, headers=auth).json()
    answer = client.patch(f"/scim/v2/Users/{user['id']}", headers=auth, json={
        "schemas": [PATCH_SCHEMA], "Operations": [{"op": "replace", "value": {"active": False}}]})
    request_id = answer.headers["Seat-Revoker-Offboarding"]
    before = stack.control.stats()["by_route"]

    retried = subprocess.run([sys.executable, "-m", "worker.cli.main", "retry", request_id],
                             env={**os.environ, **stack.env}, capture_output=True, text=True,
                             timeout=120)
    assert retried.returncode == 0, retried.stderr
    again = stack.wait_terminal([request_id], timeout=60)[0]

    assert again.state == "needs_review", again.outcome_detail
    assert again.end_state_verified is None and "names no one" in (again.outcome_detail or "")
    assert again.attempts >= 1  # it ran, and decided the same
    assert stack.producer.store.children_of(request_id) == []
    assert stack.control.revocations() == []
    assert stack.control.stats()["by_route"] == before
    again_once_more = stack.producer.retry(request_id)
    assert again_once_more.state == "queued"
    assert stack.wait_terminal([request_id], timeout=60)[0].state == "needs_review"
