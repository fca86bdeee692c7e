"""Errors of the local Polar stand-in, with the bodies and headers Polar answers them with.

Polar renders a `PolarError` as `{"error": <class name>, "detail": <message>}`
(polarsource/polar server/polar/exception_handlers.py) and OAuth2 token errors with
authlib's body `{"error", "error_description"}` and a `WWW-Authenticate` challenge
(server/polar/oauth2/exceptions.py, server/polar/oauth2/exception_handlers.py).
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["REALM", "SandboxError", "dumps"]

REALM = "polar"  # settings.WWW_AUTHENTICATE_REALM, server/polar/config.py
_INVALID_TOKEN = (
    "The access token provided is expired, revoked, malformed, or invalid for other reasons."
)
_INSUFFICIENT_SCOPE = (
    "The request requires higher privileges than provided by the access token."
)
FEATURE_NOT_ENABLED = "Seat-based pricing is not enabled for this organization"
BILLING_ROLES_ONLY = "Only owners and billing managers can access billing features."


def dumps(obj: Any) -> bytes:
    """Compact JSON, as Polar (starlette's JSONResponse) writes it."""
    return json.dumps(obj, separators=(",", ":")).encode()


class SandboxError(Exception):
    """An API error: status, JSON body and extra headers."""

    def __init__(
        self,
        status: int,
        error: str,
        detail: str,
        *,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail = status, error, detail
        self.body = body if body is not None else {"error": error, "detail": detail}
        self.headers = headers or {}

    def body_bytes(self) -> bytes:
        return dumps(self.body)

    @classmethod
    def not_found(cls, detail: str = "Not found") -> SandboxError:
        """`ResourceNotFound` (server/polar/exceptions.py; default message "Not found")."""
        return cls(404, "ResourceNotFound", detail)

    @classmethod
    def bad_request(cls, detail: str) -> SandboxError:
        return cls(400, "BadRequest", detail)

    @classmethod
    def unauthorized(cls) -> SandboxError:
        """No credentials, or a subject the route does not accept (auth/dependencies.py)."""
        headers = {"WWW-Authenticate": f'Bearer realm="{REALM}"'}
        return cls(401, "Unauthorized", "Unauthorized", headers=headers)

    @classmethod
    def invalid_token(cls) -> SandboxError:
        """Unknown, expired or revoked bearer token (auth/middlewares.py InvalidTokenError)."""
        challenge = (
            f'Bearer realm="{REALM}", error="invalid_token", '
            f'error_description="{_INVALID_TOKEN}"'
        )
        return cls._oauth2(401, "invalid_token", _INVALID_TOKEN, challenge)

    @classmethod
    def insufficient_scope(cls, scopes: tuple[str, ...]) -> SandboxError:
        """Token without any of the route's scopes (oauth2/exceptions.py InsufficientScopeError)."""
        challenge = (
            f'Bearer realm="{REALM}", scope="{" ".join(scopes)}", '
            f'error="insufficient_scope", error_description="{_INSUFFICIENT_SCOPE}"'
        )
        return cls._oauth2(403, "insufficient_scope", _INSUFFICIENT_SCOPE, challenge)

    @classmethod
    def feature_not_enabled(cls) -> SandboxError:
        """customer_seat/service.py FeatureNotEnabled."""
        return cls(403, "FeatureNotEnabled", FEATURE_NOT_ENABLED)

    @classmethod
    def not_permitted(cls, detail: str = BILLING_ROLES_ONLY) -> SandboxError:
        """customer_portal/auth.py `_UnionBillingRoleCheck` for a member of role member."""
        return cls(403, "NotPermitted", detail)

    @classmethod
    def _oauth2(cls, status: int, error: str, description: str, challenge: str) -> SandboxError:
        headers = {
            "WWW-Authenticate": challenge,
            "Cache-Control": "no-store",
            "Pragma": "no-cache",
        }
        body = {"error": error, "error_description": description}
        return cls(status, error, description, body=body, headers=headers)
