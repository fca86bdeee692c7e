"""What the Polar client raises.

Exceptions::

    PolarError
    ├── PolarTransportError   no HTTP answer: timeout, connection refused/reset, protocol
    ├── PolarHTTPError        an HTTP answer other than 2xx (status, error, detail, retry_after)
    └── ResponseFormatError   a 2xx body that is not what was expected

Whether to retry follows from ``error.fault`` (see ``outcomes.classify_status``). Messages
never contain the access token: it only ever travels in the Authorization header.
"""

from __future__ import annotations

from typing import Any

from worker.decisions.outcomes import Fault, classify_status


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
