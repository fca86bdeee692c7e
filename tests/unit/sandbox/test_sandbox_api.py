"""The sandbox's Polar API in process (Starlette TestClient, injected clocks): versions, id
validation, auth and error shapes, rate limit, portal sessions, identity reads."""

from __future__ import annotations

import uuid
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from starlette.exceptions import StarletteDeprecationWarning

with warnings.catch_warnings():  # starlette asks for `httpx2`; httpx serves these tests fine
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from fastapi.testclient import TestClient

from worker.sandbox.app import create_app
from worker.sandbox.control import SandboxControl
from worker.sandbox.state import DEFAULT_SANDBOX_TOKEN, SandboxState

ORG = {"Authorization": f"Bearer {DEFAULT_SANDBOX_TOKEN}"}
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
UNAUTHORIZED = {"error": "Unauthorized", "detail": "Unauthorized"}
INVALID_TOKEN = {
    "error": "invalid_token",
    "error_description": "The access token provided is expired, revoked, malformed, or invalid "
    "for other reasons.",
}
NOT_PERMITTED = {
    "error": "NotPermitted",
    "detail": "Only owners and billing managers can access billing features.",
}


class FakeTime:
    def __init__(self) -> None:
        self.seconds = 0.0

    def monotonic(self) -> float:
        return self.seconds

    def wall(self) -> datetime:
        return T0 + timedelta(seconds=self.seconds)


@pytest.fixture
def clock() -> FakeTime:
    return FakeTime()


@pytest.fixture
def state(clock: FakeTime) -> SandboxState:
    return SandboxState(clock=clock.monotonic, now=clock.wall)


@pytest.fixture
def api(state: SandboxState) -> Iterator[TestClient]:
    with TestClient(create_app(state)) as client:
        yield client


@pytest.fixture
def control(api: TestClient) -> SandboxControl:
    return SandboxControl(str(api.base_url), client=api)


def new_id() -> str:
    return str(uuid.uuid4())


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def seed(control: SandboxControl, n: int = 1, **fields: Any) -> list[dict[str, Any]]:
    sub = new_id()
    owner = fields.pop("owner", None)
    return control.create_seats(
        [{"subscription_id": sub, "email": f"p{i}@example.com", **fields} for i in range(n)],
        owner_customer_id=owner,
    )


# -- Polar-Version -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "echoed"),
    [(None, "2026-04"), ("", "2026-04"), ("2026-04", "2026-04"), ("2026-10", "2026-10")],
)
def test_served_versions_are_echoed(
    control: SandboxControl, api: TestClient, sent: str | None, echoed: str
) -> None:
    [seat] = seed(control)
    headers = ORG if sent is None else {**ORG, "Polar-Version": sent}
    response = api.get(
        "/v1/customer-seats", params={"subscription_id": seat["subscription_id"]}, headers=headers
    )
    assert response.status_code == 200 and response.headers["polar-version"] == echoed


@pytest.mark.parametrize("sent", ["2025-12", "2026-4", "2026-04-01", "latest", "2027-01"])
@pytest.mark.parametrize("headers", [ORG, {}, bearer("polar_oat_unknown")])
def test_other_versions_are_404_before_auth_and_rate_limit(
    control: SandboxControl, api: TestClient, sent: str, headers: dict[str, str]
) -> None:
    control.configure(rate_limit="1/minute")
    [seat] = seed(control)
    response = api.delete(
        f"/v1/customer-seats/{seat['id']}", headers={**headers, "Polar-Version": sent}
    )
    assert response.status_code == 404 and response.json() == {"detail": "Not Found"}
    assert "polar-version" not in response.headers
    assert control.seat(seat["id"])["status"] == "claimed"
    assert control.stats()["rate_windows"] == {}  # nothing counted


def test_versions_knob(control: SandboxControl, api: TestClient) -> None:
    control.configure(versions=["2026-10"])
    assert api.get("/v1/customer-seats", headers=ORG).status_code == 404  # default refused
    limited = api.get("/v1/customer-seats", headers={**ORG, "Polar-Version": "2026-10"})
    assert limited.status_code == 400  # served: neither subscription_id nor order_id


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), (bearer("polar_oat_nope"), 401), (ORG, 400)],
)
def test_errors_echo_the_version_too(
    api: TestClient, headers: dict[str, str], status: int
) -> None:
    response = api.get("/v1/customer-seats", headers=headers)
    assert response.status_code == status and response.headers["polar-version"] == "2026-04"


# -- ids are UUID version 4 ----------------------------------------------------------------

UUID1 = str(uuid.uuid1())
NIL = "00000000-0000-0000-0000-000000000000"


@pytest.mark.parametrize(
    ("value", "error_type"),
    [(UUID1, "uuid_version"), (NIL, "uuid_version"), ("not-a-uuid", "uuid_parsing")],
)
@pytest.mark.parametrize(
    ("method", "url", "loc"),
    [
        ("DELETE", "/v1/customer-seats/{v}", ["path", "seat_id"]),
        ("GET", "/v1/customer-seats?subscription_id={v}", ["query", "subscription_id"]),
        ("GET", "/v1/customer-seats?order_id={v}", ["query", "order_id"]),
        ("GET", "/v1/customers/{v}", ["path", "id"]),
        ("GET", "/v1/subscriptions/{v}", ["path", "id"]),
        ("GET", "/v1/orders/{v}", ["path", "id"]),
        ("GET", "/v1/subscriptions/?customer_id={v}", ["query", "customer_id", 0]),
    ],
)
def test_ids_must_be_uuid4(
    api: TestClient, method: str, url: str, loc: list[Any], value: str, error_type: str
) -> None:
    response = api.request(method, url.format(v=value), headers=ORG)
    assert response.status_code == 422
    body = response.json()
    assert body["error"] == "RequestValidationError"
    [error] = body["detail"]
    assert error["loc"] == loc and error["type"] == error_type and error["input"] == value
    assert error["msg"]
    if error_type == "uuid_version":
        assert error["msg"] == "UUID version 4 expected"
        assert error["ctx"] == {"expected_version": 4}


def test_portal_ids_must_be_uuid4(control: SandboxControl, api: TestClient) -> None:
    [seat] = seed(control)
    portal = bearer(control.customer_session(seat["customer_id"]))
    response = api.delete(f"/v1/customer-portal/seats/{UUID1}", headers=portal)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["path", "seat_id"]


def test_auth_comes_before_validation(control: SandboxControl, api: TestClient) -> None:
    assert api.delete("/v1/customer-seats/nope").status_code == 401
    assert api.delete("/v1/customer-seats/nope", headers=bearer("polar_oat_x")).status_code == 401
    control.configure(scopes_missing=True)
    assert api.delete("/v1/customer-seats/nope", headers=ORG).status_code == 403


# -- tokens and scopes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no token"),
        pytest.param({"Authorization": DEFAULT_SANDBOX_TOKEN}, id="no scheme"),
        pytest.param({"Authorization": "Basic abc"}, id="other scheme"),
    ],
)
def test_no_credentials_is_unauthorized(
    control: SandboxControl, api: TestClient, headers: dict[str, str]
) -> None:
    [seat] = seed(control)
    response = api.delete(f"/v1/customer-seats/{seat['id']}", headers=headers)
    assert response.status_code == 401 and response.json() == UNAUTHORIZED
    assert response.headers["www-authenticate"] == 'Bearer realm="polar"'
    assert control.seat(seat["id"])["status"] == "claimed"


@pytest.mark.parametrize(
    "token",
    ["polar_oat_unknown", "polar_cst_forged", "polar_mst_forged", "whatever"],
)
def test_unknown_tokens_are_invalid_token(
    control: SandboxControl, api: TestClient, token: str
) -> None:
    [seat] = seed(control)
    for path in (f"/v1/customer-seats/{seat['id']}", f"/v1/customer-portal/seats/{seat['id']}"):
        response = api.delete(path, headers=bearer(token))
        assert response.status_code == 401 and response.json() == INVALID_TOKEN
        assert response.headers["www-authenticate"] == (
            'Bearer realm="polar", error="invalid_token", '
            f'error_description="{INVALID_TOKEN["error_description"]}"'
        )
        assert response.headers["cache-control"] == "no-store"
    assert control.stats()["deletes_by_seat"] == {}


def test_revoked_token_can_be_broken_and_fixed(control: SandboxControl, api: TestClient) -> None:
    control.configure(tokens=["polar_oat_ci"])
    [seat] = seed(control)
    url = "/v1/customer-seats"
    params = {"subscription_id": seat["subscription_id"]}
    control.configure(revoked_tokens=["polar_oat_ci"])
    broken = api.get(url, params=params, headers=bearer("polar_oat_ci"))
    assert broken.status_code == 401 and broken.json() == INVALID_TOKEN
    assert api.get(url, params=params, headers=ORG).status_code == 200
    control.configure(revoked_tokens=[])
    assert api.get(url, params=params, headers=bearer("polar_oat_ci")).status_code == 200


@pytest.mark.parametrize(
    ("method", "url", "scope"),
    [
        ("GET", "/v1/customer-seats", "customer_seats:read"),
        ("DELETE", "/v1/customer-seats/{id}", "customer_seats:write"),
        ("GET", "/v1/customers/{id}", "customers:read customers:write"),
        ("GET", "/v1/members/", "members:read members:write"),
        ("GET", "/v1/orders/{id}", "orders:read"),
    ],
)
def test_missing_scope(
    control: SandboxControl, api: TestClient, method: str, url: str, scope: str
) -> None:
    control.configure(scopes_missing=True)
    response = api.request(method, url.format(id=new_id()), headers=ORG)
    assert response.status_code == 403
    assert response.json() == {
        "error": "insufficient_scope",
        "error_description": "The request requires higher privileges than provided by the "
        "access token.",
    }
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith(f'Bearer realm="polar", scope="{scope}", ')
    assert 'error="insufficient_scope"' in challenge
    control.configure(scopes_missing=False)
    assert api.request(method, url.format(id=new_id()), headers=ORG).status_code != 403


def test_wrong_kind_of_subject_is_unauthorized(control: SandboxControl, api: TestClient) -> None:
    [seat] = seed(control)
    on_portal = api.delete(f"/v1/customer-portal/seats/{seat['id']}", headers=ORG)
    assert on_portal.status_code == 401 and on_portal.json() == UNAUTHORIZED
    session = bearer(control.customer_session(seat["customer_id"]))
    on_org = api.delete(f"/v1/customer-seats/{seat['id']}", headers=session)
    assert on_org.status_code == 401 and on_org.json() == UNAUTHORIZED
    member = bearer(control.member_session(seat["member_id"]))
    assert api.get(f"/v1/customers/{seat['customer_id']}", headers=member).status_code == 401


def test_seats_not_enabled(control: SandboxControl, api: TestClient) -> None:
    [seat] = seed(control)
    control.configure(seats_enabled=False)
    feature = {
        "error": "FeatureNotEnabled",
        "detail": "Seat-based pricing is not enabled for this organization",
    }
    params = {"subscription_id": seat["subscription_id"]}
    for response in (
        api.get("/v1/customer-seats", params=params, headers=ORG),
        api.delete(f"/v1/customer-seats/{seat['id']}", headers=ORG),
    ):
        assert response.status_code == 403 and response.json() == feature
    assert api.get(f"/v1/customers/{seat['customer_id']}", headers=ORG).status_code == 200
    control.configure(seats_enabled=True)
    assert api.delete(f"/v1/customer-seats/{seat['id']}", headers=ORG).status_code == 200


# -- rate limit ----------------------------------------------------------------------------


def test_429_shape_and_rejections_do_not_count(
    control: SandboxControl, api: TestClient, clock: FakeTime
) -> None:
    control.configure(rate_limit="2/minute", tokens=["polar_oat_second"])
    seats = seed(control, 3)
    first = api.delete(f"/v1/customer-seats/{seats[0]['id']}", headers=ORG)
    clock.seconds = 30
    second = api.delete(
        f"/v1/customer-seats/{seats[1]['id']}", headers=bearer("polar_oat_second")
    )
    assert (first.status_code, second.status_code) == (200, 200)
    clock.seconds = 59
    limited = api.delete(f"/v1/customer-seats/{seats[2]['id']}", headers=ORG)
    assert limited.status_code == 429 and limited.content == b""
    assert limited.headers["retry-after"] == "60"  # the window, not the 1 s left
    assert "content-type" not in limited.headers
    assert not any(h.startswith("x-ratelimit") for h in limited.headers)
    assert control.seat(seats[2]["id"])["status"] == "claimed"
    clock.seconds = 60  # the window opened at 0 has ended; the 429s did not extend it
    assert api.delete(f"/v1/customer-seats/{seats[2]['id']}", headers=ORG).status_code == 200
    stats = control.stats()
    assert stats["rate_limited"] == 1 and seats[2]["id"] in stats["deletes_by_seat"]


def test_invalid_tokens_spend_no_budget(control: SandboxControl, api: TestClient) -> None:
    control.configure(rate_limit="1/minute")
    for _ in range(3):
        assert api.get("/v1/customer-seats", headers=bearer("polar_oat_bad")).status_code == 401
        assert api.get("/v1/customer-seats").status_code == 401
    assert api.get("/v1/customer-seats", headers=ORG).status_code == 400
    assert api.get("/v1/customer-seats", headers=ORG).status_code == 429


def test_every_organization_call_spends_the_same_budget(
    control: SandboxControl, api: TestClient
) -> None:
    control.configure(rate_limit="5/minute", scopes_missing=True)
    [seat] = seed(control)
    assert api.get(f"/v1/customers/{seat['customer_id']}", headers=ORG).status_code == 403
    control.configure(scopes_missing=False)
    calls = [
        ("GET", f"/v1/customers/{seat['customer_id']}"),
        ("GET", "/v1/members/"),
        ("GET", f"/v1/subscriptions/{seat['subscription_id']}"),
        ("DELETE", "/v1/customer-seats/not-a-uuid"),  # 422s count too
    ]
    assert [api.request(m, u, headers=ORG).status_code for m, u in calls] == [200, 200, 200, 422]
    assert api.get("/v1/members/", headers=ORG).status_code == 429


def test_background_usage_shares_the_organization_budget(
    control: SandboxControl, api: TestClient, clock: FakeTime
) -> None:
    control.configure(rate_limit="10/minute", background_usage=0.7)
    [seat] = seed(control)
    url = f"/v1/customers/{seat['customer_id']}"
    codes = [api.get(url, headers=ORG).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]
    portal = bearer(control.customer_session(seat["customer_id"]))
    params = {"subscription_id": seat["subscription_id"]}
    portal_codes = [
        api.get("/v1/customer-portal/seats", params=params, headers=portal).status_code
        for _ in range(10)
    ]
    assert portal_codes == [200] * 10  # the customer's own window has no background share
    clock.seconds = 60
    assert api.get(url, headers=ORG).status_code == 200
    [window] = [w for k, w in control.stats()["rate_windows"].items() if k.startswith("org")]
    assert (window["background"], window["admitted"], window["remaining"]) == (7, 1, 2)


def test_portal_budget_is_per_customer_and_per_member(
    control: SandboxControl, api: TestClient
) -> None:
    control.configure(rate_limit="1/minute")
    [seat] = seed(control)
    params = {"subscription_id": seat["subscription_id"]}
    assert api.get("/v1/customer-seats", params=params, headers=ORG).status_code == 200
    first = bearer(control.customer_session(seat["customer_id"]))
    second = bearer(control.customer_session(seat["customer_id"]))
    member = bearer(control.member_session(seat["member_id"]))
    url = "/v1/customer-portal/seats"
    assert api.get(url, params=params, headers=first).status_code == 200
    assert api.get(url, params=params, headers=second).status_code == 429  # same customer
    assert api.get(url, params=params, headers=member).status_code == 200


# -- customer portal -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "revoke_status"),
    [("owner", 200), ("billing_manager", 200), ("member", 403)],
)
def test_member_sessions_by_role(
    control: SandboxControl, api: TestClient, role: str, revoke_status: int
) -> None:
    target, holder = seed(control, 2)
    member = control.create_member(holder["customer_id"], "boss@example.com", role=role)
    portal = bearer(control.member_session(member["id"]))
    params = {"subscription_id": target["subscription_id"]}
    listing = api.get("/v1/customer-portal/seats", params=params, headers=portal)
    assert listing.status_code == 200 and len(listing.json()["seats"]) == 2
    response = api.delete(f"/v1/customer-portal/seats/{target['id']}", headers=portal)
    assert response.status_code == revoke_status
    if revoke_status == 403:
        assert response.json() == NOT_PERMITTED
        assert control.seat(target["id"])["status"] == "claimed"
        # The role check is a dependency: it answers before the id is even parsed.
        assert api.delete("/v1/customer-portal/seats/nope", headers=portal).status_code == 403
    else:
        assert response.json()["status"] == "revoked"


def test_portal_hides_other_customers(control: SandboxControl, api: TestClient) -> None:
    [mine] = seed(control)
    [theirs] = seed(control)
    for token in (
        control.customer_session(mine["customer_id"]),
        control.member_session(
            control.create_member(mine["customer_id"], "o@example.com", role="owner")["id"]
        ),
    ):
        portal = bearer(token)
        hidden = api.get(
            "/v1/customer-portal/seats",
            params={"subscription_id": theirs["subscription_id"]},
            headers=portal,
        )
        assert hidden.status_code == 404
        assert hidden.json() == {"error": "ResourceNotFound", "detail": "Subscription not found"}
        other = api.delete(f"/v1/customer-portal/seats/{theirs['id']}", headers=portal)
        assert other.status_code == 404
        assert other.json() == {"error": "ResourceNotFound", "detail": "Seat not found"}
    assert control.seat(theirs["id"])["status"] == "claimed"


@pytest.mark.parametrize("kind", ["customer", "member"])
def test_sessions_expire(
    control: SandboxControl, api: TestClient, clock: FakeTime, kind: str
) -> None:
    [seat] = seed(control, role="owner")
    if kind == "customer":
        short = control.customer_session(seat["customer_id"], ttl_seconds=5)
        default = control.customer_session(seat["customer_id"])
    else:
        short = control.member_session(seat["member_id"], ttl_seconds=5)
        default = control.member_session(seat["member_id"])
    params = {"subscription_id": seat["subscription_id"]}
    url = "/v1/customer-portal/seats"
    assert api.get(url, params=params, headers=bearer(short)).status_code == 200
    clock.seconds = 5
    expired = api.get(url, params=params, headers=bearer(short))
    assert expired.status_code == 401 and expired.json() == INVALID_TOKEN
    clock.seconds = 3599
    assert api.get(url, params=params, headers=bearer(default)).status_code == 200
    clock.seconds = 3600  # sessions last one hour
    assert api.get(url, params=params, headers=bearer(default)).status_code == 401


def test_portal_revoke_of_a_revoked_seat_skips_the_feature_check(
    control: SandboxControl, api: TestClient
) -> None:
    [seat] = seed(control)
    portal = bearer(control.customer_session(seat["customer_id"]))
    first = api.delete(f"/v1/customer-portal/seats/{seat['id']}", headers=portal)
    control.configure(seats_enabled=False)
    again = api.delete(f"/v1/customer-portal/seats/{seat['id']}", headers=portal)
    assert again.status_code == 200 and again.json() == first.json()


# -- identity reads ------------------------------------------------------------------------


def test_customer_reads(control: SandboxControl, api: TestClient) -> None:
    created = control.create_customer("ext@example.com", external_id="E-42", name="Ext")
    by_id = api.get(f"/v1/customers/{created['id']}", headers=ORG)
    by_external = api.get("/v1/customers/external/E-42", headers=ORG)
    assert by_id.status_code == by_external.status_code == 200
    assert by_id.json() == by_external.json() == created
    assert created["organization_id"] == control.config()["organization_id"]
    assert {"id", "email", "external_id", "name", "type", "metadata"} <= set(created)
    for url in ("/v1/customers/external/E-404", f"/v1/customers/{new_id()}"):
        missing = api.get(url, headers=ORG)
        assert missing.status_code == 404
        assert missing.json() == {"error": "ResourceNotFound", "detail": "Not found"}


def test_members_list(control: SandboxControl, api: TestClient) -> None:
    billing = control.create_customer("buyer@example.com", external_id="B-7")["id"]
    seats = seed(control, 3, owner=billing, external_id=None)
    response = api.get("/v1/members/", params={"external_customer_id": "B-7"}, headers=ORG)
    assert response.status_code == 200
    body = response.json()
    assert set(body) == {"items", "pagination"}
    assert body["pagination"] == {"total_count": 3, "max_page": 1}
    assert {m["id"] for m in body["items"]} == {s["member_id"] for s in seats}
    assert all(m["customer_id"] == billing for m in body["items"])
    by_id = api.get("/v1/members/", params={"customer_id": billing, "limit": 2}, headers=ORG)
    assert by_id.json()["pagination"] == {"total_count": 3, "max_page": 2}
    bad = api.get("/v1/members/", params={"customer_id": "nope"}, headers=ORG)
    assert bad.status_code == 404
    assert bad.json() == {"error": "ResourceNotFound", "detail": "Invalid customer ID format"}


def test_members_without_slash_redirect_like_polar(
    control: SandboxControl, api: TestClient
) -> None:
    customer_id = new_id()
    response = api.get(
        "/v1/members", params={"customer_id": customer_id}, headers=ORG, follow_redirects=False
    )
    assert response.status_code == 307  # Starlette's redirect_slashes, as on api.polar.sh
    assert response.headers["location"].endswith(f"/v1/members/?customer_id={customer_id}")
    assert control.stats()["by_route"] == {"GET /v1/members/": 1}


@pytest.mark.parametrize("kind", ["subscription", "order"])
def test_subscription_and_order_reads(
    control: SandboxControl, api: TestClient, kind: str
) -> None:
    owner = control.create_customer("buyer@example.com", external_id="B-1")["id"]
    container = new_id()
    control.create_seats([{f"{kind}_id": container, "email": "x@example.com"}], owner)
    response = api.get(f"/v1/{kind}s/{container}", headers=ORG)
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == container and body["customer_id"] == owner
    assert body["customer"]["id"] == owner and body["customer"]["external_id"] == "B-1"
    assert body["seats"] == 1
    listing = api.get(f"/v1/{kind}s/", params={"customer_id": owner}, headers=ORG).json()
    assert [item["id"] for item in listing["items"]] == [container]
    missing = api.get(f"/v1/{kind}s/{new_id()}", headers=ORG)
    assert missing.status_code == 404 and missing.json()["error"] == "ResourceNotFound"


# -- control API ---------------------------------------------------------------------------


def test_control_people_and_revocations(control: SandboxControl, api: TestClient) -> None:
    control.configure(member_model_enabled=False)
    [seat] = seed(control, external_id="hr-1")
    assert {c["id"] for c in control.customers()} >= {seat["customer_id"]}
    assert control.members(seat["member"]["customer_id"]) == [seat["member"]]
    api.delete(f"/v1/customer-seats/{seat['id']}", headers=ORG)
    expected = {
        "seat_id": seat["id"],
        "email": "p0@example.com",
        "member_id": seat["member_id"],
        "customer_id": seat["customer_id"],
        "external_id": "hr-1",
    }
    assert control.revocations() == [expected]
    assert control.stats()["revocations"] == [expected]


def test_control_rejects_customer_id_on_member_model_seats(control: SandboxControl) -> None:
    customer = control.create_customer("own@example.com")
    with pytest.raises(httpx.HTTPStatusError) as info:
        control.create_seats([{"email": "a@example.com", "customer_id": customer["id"]}])
    assert info.value.response.status_code == 400
    assert "member-model" in info.value.response.json()["detail"]
    [seat] = control.create_seats(
        [{"customer_id": customer["id"], "variant": "member_2025_12"}]
    )
    assert seat["customer_id"] == customer["id"] and seat["email"] is None
    assert seat["customer_email"] == seat["member"]["email"] == "own@example.com"


def test_control_revoke_is_recorded_but_not_an_api_call(
    control: SandboxControl, api: TestClient
) -> None:
    [seat] = seed(control)
    control.configure(seats_enabled=False)
    revoked = control.revoke(seat["id"])
    assert revoked["status"] == "revoked" and revoked["member"] is None
    assert [r["seat_id"] for r in control.revocations()] == [seat["id"]]
    stats = control.stats()
    assert stats["requests"] == 0 and stats["revocations_by_seat"] == {seat["id"]: 1}
    with pytest.raises(httpx.HTTPStatusError) as info:
        control.revoke(new_id())
    assert info.value.response.status_code == 404
