"""A producer's refusal of valid-looking input, as the API answers it (422).

``Producer.submit*`` may refuse a request that passed ``RevocationInput`` validation, for
what only the producer can know: e.g. a bare seat id whose subscription/order the store
does not know, without ``guard: false`` ("… add subscription_id or order_id, or guard:
false"). It raises ``ValueError`` or ``pydantic.ValidationError`` before writing or
enqueueing anything; every route that submits turns that into a 422 naming the problem.
"""

from __future__ import annotations

from typing import Any

from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError


def refusal_text(exc: ValueError) -> str:
    """One line for the operator, without pydantic's "Value error, " prefix."""
    if isinstance(exc, ValidationError):
        return "; ".join(
            str(e["msg"]).removeprefix("Value error, ")
            for e in exc.errors(include_url=False, include_context=False, include_input=False)
        )
    return str(exc).removeprefix("Value error, ")


def refusal_errors(exc: ValueError, loc: tuple[Any, ...]) -> list[dict[str, Any]]:
    """FastAPI-style error dicts located under ``loc``."""
    if isinstance(exc, ValidationError):
        return [
            {**e, "loc": (*loc, *e["loc"]),
             "msg": str(e["msg"]).removeprefix("Value error, ")}
            for e in exc.errors(include_url=False, include_context=False, include_input=False)
        ]
    return [{"loc": loc, "msg": refusal_text(exc), "type": "value_error"}]


def refused(exc: ValueError, loc: tuple[Any, ...]) -> RequestValidationError:
    """The 422 FastAPI answers with; raise it ``from None``."""
    return RequestValidationError(refusal_errors(exc, loc))
