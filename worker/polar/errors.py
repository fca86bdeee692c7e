"""What the Polar client raises.

Exceptions::

    PolarError
    ├── PolarTransportError   no HTTP answer: timeout, connection refused/reset, protocol
    ├── PolarHTTPError        an HTTP answer other than 2xx (status, error, detail, retry_after)
    └── ResponseFormatError   a 2xx body that is not what was expected

Whether to retry follows from ``error.fault`` (``classify_status`` below; what to do about
it is ``worker.decisions.outcomes.plan_retry``). Messages
never contain the access token: it only ever travels in the Authorization header.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class Fault(StrEnum):
    """Kinds of failure of one Polar call."""

    TRANSIENT = "transient"  # timeout, connection error, 5xx: the same request may succeed
    RATE_LIMITED = "rate_limited"  # 429: wait retry-after, then send it again
    PERMANENT = "permanent"  # 4xx: the same request will fail again


PERMANENT_STATUSES = frozenset({400, 401, 403, 404, 405, 409, 410, 422})


def classify_status(status: int) -> Fault | None:
    """The fault an HTTP status stands for, or ``None`` for success."""
    if 200 <= status < 300:
        return None
    if status == 429:
        return Fault.RATE_LIMITED
    if status >= 500 or status == 408:
        return Fault.TRANSIENT
    return Fault.PERMANENT


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


def detail_text(detail: Any) -> str:
    if detail is None:
        return ""
    if isinstance(detail, list):
        return "; ".join(
            str(item.get("msg", item)) if isinstance(item, dict) else str(item) for item in detail
        )
    return str(detail)
