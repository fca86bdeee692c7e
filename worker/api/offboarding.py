"""The ``employee.offboarded`` event and how it becomes revocation requests (pure logic).

One ``RevocationInput`` per target, keyed ``webhook:<hash of webhook-id>:<target index>`` so
a redelivered event maps onto the same requests.

The event's person goes with every target, so the record always says whom it was about:

- ``{seat_id, subscription_id|order_id}`` → revoke that seat, guarded by the person (the
  worker reads the seat list and checks the occupant before deleting).
- ``{subscription_id}`` / ``{order_id}`` → revoke the person's seat in that container.
- ``{seat_id}`` alone → the producer decides: it guards the seat through the
  subscription/order the store knows for it, and otherwise refuses the whole event (422,
  "… add subscription_id or order_id, or guard: false"; nothing is enqueued).
- ``{seat_id, "guard": false}`` → revoke that seat without checking who holds it (for a
  seat whose subscription/order the sender does not know). The record shows it.

``effective_at`` (the person's last day) makes every request ``scheduled`` until then.

With no targets, a ``scope`` (``customer_id``, ``customer_external_id`` or
``all_customers: true``) makes one person request instead (key
``webhook:<hash>:person``): the worker finds every seat the person holds in that scope.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from config.settings import Priority
from worker.api.schemas import no_nul
from worker.intake.requests import PersonInput, RevocationInput

EVENT_TYPE = "employee.offboarded"
REQUESTED_BY = "webhook:offboarding"
_PERSON_FIELDS = ("email", "external_id", "member_id", "customer_id")
_TARGET_FIELDS = ("seat_id", "subscription_id", "order_id", "guard")


class Person(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    email: str | None = Field(None, max_length=320, examples=["jane@acme.com"])
    external_id: str | None = Field(None, min_length=1, max_length=200, examples=["E-1042"])
    member_id: str | None = Field(None, max_length=100)
    customer_id: str | None = Field(None, max_length=100)

    _text = field_validator(*_PERSON_FIELDS)(no_nul)

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
    guard: bool = Field(
        True,
        description="false: revoke seat_id without checking who holds it, when its "
        "subscription/order is unknown (the seat may have been reassigned)",
    )

    _text = field_validator("seat_id", "subscription_id", "order_id")(no_nul)

    @model_validator(mode="after")
    def _something(self) -> Target:
        if not (self.seat_id or self.subscription_id or self.order_id):
            raise ValueError("target needs seat_id, subscription_id or order_id")
        return self


class Scope(BaseModel):
    """Where to find the person's seats when the event names none."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    customer_id: str | None = Field(None, max_length=100)
    customer_external_id: str | None = Field(None, max_length=200)
    all_customers: bool = False

    _text = field_validator("customer_id", "customer_external_id")(no_nul)


class OffboardingData(BaseModel):
    model_config = ConfigDict(extra="ignore")

    person: Person
    # Before ``targets``: the targets' check reads it.
    scope: Scope | None = None
    targets: list[Target] = Field(default_factory=list, max_length=500, validate_default=True)
    reason: str | None = Field(None, max_length=1000)
    effective_at: AwareDatetime | None = None
    priority: Priority = Field("urgent", description="Lane of every target's request: "
                               "urgent (default: a termination) or bulk")

    _text = field_validator("reason")(no_nul)

    @field_validator("targets")
    @classmethod
    def _targets_or_scope(cls, targets: list[Target], info: ValidationInfo) -> list[Target]:
        if bool(targets) == (info.data.get("scope") is not None):
            raise ValueError("give targets (seats, subscriptions, orders), or no targets and "
                             "a scope (customer_id, customer_external_id or all_customers) "
                             "in which the person's seats are found")
        return targets


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
                            {"seat_id": "4f1c2b9e-0000-4000-8000-000000000001",
                             "subscription_id": "9a0e1d2c-0000-4000-8000-000000000002"},
                            {"order_id": "7b3d5e1f-0000-4000-8000-000000000003"},
                            {"seat_id": "c2d4e6f8-0000-4000-8000-000000000004",
                             "guard": False},
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


def to_requests(
    event: OffboardingEvent, webhook_id: str
) -> list[RevocationInput | PersonInput]:
    """One request per target (or one person request for a scope), or ``MappingError``
    naming every bad field.

    Whether a bare seat id may go unguarded is the producer's decision (it knows the
    store); this mapping keeps the person and passes ``guard=False`` only when asked.
    """
    data = event.data
    if data.scope is not None:
        return [_person_request(event, webhook_id, data.scope)]
    out: list[RevocationInput | PersonInput] = []
    errors: list[dict[str, Any]] = []
    person = data.person.model_dump(exclude_none=True)
    for index, target in enumerate(data.targets):
        fields: dict[str, Any] = target.model_dump(exclude_none=True, exclude={"guard"})
        fields.update(person)
        if not target.guard:
            fields["guard"] = False
        if data.effective_at is not None:
            fields["effective_at"] = data.effective_at
        fields.update(
            key=idempotency_key(webhook_id, index),
            reason=data.reason or None,
            requested_by=REQUESTED_BY,
            priority=data.priority,
        )
        try:
            out.append(RevocationInput(**fields))
        except ValidationError as exc:
            errors.extend(_located(exc, index))
    if errors:
        raise MappingError(errors)
    return out


def _person_request(event: OffboardingEvent, webhook_id: str, scope: Scope) -> PersonInput:
    person = event.data.person
    if person.customer_id:
        raise MappingError([{"loc": ("body", "data", "person", "customer_id"),
                             "msg": "with a scope, name the person by email, external_id or "
                                    "member_id; the customer goes in scope.customer_id",
                             "type": "value_error"}])
    digest = hashlib.sha256(webhook_id.encode()).hexdigest()[:32]
    try:
        return PersonInput(
            email=person.email, external_id=person.external_id, member_id=person.member_id,
            **scope.model_dump(), key=f"webhook:{digest}:person",
            reason=event.data.reason or None, requested_by=REQUESTED_BY,
            effective_at=event.data.effective_at)
    except ValidationError as exc:
        errors = []
        for error in exc.errors(include_url=False, include_context=False,
                                include_input=False):
            name = str(error["loc"][0]) if error["loc"] else ""
            where = ("person" if name in _PERSON_FIELDS else "scope")
            loc = ("body", "data", where, name) if name else ("body", "data", "scope")
            errors.append({"loc": loc, "msg": error["msg"], "type": error["type"]})
        raise MappingError(errors) from None


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
