"""Bearer authentication for Polar as an ``httpx.Auth``: the one place that reads a token.

The token is written into the Authorization header of the outgoing request and nowhere
else: not into the repr, not into messages. Each request also carries the name of its
token's rate-limit budget (``BUCKET``, a request extension) for the throttling transport.
"""

from __future__ import annotations

import hashlib
from collections.abc import Generator
from typing import Any

import httpx
from pydantic import SecretStr

from worker.telemetry.logs import redact

# The request extension naming the rate-limit budget a request spends (see transport.py).
BUCKET = "seat_revoker.rate_bucket"


def token_bucket(token: SecretStr) -> str:
    """A stable, non-reversible name for the rate-limit budget of one token."""
    return hashlib.sha256(token.get_secret_value().encode()).hexdigest()[:16]


class BearerAuth(httpx.Auth):
    """``Authorization: Bearer <token>`` on every request, and its budget's name."""

    def __init__(self, token: SecretStr) -> None:
        self._token = token
        self.bucket = token_bucket(token)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._token.get_secret_value()}"
        request.extensions = {**request.extensions, BUCKET: self.bucket}
        yield request

    def redact(self, value: Any) -> Any:
        """``value`` with this token masked: an error body may echo the request."""
        return redact(value, {self._token.get_secret_value()})

    def __repr__(self) -> str:
        return f"BearerAuth(bucket={self.bucket!r})"
