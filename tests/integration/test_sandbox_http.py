"""The sandbox over real HTTP: SandboxServer in a thread, httpx as the client."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from worker.sandbox.app import DEFAULT_SANDBOX_TOKEN, SandboxServer
from worker.sandbox.control import SandboxControl

ORG = {"Authorization": f"Bearer {DEFAULT_SANDBOX_TOKEN}"}
UNAUTHORIZED = {"error": "Unauthorized", "detail": "Unauthorized"}
INVALID_TOKEN = "invalid_token"


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    with SandboxServer() as running:
        yield running


@pytest.fixture
def control(server: SandboxServer) -> Iterator[SandboxControl]:
    with server.control() as ctl:
        ctl.reset()
        yield ctl


@pytest.fixture
def api(server: SandboxServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        yield client


def new_id() -> str:
    return str(uuid.uuid4())


def seed(
    control: SandboxControl, n: int = 1, owner: str | None = None, **fields: Any
) -> list[dict[str, Any]]:
    sub = new_id()
    return control.create_seats(
        [{"subscription_id": sub, "email": f"p{i}@example.com", **fields} for i in range(n)],
        owner_customer_id=owner,
    )


# -- organisation endpoints ----------------------------------------------------------------


def test_revoke_and_rerevoke(control: SandboxControl, api: httpx.Client) -> None:
    [seat] = seed(control, external_id="hr-1")
    assert seat["member"]["external_id"] == "hr-1"
    response = api.delete(f"/v1/customer-seats/{seat['id']}", headers=ORG)
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == seat["id"] and body["status"] == "revoked"
    assert body["revoked_at"] and body["member"] is None
    assert body["customer_id"] is body["member_id"] is body["email"] is None
    again = api.delete(f"/v1/customer-seats/{seat['id']}", headers=ORG)
    assert again.status_code == 200 and again.json() == body
    stats = control.stats()
    assert stats["deletes_by_seat"] == {seat["id"]: 2}
    assert stats["revocations_by_seat"] == {seat["id"]: 1}
    assert stats["by_route"] == {"DELETE /v1/customer-seats": 2}
    assert control.seat(seat["id"])["status"] == "revoked"


def test_legacy_rerevoke_knob(control: SandboxControl, api: httpx.Client) -> None:
    control.configure(legacy_rerevoke=True)
    [seat] = seed(control)
    first = api.delete(f"/v1/customer-seats/{seat['id']}", headers=ORG).json()
    assert first["member"] is None  # present in every version, null once revoked
    time.sleep(0.01)
    second = api.delete(f"/v1/customer-seats/{seat['id']}", headers=ORG).json()
    assert second["revoked_at"] > first["revoked_at"]
    assert control.stats()["revocations_by_seat"] == {seat["id"]: 2}


def test_list_seats(control: SandboxControl, api: httpx.Client) -> None:
    seats = seed(control, 3)
    api.delete(f"/v1/customer-seats/{seats[0]['id']}", headers=ORG)
    response = api.get(
        "/v1/customer-seats", params={"subscription_id": seats[0]["subscription_id"]}, headers=ORG
    )
    assert response.status_code == 200
    body = response.json()
    assert [s["id"] for s in body["seats"]] == [s["id"] for s in seats]
    assert body["seats"][0]["status"] == "revoked"  # revoked seats are listed
    assert (body["total_seats"], body["available_seats"]) == (3, 1)
    order = new_id()
    control.create_seats([{"order_id": order, "email": "o@example.com"}])
    by_order = api.get("/v1/customer-seats", params={"order_id": order}, headers=ORG)
    assert by_order.json()["seats"][0]["order_id"] == order


def test_list_errors(control: SandboxControl, api: httpx.Client) -> None:
    unknown = api.get("/v1/customer-seats", params={"subscription_id": new_id()}, headers=ORG)
    assert unknown.status_code == 404
    assert unknown.json() == {"error": "ResourceNotFound", "detail": "Subscription not found"}
    neither = api.get("/v1/customer-seats", headers=ORG)
    assert neither.status_code == 400 and neither.json()["error"] == "BadRequest"
    bad = api.get("/v1/customer-seats", params={"order_id": "nope"}, headers=ORG)
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["query", "order_id"]


def test_assign_reuses_row_and_stale_delete_hits_new_occupant(
    control: SandboxControl, api: httpx.Client
) -> None:
    [seat] = seed(control)
    api.delete(f"/v1/customer-seats/{seat['id']}", headers=ORG)
    bob = control.assign(
        "bob@example.com", subscription_id=seat["subscription_id"], external_id="hr-bob"
    )
    assert bob["id"] == seat["id"] and bob["status"] == "claimed"
    assert bob["member"]["email"] == "bob@example.com" and bob["revoked_at"] is None
    stale = api.delete(f"/v1/customer-seats/{seat['id']}", headers=ORG).json()
    assert stale["status"] == "revoked"  # Bob lost his seat: nothing in the API prevents it
    fresh = control.assign(
        "carol@example.com", subscription_id=seat["subscription_id"], status="pending"
    )
    assert fresh["id"] == seat["id"] and fresh["invitation_token_expires_at"]
    extra = control.assign("dave@example.com", subscription_id=seat["subscription_id"])
    assert extra["id"] != seat["id"]
    with pytest.raises(httpx.HTTPStatusError) as info:
        control.assign("x@example.com", order_id=new_id())
    assert info.value.response.status_code == 404


# -- error shapes --------------------------------------------------------------------------


def test_unknown_seat_is_404(control: SandboxControl, api: httpx.Client) -> None:
    response = api.delete(f"/v1/customer-seats/{new_id()}", headers=ORG)
    assert response.status_code == 404
    assert response.json() == {"error": "ResourceNotFound", "detail": "Seat not found"}


def test_non_uuid_is_422(control: SandboxControl, api: httpx.Client) -> None:
    response = api.delete("/v1/customer-seats/not-a-uuid", headers=ORG)
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "RequestValidationError"
    [error] = body["detail"]
    assert error["loc"] == ["path", "seat_id"] and error["type"] == "uuid_parsing"
    assert error["msg"] and error["input"] == "not-a-uuid"
    other_version = api.delete(f"/v1/customer-seats/{uuid.uuid1()}", headers=ORG)
    assert other_version.status_code == 422
    assert other_version.json()["detail"][0]["type"] == "uuid_version"


@pytest.mark.parametrize(
    ("path", "headers", "error"),
    [
        ("/v1/customer-seats/{id}", {}, "Unauthorized"),
        ("/v1/customer-seats/{id}", {"Authorization": "Bearer polar_oat_wrong"}, INVALID_TOKEN),
        ("/v1/customer-seats/{id}", {"Authorization": DEFAULT_SANDBOX_TOKEN}, "Unauthorized"),
        ("/v1/customer-portal/seats/{id}", ORG, "Unauthorized"),  # org token on the portal
        ("/v1/customer-portal/seats/{id}", {"Authorization": "Bearer polar_cst_forged"},
         INVALID_TOKEN),
    ],
)
def test_unauthorized(
    control: SandboxControl, api: httpx.Client, path: str, headers: dict[str, str], error: str
) -> None:
    [seat] = seed(control)
    response = api.delete(path.format(id=seat["id"]), headers=headers)
    assert response.status_code == 401
    assert response.json()["error"] == error
    if error == "Unauthorized":
        assert response.json() == UNAUTHORIZED
        assert response.headers["www-authenticate"] == 'Bearer realm="polar"'
    else:
        assert response.headers["www-authenticate"].startswith(
            'Bearer realm="polar", error="invalid_token"'
        )
    assert control.seat(seat["id"])["status"] == "claimed"
    assert control.stats()["deletes_by_seat"] == {}


def test_customer_token_is_not_an_org_token(control: SandboxControl, api: httpx.Client) -> None:
    owner = new_id()
    [seat] = seed(control, owner=owner)
    token = control.customer_session(owner)
    response = api.delete(
        f"/v1/customer-seats/{seat['id']}", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 401


def test_extra_org_tokens(control: SandboxControl, api: httpx.Client) -> None:
    control.configure(tokens=["polar_oat_ci"])
    [seat] = seed(control)
    response = api.delete(
        f"/v1/customer-seats/{seat['id']}", headers={"Authorization": "Bearer polar_oat_ci"}
    )
    assert response.status_code == 200


def test_polar_version(control: SandboxControl, api: httpx.Client) -> None:
    [seat] = seed(control)
    url = f"/v1/customer-seats/{seat['id']}"
    old = api.delete(url, headers={**ORG, "Polar-Version": "2025-12"})
    assert old.status_code == 404 and old.json() == {"detail": "Not Found"}
    assert control.seat(seat["id"])["status"] == "claimed"
    ok = api.delete(url, headers={**ORG, "Polar-Version": "2026-10"})
    assert ok.status_code == 200 and ok.headers["polar-version"] == "2026-10"
    default = api.delete(url, headers=ORG)
    assert default.status_code == 200 and default.headers["polar-version"] == "2026-04"


def test_unknown_route_is_plain_404(control: SandboxControl, api: httpx.Client) -> None:
    response = api.get("/v1/nothing", headers=ORG)
    assert response.status_code == 404 and response.json() == {"detail": "Not Found"}


# -- rate limit ----------------------------------------------------------------------------


def test_rate_limit_429_shape(control: SandboxControl, api: httpx.Client) -> None:
    control.configure(rate_limit="3/minute", tokens=["polar_oat_second"])
    seats = seed(control, 4)
    codes = [
        api.delete(f"/v1/customer-seats/{s['id']}", headers=ORG).status_code for s in seats[:3]
    ]
    assert codes == [200, 200, 200]
    # Org tokens share one bucket per organisation.
    limited = api.delete(
        f"/v1/customer-seats/{seats[3]['id']}", headers={"Authorization": "Bearer polar_oat_second"}
    )
    assert limited.status_code == 429
    assert limited.content == b""
    assert limited.headers["retry-after"] == "60"  # the window length, as Polar says
    assert not any(h.startswith("x-ratelimit") for h in limited.headers)
    assert control.seat(seats[3]["id"])["status"] == "claimed"
    stats = control.stats()
    assert stats["rate_limited"] == 1 and stats["by_status"] == {"200": 3, "429": 1}
    assert seats[3]["id"] not in stats["deletes_by_seat"]  # only admitted DELETEs count


def test_rate_limit_fixed_window_restarts(control: SandboxControl, api: httpx.Client) -> None:
    control.configure(rate_limit="2/second")
    seats = seed(control, 1)
    url = f"/v1/customer-seats/{seats[0]['id']}"
    statuses = [api.delete(url, headers=ORG).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    time.sleep(1.05)
    assert api.delete(url, headers=ORG).status_code == 200


def test_portal_buckets_are_per_customer_and_member(
    control: SandboxControl, api: httpx.Client
) -> None:
    control.configure(rate_limit="1/minute")
    owner = new_id()
    [seat] = seed(control, owner=owner)
    sub = {"subscription_id": seat["subscription_id"]}
    assert api.get("/v1/customer-seats", params=sub, headers=ORG).status_code == 200
    codes = []
    for _ in range(2):  # two sessions of one customer share the customer's budget
        portal = {"Authorization": f"Bearer {control.customer_session(owner)}"}
        codes.append(api.get("/v1/customer-portal/seats", params=sub, headers=portal).status_code)
    assert codes == [200, 429]
    member = {"Authorization": f"Bearer {control.member_session(seat['member_id'])}"}
    assert api.get("/v1/customer-portal/seats", params=sub, headers=member).status_code == 200


# -- customer portal -----------------------------------------------------------------------


def test_portal_visibility(control: SandboxControl, api: httpx.Client) -> None:
    owner, stranger = new_id(), new_id()
    [mine] = seed(control, owner=owner)
    [theirs] = seed(control, owner=stranger)
    portal = {"Authorization": f"Bearer {control.customer_session(owner)}"}
    listing = api.get(
        "/v1/customer-portal/seats",
        params={"subscription_id": mine["subscription_id"]},
        headers=portal,
    )
    assert listing.status_code == 200 and listing.json()["seats"][0]["id"] == mine["id"]
    hidden = api.get(
        "/v1/customer-portal/seats",
        params={"subscription_id": theirs["subscription_id"]},
        headers=portal,
    )
    assert hidden.status_code == 404
    other = api.delete(f"/v1/customer-portal/seats/{theirs['id']}", headers=portal)
    assert other.status_code == 404
    assert other.json() == {"error": "ResourceNotFound", "detail": "Seat not found"}
    revoked = api.delete(f"/v1/customer-portal/seats/{mine['id']}", headers=portal)
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    assert control.stats()["by_route"]["DELETE /v1/customer-portal/seats"] == 2


def test_member_session_roles(control: SandboxControl, api: httpx.Client) -> None:
    owner = new_id()
    [seat, other] = seed(control, 2, owner=owner)
    plain = {"Authorization": f"Bearer {control.member_session(seat['member_id'])}"}
    listing = api.get(
        "/v1/customer-portal/seats", params={"subscription_id": seat["subscription_id"]},
        headers=plain,
    )
    assert listing.status_code == 200
    refused = api.delete(f"/v1/customer-portal/seats/{other['id']}", headers=plain)
    assert refused.status_code == 403 and refused.json()["error"] == "NotPermitted"
    manager = control.create_member(owner, "bm@example.com", role="billing_manager")
    allowed = {"Authorization": f"Bearer {control.member_session(manager['id'])}"}
    revoked = api.delete(f"/v1/customer-portal/seats/{other['id']}", headers=allowed)
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    assert control.revocations() == [
        {"seat_id": other["id"], "email": "p1@example.com", "member_id": other["member_id"],
         "customer_id": owner, "external_id": None}
    ]


# -- faults --------------------------------------------------------------------------------


def test_status_fault_times(control: SandboxControl, api: httpx.Client) -> None:
    [seat] = seed(control)
    url = f"/v1/customer-seats/{seat['id']}"
    control.add_fault(method="DELETE", seat_id=seat["id"], status=503, times=2)
    first = api.delete(url, headers=ORG)
    assert first.status_code == 503 and first.json()["detail"] == "Service Unavailable"
    assert api.delete(url, headers=ORG).status_code == 503
    assert control.seat(seat["id"])["status"] == "claimed"
    assert api.delete(url, headers=ORG).status_code == 200
    assert control.faults()[0]["hits"] == 2
    control.clear_faults()
    assert control.faults() == []


def test_fault_custom_body_and_method_filter(control: SandboxControl, api: httpx.Client) -> None:
    [seat] = seed(control)
    body = {
        "error": "FeatureNotEnabled",
        "detail": "Seat-based pricing is not enabled for this organization",
    }
    control.add_fault(method="GET", status=403, body=body)
    listing = api.get(
        "/v1/customer-seats", params={"subscription_id": seat["subscription_id"]}, headers=ORG
    )
    assert listing.status_code == 403 and listing.json() == body
    assert api.delete(f"/v1/customer-seats/{seat['id']}", headers=ORG).status_code == 200


def test_429_burst_fault(control: SandboxControl, api: httpx.Client) -> None:
    [seat] = seed(control)
    control.add_fault(status=429, retry_after=7, times=3)
    url = f"/v1/customer-seats/{seat['id']}"
    for _ in range(3):
        response = api.delete(url, headers=ORG)
        assert response.status_code == 429 and response.content == b""
        assert response.headers["retry-after"] == "7"
    assert api.delete(url, headers=ORG).status_code == 200
    assert control.stats()["rate_limited"] == 3


def test_hang_triggers_read_timeout(control: SandboxControl, api: httpx.Client) -> None:
    [seat] = seed(control)
    control.add_fault(seat_id=seat["id"], hang_s=1.0, status=504, times=1)
    with pytest.raises(httpx.ReadTimeout):
        api.delete(f"/v1/customer-seats/{seat['id']}", headers=ORG, timeout=0.2)
    assert control.seat(seat["id"])["status"] == "claimed"  # never applied


def test_apply_then_hang(control: SandboxControl, api: httpx.Client) -> None:
    [seat] = seed(control)
    control.add_fault(
        method="DELETE", seat_id=seat["id"], apply_then_hang=True, hang_s=30.0, times=1
    )
    with (
        httpx.Client(base_url=api.base_url, timeout=0.3) as impatient,
        pytest.raises(httpx.ReadTimeout),
    ):
        impatient.delete(f"/v1/customer-seats/{seat['id']}", headers=ORG)
    assert control.seat(seat["id"])["status"] == "revoked"  # applied, answer lost
    deadline = time.monotonic() + 5
    while control.stats()["in_flight"]:  # the hang ends when the client hangs up
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert control.stats()["revocations_by_seat"] == {seat["id"]: 1}
    again = api.delete(f"/v1/customer-seats/{seat['id']}", headers=ORG)
    assert again.status_code == 200 and again.json()["status"] == "revoked"
    assert control.stats()["revocations_by_seat"] == {seat["id"]: 1}


def test_apply_then_hang_answers_when_client_waits(
    control: SandboxControl, api: httpx.Client
) -> None:
    [seat] = seed(control)
    control.add_fault(apply_then_hang=True, hang_s=0.2, times=1)
    started = time.monotonic()
    response = api.delete(f"/v1/customer-seats/{seat['id']}", headers=ORG)
    assert response.status_code == 200 and response.json()["status"] == "revoked"
    assert time.monotonic() - started >= 0.2


def test_probability_is_seeded(control: SandboxControl, api: httpx.Client) -> None:
    def run() -> list[int]:
        control.reset(seed=7)
        [seat] = seed(control)
        control.add_fault(method="GET", status=500, probability=0.5)
        params = {"subscription_id": seat["subscription_id"]}
        return [
            api.get("/v1/customer-seats", params=params, headers=ORG).status_code for _ in range(20)
        ]

    first = run()
    assert first == run()
    assert set(first) == {200, 500}


def test_latency_does_not_block_other_requests(
    control: SandboxControl, server: SandboxServer
) -> None:
    control.configure(latency_ms=300)
    seats = seed(control, 8)
    results: list[int] = []

    def revoke(seat_id: str) -> None:
        with httpx.Client(base_url=server.url, timeout=5) as client:
            results.append(client.delete(f"/v1/customer-seats/{seat_id}", headers=ORG).status_code)

    started = time.monotonic()
    threads = [threading.Thread(target=revoke, args=(s["id"],)) for s in seats]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [200] * 8
    assert time.monotonic() - started < 1.5  # 8 x 300 ms, in parallel
    assert control.stats()["max_concurrent"] >= 4


# -- control endpoints ---------------------------------------------------------------------


def test_bulk_seed_10k(control: SandboxControl) -> None:
    started = time.monotonic()
    seats = control.create_seats([{"email": f"u{i}@example.com"} for i in range(10_000)])
    assert time.monotonic() - started < 10
    assert len(seats) == 10_000 and len({s["id"] for s in seats}) == 10_000
    assert len(control.seats()) == 10_000


def test_seed_with_given_ids_and_validation(control: SandboxControl) -> None:
    seat_id, owner, member = new_id(), new_id(), new_id()
    [seat] = control.create_seats(
        [{"id": seat_id, "member_id": member, "email": "a@example.com", "name": "A"}],
        owner_customer_id=owner,
    )
    assert (seat["id"], seat["customer_id"], seat["member"]["id"]) == (seat_id, owner, member)
    assert control.seat(seat_id) == seat
    holder = control.create_customer("own@example.com", external_id="E-1")
    with pytest.raises(httpx.HTTPStatusError) as info:  # member-model seats have no own customer
        control.create_seats([{"customer_id": holder["id"]}])
    assert info.value.response.status_code == 400
    control.configure(member_model_enabled=False)
    [legacy] = control.create_seats([{"customer_id": holder["id"]}])
    assert legacy["customer_id"] == holder["id"] and legacy["email"] == "own@example.com"
    with pytest.raises(httpx.HTTPStatusError) as info:
        control.create_seats([{"id": seat_id}])
    assert info.value.response.status_code == 409
    with pytest.raises(httpx.HTTPStatusError) as info:
        control.create_seats([{"status": "lost"}])
    assert info.value.response.status_code == 422
    assert info.value.response.json()["error"] == "RequestValidationError"
    with pytest.raises(httpx.HTTPStatusError) as info:
        control.seat(new_id())
    assert info.value.response.status_code == 404


def test_reset_and_config(control: SandboxControl, api: httpx.Client) -> None:
    seed(control)
    control.add_fault(status=500)
    config = control.reset(rate_limit="100/minute", member_model_enabled=False)
    assert config["rate_limit"] == "100/minute" and config["member_model_enabled"] is False
    assert control.seats() == [] and control.faults() == []
    assert control.configure(rate_limit=None)["rate_limit"] is None
    with pytest.raises(httpx.HTTPStatusError) as info:
        control.configure(rate_limit="lots")
    assert info.value.response.status_code == 422


def test_log_hashes_tokens(control: SandboxControl, api: httpx.Client) -> None:
    [seat] = seed(control)
    api.delete(f"/v1/customer-seats/{seat['id']}", headers=ORG)
    api.get("/v1/customer-seats", params={"subscription_id": seat["subscription_id"]})
    records = control.log()
    assert [(r["seq"], r["method"], r["status"]) for r in records] == [
        (1, "DELETE", 200),
        (2, "GET", 401),
    ]
    assert records[0]["seat_id"] == seat["id"] and records[1]["token"] is None
    assert DEFAULT_SANDBOX_TOKEN not in str(records)
    assert control.log(since=1) == records[1:]
    assert control.stats()["requests"] == 2  # control calls are not counted


def test_serve_prints_listening_line() -> None:
    code = (
        "from worker.sandbox.app import serve; "
        "serve('127.0.0.1', 0, '5/second', ['polar_oat_extra'],"
        " member_model_enabled=False, background_usage=0.25, revoked_tokens=['polar_oat_old'])"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline().strip()
        assert line.startswith("sandbox listening on http://127.0.0.1:")
        url = line.rsplit(" ", 1)[1]
        deadline = time.monotonic() + 10
        while True:
            try:
                config = httpx.get(f"{url}/_sandbox/config").json()
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        assert config["rate_limit"] == "5/second" and config["tokens"] == ["polar_oat_extra"]
        assert config["member_model_enabled"] is False and config["background_usage"] == 0.25
        assert config["revoked_tokens"] == ["polar_oat_old"]
    finally:
        process.terminate()
        process.wait(timeout=10)
