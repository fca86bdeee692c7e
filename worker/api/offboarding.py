"""The ``employee.offboarded`` event and how it becomes revocation requests (pure logic).

One ``RevocationInput`` per target, keyed ``webhook:<hash of webhook-id>:<target index>`` so
a redelivered event maps onto the same requests.

- ``{seat_id, subscription_id|order_id}`` → revoke that seat, guarded by the person (the
  worker reads the seat list and checks the occupant before deleting).
- ``{subscription_id}`` / ``{order_id}`` → revoke the person's seat in that container.
- ``{seat_id}`` alone → revoke that seat **without** the person: ``RevocationInput`` refuses
  a person without a subscription/order (the seat list is the only place Polar shows who
  holds a seat, so there is nothing to check them against). The person still goes into the
  request's ``reason`` text so the record says whom the event was about.

``effective_at`` (the person's last day) makes every request ``scheduled`` until then.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator

from worker.requests import RevocationInput

EVENT_TYPE = "employee.offboarded"
REQUESTED_BY = "webhook:offboarding"
_PERSON_FIELDS = ("email", "external_id", "member_id", "customer_id")
_TARGET_FIELDS = ("seat_id", "subscription_id", "order_id")


class Person(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    email: str | None = Field(None, max_length=320, examples=["jane@acme.com"])
    external_id: str | None = Field(None, min_length=1, max_length=200, examples=["E-1042"])
    member_id: str | None = Field(None, max_length=100)
    customer_id: str | None = Field(None, max_length=100)

    @model_validator(mode="after")
    def _named(self) -> Person:
        if not any(getattr(self, name) for name in _PERSON_FIELDS):
            raise ValueError("person needs email, external_id, member_id or customer_id")
        return self


class Target(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    seat_id: str | None = Field(None, max_length=100)
    subscription_id: str | None = Field(None, max_length=100)
    order_id: str | None = Field(None, max_length=100)

    @model_validator(mode="after")
    def _something(self) -> Target:
        if not any(getattr(self, name) for name in _TARGET_FIELDS):
            raise ValueError("target needs seat_id, subscription_id or order_id")
        return self


class OffboardingData(BaseModel):
    model_config = ConfigDict(extra="ignore")

    person: Person
    targets: list[Target] = Field(min_length=1, max_length=500)
    reason: str | None = Field(None, max_length=1000)
    effective_at: AwareDatetime | None = None


class OffboardingEvent(BaseModel):
    """Body of ``POST /v1/events/offboarding`` (other ``type`` values are ignored)."""

    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [
                {
                    "type": EVENT_TYPE,
                    "data": {
                        "person": {"email": "jane@acme.com", "external_id": "E-1042"},
                        "targets": [
                            {"seat_id": "4f1c2b9e-0000-4000-8000-000000000001"},
                            {"subscription_id": "9a0e1d2c-0000-4000-8000-000000000002"},
                        ],
                        "reason": "termination",
                        "effective_at": None,
                    },
                }
            ]
        },
    )

    type: Literal["employee.offboarded"]
    data: OffboardingData


class MappingError(ValueError):
    """A target that ``RevocationInput`` refuses; ``errors`` are FastAPI-style dicts."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("invalid targets")
        self.errors = errors


def idempotency_key(webhook_id: str, index: int) -> str:
    digest = hashlib.sha256(webhook_id.encode()).hexdigest()[:32]
    return f"webhook:{digest}:{index}"


def _reason(data: OffboardingData, target: Target, person_dropped: bool) -> str | None:
    parts = [data.reason] if data.reason else []
    if person_dropped:
        who = ", ".join(
            f"{name}={getattr(data.person, name)}"
            for name in _PERSON_FIELDS
            if getattr(data.person, name)
        )
        parts.append(f"person {who}")
    return "; ".join(parts)[:2000] or None


def to_requests(event: OffboardingEvent, webhook_id: str) -> list[RevocationInput]:
    """One request per target, or ``MappingError`` naming every bad field."""
    data = event.data
    out: list[RevocationInput] = []
    errors: list[dict[str, Any]] = []
    for index, target in enumerate(data.targets):
        container = target.subscription_id or target.order_id
        person_dropped = bool(target.seat_id and not container)
        fields: dict[str, Any] = target.model_dump(exclude_none=True)
        if not person_dropped:
            fields.update(data.person.model_dump(exclude_none=True))
        if data.effective_at is not None:
            fields["effective_at"] = data.effective_at
        fields.update(
            key=idempotency_key(webhook_id, index),
            reason=_reason(data, target, person_dropped),
            requested_by=REQUESTED_BY,
        )
        try:
            out.append(RevocationInput(**fields))
        except ValidationError as exc:
            errors.extend(_located(exc, index))
    if errors:
        raise MappingError(errors)
    return out


def _located(exc: ValidationError, index: int) -> list[dict[str, Any]]:
    located = []
    for error in exc.errors(include_url=False, include_context=False, include_input=False):
        name = str(error["loc"][0]) if error["loc"] else ""
        if name in _PERSON_FIELDS:
            loc: tuple[Any, ...] = ("body", "data", "person", name)
        elif name in _TARGET_FIELDS:
            loc = ("body", "data", "targets", index, name)
        else:
            loc = ("body", "data", "targets", index)
        located.append({"loc": loc, "msg": error["msg"], "type": error["type"]})
    return located
