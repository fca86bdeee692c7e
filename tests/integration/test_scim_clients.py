"""The SCIM endpoint driven over the network by a real SCIM client library (scim2-client)
and checked by a SCIM compliance checker (scim2-tester), against the real app served by
uvicorn, with real worker processes and the sandbox behind it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from scim2_client.client import BaseSyncSCIMClient
from scim2_models import PatchOp, PatchOperation, SearchRequest
from scim2_tester import Status, check_server

from worker.api import create_app
from worker.api.background_server import BackgroundServer
from worker.api.settings import ApiSettings
from worker.sandbox.localstack import LocalStack
from worker.store.scim import create_tenant

pytestmark = pytest.mark.integration


class HttpxSCIMClient(BaseSyncSCIMClient):
    """scim2-client's network engine, over httpx (its own engine targets httpx2)."""

    def __init__(self, client: httpx.Client, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.client = client

    def _stays_under_base_url(self, endpoint: str) -> bool:
        base = self.client.base_url
        try:
            url = self.client.build_request("GET", endpoint).url
        except httpx.InvalidURL:
            return False
        return ((url.scheme, url.host, url.port) == (base.scheme, base.host, base.port)
                and url.raw_path.startswith(base.raw_path))

    def _parse_json(self, response: Any) -> Any:
        return response.json()

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return self.client.request(method, url, **kwargs)


@pytest.fixture
def served(sandbox_reset: LocalStack) -> Iterator[str]:
    app = create_app(sandbox_reset.settings, producer=sandbox_reset.producer,
                     api_settings=ApiSettings(_env_file=None))  # type: ignore[call-arg]
    server = BackgroundServer(app, name="api").start()
    try:
        yield server.url
    finally:
        server.stop()


def scim_client(url: str, token: str) -> HttpxSCIMClient:
    http = httpx.Client(base_url=f"{url}/scim/v2/",
                        headers={"Authorization": f"Bearer {token}"}, timeout=30)
    client = HttpxSCIMClient(http)
    client.discover()
    return client


def test_scim_client_create_filter_deactivate_revokes_the_seats(
    sandbox_reset: LocalStack, served: str,
) -> None:
    stack = sandbox_reset
    tag = uuid.uuid4().hex[:6]
    customer = stack.control.create_customer(f"billing.{tag}@acmecorp.com")
    email, other = f"leaver.{tag}@acmecorp.com", f"stays.{tag}@acmecorp.com"
    subs = [str(uuid.uuid4()) for _ in range(2)]
    seats = stack.control.create_seats(
        [{"subscription_id": s, "email": e} for s in subs for e in (email, other)],
        owner_customer_id=customer["id"])
    client = scim_client(served, create_tenant(stack.producer.store,
                                               customer_id=customer["id"]).token)
    user_model = client.get_resource_model("User")
    assert user_model is not None

    created = client.create(user_model(user_name=email, active=True,
                                       emails=[{"value": email, "type": "work",
                                                        "primary": True}]))
    found = client.query(user_model, query_parameters=SearchRequest(
        filter=f'emails[type eq "work"].value eq "{email}"'))
    assert [r.id for r in found.resources] == [created.id]

    client.modify(user_model, created.id, PatchOp[user_model](operations=[
        PatchOperation[user_model](op="replace", path="active", value=False)]))
    parent = stack.producer.store.person_requests(email=email)[0]
    done = stack.wait_terminal([parent.id], timeout=60)[0]

    assert done.state == "revoked", done.outcome_detail
    assert sorted(e["seat_id"] for e in stack.control.revocations()) == sorted(
        s["id"] for s in seats if s["email"] == email)
    assert client.query(user_model, created.id).active is False


def test_scim2_tester_finds_no_error(sandbox_reset: LocalStack, served: str) -> None:
    client = scim_client(served, create_tenant(sandbox_reset.producer.store,
                                               customer_id=str(uuid.uuid4())).token)
    results = check_server(client, raise_exceptions=False)
    failures = [(r.title, r.status.name, r.reason) for r in results
                if r.status in (Status.ERROR, Status.CRITICAL)]
    for failure in failures:
        print("FAIL", failure)
    assert results and failures == [], failures
