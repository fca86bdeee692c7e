"""Typed client for the sandbox's `/_sandbox/` control endpoints (seeding, faults, stats).

Works against a sandbox in this process (`SandboxServer`) or another one
(`seat-revoker sandbox --port P`). Every call raises `httpx.HTTPStatusError` on a non-2xx.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

import httpx

__all__ = ["SandboxControl"]


def _drop_unset(values: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


class SandboxControl:
    """Thin wrapper over `httpx.Client` for one sandbox base URL."""

    def __init__(
        self, base_url: str, *, timeout: float = 60.0, client: httpx.Client | None = None
    ) -> None:
        self._owns_client = client is None
        self.client = client or httpx.Client(base_url=base_url, timeout=timeout)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.client.request(method, path, **kwargs)
        response.raise_for_status()
        return response.json()

    def reset(self, **config: Any) -> dict[str, Any]:
        """Clear people, seats, sessions, faults, stats and log; set config (see `configure`)."""
        result: dict[str, Any] = self._call("POST", "/_sandbox/reset", json=config or None)
        return result

    def configure(self, **config: Any) -> dict[str, Any]:
        """Change knobs: rate_limit ("100/minute" or None), tokens, revoked_tokens,
        legacy_rerevoke, member_model_enabled, seats_enabled, scopes_missing,
        background_usage (0..1), latency_ms, seed, versions. Returns the whole config."""
        result: dict[str, Any] = self._call("POST", "/_sandbox/config", json=config)
        return result

    def config(self) -> dict[str, Any]:
        """The current config, plus the sandbox organization's id."""
        result: dict[str, Any] = self._call("GET", "/_sandbox/config")
        return result

    def create_seats(
        self, seats: list[dict[str, Any]], owner_customer_id: str | None = None
    ) -> list[dict[str, Any]]:
        """Bulk-create seats; each dict may hold id, subscription_id, order_id, status,
        email, external_id, name, role, member_id, customer_id (the holder's own customer:
        legacy shapes only), variant, revoked_at. New subscriptions/orders are billed to
        `owner_customer_id` (created if unknown) or to a new customer."""
        body = _drop_unset({"seats": seats, "owner_customer_id": owner_customer_id})
        seats_out: list[dict[str, Any]] = self._call("POST", "/_sandbox/seats", json=body)["seats"]
        return seats_out

    def revoke(self, seat_id: str) -> dict[str, Any]:
        """Revoke a seat as some other tool of the organization would: recorded in
        `revocations()`, not in the API stats, no auth or rate limit."""
        result: dict[str, Any] = self._call("POST", f"/_sandbox/seats/{seat_id}/revoke")
        return result

    def assign(
        self,
        email: str | None = None,
        *,
        subscription_id: str | None = None,
        order_id: str | None = None,
        customer_id: str | None = None,
        member_id: str | None = None,
        external_id: str | None = None,
        name: str | None = None,
        role: str | None = None,
        variant: str | None = None,
        status: str = "claimed",
    ) -> dict[str, Any]:
        """Assign a seat like Polar does (reusing a revoked row of the container)."""
        body = _drop_unset(
            {
                "email": email,
                "subscription_id": subscription_id,
                "order_id": order_id,
                "customer_id": customer_id,
                "member_id": member_id,
                "external_id": external_id,
                "name": name,
                "role": role,
                "variant": variant,
                "status": status,
            }
        )
        result: dict[str, Any] = self._call("POST", "/_sandbox/assign", json=body)
        return result

    def create_customer(
        self,
        email: str | None,
        external_id: str | None = None,
        id: str | None = None,
        name: str | None = None,
    ) -> dict[str, Any]:
        """Create a customer (Polar's Customer JSON back)."""
        body = {"email": email, **_drop_unset({"external_id": external_id, "id": id, "name": name})}
        result: dict[str, Any] = self._call("POST", "/_sandbox/customers", json=body)
        return result

    def create_member(
        self,
        customer_id: str,
        email: str,
        *,
        external_id: str | None = None,
        name: str | None = None,
        role: str = "member",
        id: str | None = None,
    ) -> dict[str, Any]:
        """Create a member of a customer (Polar's Member JSON back)."""
        body = _drop_unset(
            {"customer_id": customer_id, "email": email, "external_id": external_id,
             "name": name, "role": role, "id": id}
        )
        result: dict[str, Any] = self._call("POST", "/_sandbox/members", json=body)
        return result

    def customers(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/_sandbox/customers")
        return result

    def members(self, customer_id: str | None = None) -> list[dict[str, Any]]:
        params = _drop_unset({"customer_id": customer_id})
        result: list[dict[str, Any]] = self._call("GET", "/_sandbox/members", params=params)
        return result

    def customer_session(self, customer_id: str, ttl_seconds: float | None = None) -> str:
        """A customer session token (`polar_cst_...`) for the portal (default 1 hour)."""
        body = _drop_unset({"customer_id": customer_id, "ttl_seconds": ttl_seconds})
        token: str = self._call("POST", "/_sandbox/customer-sessions", json=body)["token"]
        return token

    def member_session(self, member_id: str, ttl_seconds: float | None = None) -> str:
        """A member session token (`polar_mst_...`) for the portal (default 1 hour)."""
        body = _drop_unset({"member_id": member_id, "ttl_seconds": ttl_seconds})
        token: str = self._call("POST", "/_sandbox/member-sessions", json=body)["token"]
        return token

    def add_fault(self, **rule: Any) -> dict[str, Any]:
        """Add a fault rule: method, seat_id, status, body, times, probability, latency_ms,
        hang_s, apply_then_hang, retry_after."""
        result: dict[str, Any] = self._call("POST", "/_sandbox/faults", json=rule)
        return result

    def faults(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/_sandbox/faults")
        return result

    def clear_faults(self) -> None:
        self._call("DELETE", "/_sandbox/faults")

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/_sandbox/stats")
        return result

    def seat(self, seat_id: str) -> dict[str, Any]:
        """The seat as stored (raises HTTPStatusError 404 if unknown)."""
        result: dict[str, Any] = self._call("GET", f"/_sandbox/seats/{seat_id}")
        return result

    def seats(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/_sandbox/seats")["seats"]
        return result

    def revocations(self) -> list[dict[str, Any]]:
        """The occupant just before each real revocation: seat_id, email, member_id,
        customer_id, external_id (oldest first)."""
        result: list[dict[str, Any]] = self._call("GET", "/_sandbox/revocations")
        return result

    def log(self, since: int = 0) -> list[dict[str, Any]]:
        """Request records with seq > since."""
        result: list[dict[str, Any]] = self._call("GET", "/_sandbox/log", params={"since": since})
        return result

    def close(self) -> None:
        if self._owns_client:
            self.client.close()

    def __enter__(self) -> SandboxControl:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
