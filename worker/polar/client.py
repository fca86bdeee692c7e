"""The Polar seat API client: the calls the worker makes, and what their answers mean.

Credentials come from ``auth.BearerAuth``, throttling, metrics and the total deadline
from the transports ``transport.build_http_client`` stacks; this module only picks the
credential for a call and turns statuses and bodies into models or ``errors``.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, SecretStr, ValidationError

from worker.polar.auth import BearerAuth
from worker.polar.errors import PolarHTTPError, PolarTransportError, ResponseFormatError
from worker.polar.seats import (
    ContainerKind,
    ContainerPage,
    CustomerRef,
    CustomerSeat,
    Member,
    MemberPage,
    SeatsList,
)
from worker.polar.transport import parse_retry_after

Mode = Literal["organization", "customer_portal"]
ModelT = TypeVar("ModelT", bound=BaseModel)
PageT = TypeVar("PageT", ContainerPage, MemberPage)

# server/polar/config.py API_PAGINATION_MAX_LIMIT: the most items Polar gives per page.
PAGE_LIMIT = 100
# A scope with more pages than this is refused rather than read for minutes.
MAX_PAGES = 200


class PolarClient:
    """The calls the worker needs. One instance per process; thread-safe."""

    def __init__(self, http: httpx.Client, token: SecretStr) -> None:
        """``http`` comes from ``build_http_client`` (its transports throttle and time
        each call); ``token`` is the organization access token."""
        self._http = http
        self._auth = BearerAuth(token)

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
        body = self._send("GET", path, None, self._auth)
        return _parse(CustomerRef, body).customer_id

    def customer_by_external_id(self, external_id: str) -> str | None:
        """The id of the customer with this external id, ``None`` when Polar has none.

        ``GET /v1/customers/external/{external_id}`` (``server/polar/customer/endpoints.py``).
        """
        try:
            body = self._send(
                "GET", f"/v1/customers/external/{quote(external_id, safe='')}", None,
                self._auth,
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
            self._send("GET", f"/v1/customers/{quote(customer_id, safe='')}", None, self._auth)
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
        pages = self._pages(path, filters, ContainerPage,
                            too_many=f"of {PAGE_LIMIT}; narrow the scope")
        return [ref for page in pages for ref in page.items]

    def list_members(self, customer_id: str) -> list[Member]:
        """Every member of a customer: ``GET /v1/members/?customer_id=…&page=&limit=``
        (polarsource/polar ``server/polar/member/endpoints.py`` ``list_members``), with
        each member's ``external_id`` — what a seat body may not show."""
        pages = self._pages("/v1/members/", {"customer_id": customer_id}, MemberPage)
        return [member for page in pages for member in page.items]

    def _pages(self, path: str, filters: dict[str, Any], model: type[PageT], *,
               too_many: str = "") -> list[PageT]:
        """Every page of one of Polar's ``ListResource`` listings, until
        ``pagination.max_page`` (or an empty page); more than ``MAX_PAGES`` is an error."""
        pages: list[PageT] = []
        while True:
            number = len(pages) + 1
            body = self._send("GET", path, {**filters, "page": number, "limit": PAGE_LIMIT},
                              self._auth)
            pages.append(_parse(model, body))
            if number >= pages[-1].pagination.max_page or not pages[-1].items:
                return pages
            if number >= MAX_PAGES:
                raise ResponseFormatError(
                    f"{path}: more than {MAX_PAGES} pages{' ' + too_many if too_many else ''}")

    def close(self) -> None:
        self._http.close()

    def _credential(self, mode: Mode, portal_token: SecretStr | None) -> BearerAuth:
        if mode == "customer_portal":
            if portal_token is None:
                raise ValueError("customer-portal mode needs a customer session token")
            return BearerAuth(portal_token)
        return self._auth

    def _send(
        self, method: str, path: str, params: dict[str, Any] | None, auth: BearerAuth
    ) -> Any:
        """The call's JSON body, or the error its status means."""
        response = self._request(method, path, params, auth)
        if response.status_code == 429:
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            raise PolarHTTPError(429, "RateLimited", "too many requests", retry_after)
        if not response.is_success:
            # An error body may echo the request (a proxy, a debug page): never keep the token.
            error, detail = auth.redact(_error_body(response))
            raise PolarHTTPError(response.status_code, error, detail)
        try:
            return response.json()
        except ValueError:
            raise ResponseFormatError(f"{method} {path}: body is not JSON") from None

    def _request(
        self, method: str, path: str, params: dict[str, Any] | None, auth: BearerAuth
    ) -> httpx.Response:
        try:
            return self._http.request(method, path, params=params, auth=auth)
        except httpx.TimeoutException as exc:
            raise PolarTransportError("timeout", type(exc).__name__) from None
        except httpx.ConnectError as exc:
            raise PolarTransportError("connect", _safe_text(exc)) from None
        except httpx.TransportError as exc:
            raise PolarTransportError("network", type(exc).__name__) from None


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
