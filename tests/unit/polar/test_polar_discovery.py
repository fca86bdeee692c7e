"""PolarClient's discovery reads against ``httpx.MockTransport``: every page of Polar's
``ListResource`` is read (``pagination.max_page``), the filters are sent as Polar names
them, and a 404 customer is ``False``, not an error."""

from __future__ import annotations

import httpx
import pytest
from pydantic import SecretStr

from worker.polar.client import PolarClient
from worker.polar.errors import ResponseFormatError
from worker.polar.transport import build_http_client

CUSTOMER = "6b2f1b5d-0000-4000-8000-000000000002"


def client(handler: httpx.MockTransport) -> PolarClient:
    http = build_http_client("https://sandbox-api.polar.sh", connect_timeout=1,
                             read_timeout=1, transport=handler)
    return PolarClient(http, SecretStr("polar_oat_x"))


def test_list_containers_reads_every_page_with_the_customer_filter() -> None:
    seen: list[httpx.QueryParams] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.params)
        page = int(request.url.params["page"])
        items = [{"id": f"sub-{page}-{i}", "customer_id": CUSTOMER, "seats": 3}
                 for i in range(100 if page < 3 else 7)]
        return httpx.Response(200, json={"items": items, "pagination": {
            "total_count": 207, "max_page": 3}})

    found = client(httpx.MockTransport(answer)).list_containers("subscription",
                                                                customer_id=CUSTOMER)

    assert len(found) == 207 and found[-1].id == "sub-3-6"
    assert [p["page"] for p in seen] == ["1", "2", "3"]
    assert all(p["customer_id"] == CUSTOMER and p["limit"] == "100" for p in seen)


def test_orders_by_external_customer_id_and_an_empty_scope() -> None:
    paths: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        paths.append(f"{request.url.path}?{request.url.query.decode()}")
        return httpx.Response(200, json={"items": [], "pagination": {
            "total_count": 0, "max_page": 0}})

    found = client(httpx.MockTransport(answer)).list_containers(
        "order", external_customer_id="acme")

    assert found == [] and paths == ["/v1/orders/?external_customer_id=acme&page=1&limit=100"]


def test_customer_exists_is_false_on_polars_404() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"error": "ResourceNotFound", "detail": "Not found"})

    assert client(httpx.MockTransport(answer)).customer_exists(CUSTOMER) is False


def test_members_are_read_with_their_external_ids() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/members/"
        return httpx.Response(200, json={"items": [
            {"id": "m1", "customer_id": CUSTOMER, "email": "a@acme.com", "external_id": "E1"}],
            "pagination": {"total_count": 1, "max_page": 1}})

    (member,) = client(httpx.MockTransport(answer)).list_members(CUSTOMER)
    assert member.external_id == "E1"


def test_a_listing_that_never_ends_is_an_error_not_an_endless_loop() -> None:
    asked: list[int] = []

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(int(request.url.params["page"]))
        return httpx.Response(200, json={"items": [
            {"id": f"m{asked[-1]}", "customer_id": CUSTOMER, "email": "a@acme.com"}],
            "pagination": {"total_count": 10**6, "max_page": 10**4}})

    with pytest.raises(ResponseFormatError, match=r"/v1/members/: more than 200 pages"):
        client(httpx.MockTransport(answer)).list_members(CUSTOMER)
    assert asked == list(range(1, 201))
