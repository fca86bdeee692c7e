"""Polar seat API client and the CustomerSeat models it returns.

Exceptions::

    PolarError
    ├── PolarTransportError   no HTTP answer: timeout, connection refused/reset, protocol
    └── PolarHTTPError        an HTTP answer other than 2xx (status, error, detail, retry_after)

Whether to retry follows from ``error.fault`` (see ``outcomes.classify_status``). Messages
never contain the access token: it only ever travels in the Authorization header.
"""

from __future__ import annotations

import hashlib
import math
import time
from datetime import datetime
from typing import Any, Literal, Protocol, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError

from worker.decisions.outcomes import Fault, classify_status
from worker.telemetry.logs import redact

Mode = Literal["organization", "customer_portal"]
USER_AGENT = "seat-revoker/0.1"
ModelT = TypeVar("ModelT", bound=BaseModel)


class Member(BaseModel):
    model_config = ConfigDict(extra="allow")

    id: str | None = None
    customer_id: str | None = None
    email: str | None = None
    name: str | None = None
    external_id: str | None = None
    role: str | None = None


class CustomerSeat(BaseModel):
    """A seat as Polar returns it. Only id, status and the two timestamps are required."""

    model_config = ConfigDict(extra="allow")

    id: str
    status: str
    created_at: datetime
    modified_at: datetime | None = None
    subscription_id: str | None = None
    order_id: str | None = None
    customer_id: str | None = None
    member_id: str | None = None
    email: str | None = None
    customer_email: str | None = None
    claimed_at: datetime | None = None
    revoked_at: datetime | None = None
    seat_metadata: dict[str, Any] | None = None
    member: Member | None = None

    def snapshot(self) -> dict[str, Any]:
        """JSON-ready copy for the record store, unknown fields included."""
        return self.model_dump(mode="json")


class SeatsList(BaseModel):
    model_config = ConfigDict(extra="allow")

    seats: list[CustomerSeat]
    available_seats: int | None = None
    total_seats: int | None = None


class CustomerRef(BaseModel):
    """The part of a customer, subscription or order body the identity rules need."""

    model_config = ConfigDict(extra="allow")

    id: str
    customer_id: str | None = None
    external_id: str | None = None


class Pagination(BaseModel):
    model_config = ConfigDict(extra="allow")

    total_count: int = 0
    max_page: int = 0


class ContainerPage(BaseModel):
    """One page of ``GET /v1/subscriptions/`` or ``/v1/orders/``: Polar's ``ListResource``
    (``server/polar/kit/pagination.py``: ``items`` and ``pagination.max_page``)."""

    model_config = ConfigDict(extra="allow")

    items: list[CustomerRef]
    pagination: Pagination


ContainerKind = Literal["subscription", "order"]
# server/polar/config.py API_PAGINATION_MAX_LIMIT: the most items Polar gives per page.
PAGE_LIMIT = 100
# A scope with more pages than this is refused rather than read for minutes.
MAX_PAGES = 200


class MemberPage(BaseModel):
    """One page of ``GET /v1/members/`` (a ``ListResource`` of members)."""

    model_config = ConfigDict(extra="allow")

    items: list[Member]
    pagination: Pagination


class PolarError(Exception):
    """Base of every error raised by the client."""

    fault: Fault = Fault.TRANSIENT
    status: int | None = None
    retry_after: float | None = None


class PolarTransportError(PolarError):
    """The request got no HTTP answer."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind


class PolarHTTPError(PolarError):
    """Polar answered with a non-2xx status."""

    def __init__(
        self, status: int, error: str | None, detail: Any, retry_after: float | None = None
    ) -> None:
        self.status = status
        self.error = error
        self.detail = detail
        self.retry_after = retry_after
        self.fault = classify_status(status) or Fault.PERMANENT
        name = f" {error}" if error else ""
        super().__init__(f"Polar answered {status}{name}: {detail_text(detail)}")


class ResponseFormatError(PolarError):
    """A 2xx body that does not parse as the expected model (truncated JSON, a proxy's HTML
    page). Transient: a DELETE answered so may have been applied, and the retry's guarded
    re-read of the seat list decides what happened; a body that stays garbage runs out of
    retry budget and fails then."""

    fault = Fault.TRANSIENT


class Throttle(Protocol):
    """Shared rate-limit gate (see ``worker.polar.ratelimit``).

    ``acquire`` before every request; on a 429, ``penalize`` with its ``retry-after`` in the
    same thread, before the next ``acquire`` for that bucket: the limiter then knows which
    request was refused (where it stood in Polar's window) and adapts the fleet's rate.
    """

    def acquire(self, bucket: str) -> None: ...
    def penalize(self, bucket: str, seconds: float) -> None: ...


class Observer(Protocol):
    """Told about every Polar call (metrics): status ``None`` means no HTTP answer."""

    def polar_request(self, method: str, status: int | None, seconds: float) -> None: ...


class NoThrottle:
    def acquire(self, bucket: str) -> None:
        return None

    def penalize(self, bucket: str, seconds: float) -> None:
        return None


def detail_text(detail: Any) -> str:
    if detail is None:
        return ""
    if isinstance(detail, list):
        return "; ".join(
            str(item.get("msg", item)) if isinstance(item, dict) else str(item) for item in detail
        )
    return str(detail)


def token_bucket(token: SecretStr) -> str:
    """A stable, non-reversible name for the rate-limit budget of one token."""
    return hashlib.sha256(token.get_secret_value().encode()).hexdigest()[:16]


def parse_retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return max(0.0, seconds) if math.isfinite(seconds) else None


def build_http_client(
    base_url: str,
    *,
    connect_timeout: float,
    read_timeout: float,
    api_version: str | None = None,
    transport: httpx.BaseTransport | None = None,
    max_connections: int = 20,
) -> httpx.Client:
    """The pooled client a worker process keeps for its whole life."""
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    if api_version:
        headers["Polar-Version"] = api_version
    return httpx.Client(
        base_url=base_url,
        headers=headers,
        timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
        limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=10),
        transport=transport,
    )


class PolarClient:
    """The three calls the worker needs. One instance per process; thread-safe."""

    def __init__(
        self,
        http: httpx.Client,
        token: SecretStr,
        throttle: Throttle | None = None,
        observer: Observer | None = None,
        total_timeout: float | None = None,
    ) -> None:
        """``total_timeout`` bounds a whole call, first byte sent to last byte read: httpx's
        read timeout is per read, so a response dripping one byte a second would otherwise
        hold the worker until the task's time limit."""
        self._total_timeout = total_timeout
        self._http = http
        self._token = token
        self._throttle: Throttle = throttle or NoThrottle()
        self._observer = observer

    def revoke_seat(
        self, seat_id: str, *, mode: Mode = "organization", portal_token: SecretStr | None = None
    ) -> CustomerSeat:
        path = (
            f"/v1/customer-portal/seats/{seat_id}"
            if mode == "customer_portal"
            else f"/v1/customer-seats/{seat_id}"
        )
        body = self._send("DELETE", path, None, self._credential(mode, portal_token))
        return _parse(CustomerSeat, body)

    def list_seats(
        self,
        *,
        subscription_id: str | None = None,
        order_id: str | None = None,
        mode: Mode = "organization",
        portal_token: SecretStr | None = None,
    ) -> SeatsList:
        if (subscription_id is None) == (order_id is None):
            raise ValueError("list_seats needs exactly one of subscription_id and order_id")
        params = {"subscription_id": subscription_id} if subscription_id else {"order_id": order_id}
        path = "/v1/customer-portal/seats" if mode == "customer_portal" else "/v1/customer-seats"
        body = self._send("GET", path, params, self._credential(mode, portal_token))
        return _parse(SeatsList, body)

    def billing_customer(self, *, subscription_id: str | None = None,
                         order_id: str | None = None) -> str | None:
        """The customer a subscription or order belongs to (the purchaser).

        ``GET /v1/subscriptions/{id}`` / ``GET /v1/orders/{id}`` (polarsource/polar
        ``server/polar/subscription/endpoints.py``, ``order/endpoints.py``).
        """
        path = (f"/v1/subscriptions/{subscription_id}" if subscription_id
                else f"/v1/orders/{order_id}")
        body = self._send("GET", path, None, self._token)
        return _parse(CustomerRef, body).customer_id

    def customer_by_external_id(self, external_id: str) -> str | None:
        """The id of the customer with this external id, ``None`` when Polar has none.

        ``GET /v1/customers/external/{external_id}`` (``server/polar/customer/endpoints.py``).
        """
        try:
            body = self._send(
                "GET", f"/v1/customers/external/{quote(external_id, safe='')}", None,
                self._token,
            )
        except PolarHTTPError as error:
            if error.status == 404 and error.error == "ResourceNotFound":
                return None
            raise
        return _parse(CustomerRef, body).id

    def customer_exists(self, customer_id: str) -> bool:
        """Whether Polar has this customer: ``GET /v1/customers/{id}``
        (``server/polar/customer/endpoints.py`` ``get``; 404 ``ResourceNotFound``)."""
        try:
            self._send("GET", f"/v1/customers/{quote(customer_id, safe='')}", None, self._token)
        except PolarHTTPError as error:
            if error.status == 404 and error.error == "ResourceNotFound":
                return False
            raise
        return True

    def list_containers(
        self,
        kind: ContainerKind,
        *,
        customer_id: str | None = None,
        external_customer_id: str | None = None,
    ) -> list[CustomerRef]:
        """Every subscription or order of a customer (by id or external id), or of the
        whole organization when neither is given, page by page.

        ``GET /v1/subscriptions/?customer_id=…|external_customer_id=…&page=&limit=``
        (polarsource/polar ``server/polar/subscription/endpoints.py`` ``list``) and
        ``GET /v1/orders/?…`` (``server/polar/order/endpoints.py`` ``list``): a
        ``ListResource`` whose ``pagination.max_page`` says when to stop. No status filter:
        a seat can stay active on a canceled subscription, and the seat list decides.
        """
        path = "/v1/subscriptions/" if kind == "subscription" else "/v1/orders/"
        filters: dict[str, Any] = {}
        if customer_id is not None:
            filters["customer_id"] = customer_id
        if external_customer_id is not None:
            filters["external_customer_id"] = external_customer_id
        found: list[CustomerRef] = []
        page = 1
        while True:
            body = self._send("GET", path, {**filters, "page": page, "limit": PAGE_LIMIT},
                              self._token)
            parsed = _parse(ContainerPage, body)
            found.extend(parsed.items)
            if page >= parsed.pagination.max_page or not parsed.items:
                return found
            if page >= MAX_PAGES:
                raise ResponseFormatError(
                    f"{path}: more than {MAX_PAGES} pages of {PAGE_LIMIT}; narrow the scope")
            page += 1

    def list_members(self, customer_id: str) -> list[Member]:
        """Every member of a customer: ``GET /v1/members/?customer_id=…&page=&limit=``
        (polarsource/polar ``server/polar/member/endpoints.py`` ``list_members``), with
        each member's ``external_id`` — what a seat body may not show."""
        found: list[Member] = []
        page = 1
        while True:
            body = self._send("GET", "/v1/members/", {"customer_id": customer_id,
                                                      "page": page, "limit": PAGE_LIMIT},
                              self._token)
            parsed = _parse(MemberPage, body)
            found.extend(parsed.items)
            if page >= parsed.pagination.max_page or not parsed.items:
                return found
            if page >= MAX_PAGES:
                raise ResponseFormatError(f"/v1/members/: more than {MAX_PAGES} pages")
            page += 1

    def close(self) -> None:
        self._http.close()

    def _credential(self, mode: Mode, portal_token: SecretStr | None) -> SecretStr:
        if mode == "customer_portal":
            if portal_token is None:
                raise ValueError("customer-portal mode needs a customer session token")
            return portal_token
        return self._token

    def _send(
        self, method: str, path: str, params: dict[str, Any] | None, token: SecretStr
    ) -> Any:
        bucket = token_bucket(token)
        self._throttle.acquire(bucket)
        headers = {"Authorization": f"Bearer {token.get_secret_value()}"}
        started = time.perf_counter()
        try:
            response = self._request(method, path, params, headers)
        except PolarTransportError:
            self._observe(method, None, started)
            raise
        self._observe(method, response.status_code, started)
        if response.status_code == 429:
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            self._throttle.penalize(bucket, retry_after if retry_after is not None else 1.0)
            raise PolarHTTPError(429, "RateLimited", "too many requests", retry_after)
        if not response.is_success:
            # An error body may echo the request (a proxy, a debug page): never keep the token.
            error, detail = redact(_error_body(response), {token.get_secret_value()})
            raise PolarHTTPError(response.status_code, error, detail)
        try:
            return response.json()
        except ValueError:
            raise ResponseFormatError(f"{method} {path}: body is not JSON") from None

    def _request(
        self, method: str, path: str, params: dict[str, Any] | None, headers: dict[str, str]
    ) -> httpx.Response:
        try:
            if self._total_timeout is None:
                return self._http.request(method, path, params=params, headers=headers)
            return self._request_within(method, path, params, headers, self._total_timeout)
        except httpx.TimeoutException as exc:
            raise PolarTransportError("timeout", type(exc).__name__) from None
        except httpx.ConnectError as exc:
            raise PolarTransportError("connect", _safe_text(exc)) from None
        except httpx.TransportError as exc:
            raise PolarTransportError("network", type(exc).__name__) from None

    def _request_within(
        self, method: str, path: str, params: dict[str, Any] | None, headers: dict[str, str],
        limit: float,
    ) -> httpx.Response:
        """The call, read chunk by chunk against a deadline for the whole of it."""
        deadline = time.monotonic() + limit
        with self._http.stream(method, path, params=params, headers=headers) as response:
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if time.monotonic() > deadline:
                    raise PolarTransportError(
                        "timeout", f"the response took longer than {limit:g} s in all")
            # Rebuilt from the decoded bytes, so without the encoding headers.
            kept = [(k, v) for k, v in response.headers.multi_items()
                    if k.lower() not in ("content-encoding", "content-length")]
            return httpx.Response(response.status_code, headers=kept,
                                  content=bytes(body), request=response.request)

    def _observe(self, method: str, status: int | None, started: float) -> None:
        if self._observer is not None:
            self._observer.polar_request(method, status, time.perf_counter() - started)


def _parse(model: type[ModelT], body: Any) -> ModelT:
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise ResponseFormatError(
            f"unexpected {model.__name__} body: {exc.error_count()} field errors"
        ) from None


def _error_body(response: httpx.Response) -> tuple[str | None, Any]:
    try:
        body = response.json()
    except ValueError:
        return None, response.reason_phrase or None
    if not isinstance(body, dict):
        return None, body
    error = body.get("error")
    detail = body.get("detail", body.get("error_description"))
    return (str(error) if error is not None else None), detail


def _safe_text(exc: Exception) -> str:
    # httpx connection errors carry OS messages and never headers; keep them short anyway.
    return str(exc)[:200] or type(exc).__name__
