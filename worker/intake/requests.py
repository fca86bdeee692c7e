"""What a producer may ask for, validated before anything is written or enqueued."""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from config.settings import Priority
from worker.decisions.identity import Occupant

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
UUID_FIELDS = ("seat_id", "subscription_id", "order_id", "member_id", "customer_id")


class RevocationInput(BaseModel):
    """One revocation request as a producer states it.

    Either a ``seat_id`` or a subscription/order plus the person whose seat it is. Naming
    the person (email, member id, customer id or external id) needs the subscription or
    order to find the seat: the seat list is the only place where Polar shows who holds
    one. A seat id without a subscription/order is guarded through the one this system
    saw it in (the producer fills it in, or refuses the request); ``guard=False`` opts out
    where none is known.
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    seat_id: str | None = None
    subscription_id: str | None = None
    order_id: str | None = None
    email: str | None = Field(None, max_length=320)
    member_id: str | None = None
    customer_id: str | None = None
    external_id: str | None = Field(None, min_length=1, max_length=200)
    mode: Literal["organization", "customer_portal"] = "organization"
    key: str | None = Field(None, min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$")
    reason: str | None = Field(None, max_length=2000)
    requested_by: str | None = Field(None, max_length=200)
    # Revoke on the person's last day: stored as scheduled, enqueued when due.
    effective_at: datetime | None = None
    # False: a bare seat id may be revoked even when its subscription/order (the only place
    # Polar shows who holds it) is unknown. Off by default; the record then says so.
    guard: bool = True
    # Lane: ``urgent`` overtakes ``bulk`` in the broker and the rate limiter. Unset: single
    # requests are urgent, batch rows bulk (``default_priority``).
    priority: Priority | None = None

    @field_validator(*UUID_FIELDS)
    @classmethod
    def _uuid(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        try:
            parsed = uuid.UUID(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a UUID") from None
        if parsed.version != 4:
            # Polar types every id as UUID4 and answers 422 to any other version.
            raise ValueError(f"{value!r} is not a UUID version 4, as Polar's ids are")
        return str(parsed)

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        if not _EMAIL.match(value):
            raise ValueError(f"{value!r} is not an email address")
        return value

    @field_validator("priority", mode="before")
    @classmethod
    def _priority(cls, value: object) -> object:
        if isinstance(value, str):
            return value.strip().lower() or None
        return value

    @field_validator("external_id", "key", "reason", "requested_by", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("effective_at", mode="before")
    @classmethod
    def _blank_time(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("effective_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    @model_validator(mode="after")
    def _consistent(self) -> RevocationInput:
        if self.subscription_id and self.order_id:
            raise ValueError("give subscription_id or order_id, not both")
        container = self.subscription_id or self.order_id
        if not self.seat_id and not (container and self.occupant.is_named):
            raise ValueError(
                "give seat_id, or subscription_id/order_id plus the person "
                "(email, member_id, customer_id or external_id)"
            )
        return self

    @property
    def occupant(self) -> Occupant:
        return Occupant(self.email, self.member_id, self.customer_id, self.external_id)

    def idempotency_key(self) -> str:
        """The producer's key, else one derived from the seat (or container) and the person."""
        if self.key:
            return self.key
        identity = {
            "seat_id": self.seat_id,
            "container": None if self.seat_id else (self.subscription_id or self.order_id),
            "email": self.email.casefold() if self.email else None,
            "member_id": self.member_id,
            "customer_id": self.customer_id,
            "external_id": self.external_id,
            "mode": self.mode,
        }
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
        return f"auto:{digest[:40]}"


class PersonInput(BaseModel):
    """Offboard a person: every seat they hold in a scope, without naming any seat.

    The person by ``email``, ``external_id`` or ``member_id`` (any subset: each one named
    must agree with what a seat shows); the scope by exactly one of ``customer_id`` (a
    Polar customer), ``customer_external_id`` (its external id) or ``all_customers``
    (the whole organization, said explicitly).
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    email: str | None = Field(None, max_length=320)
    external_id: str | None = Field(None, min_length=1, max_length=200)
    member_id: str | None = None
    customer_id: str | None = None
    customer_external_id: str | None = Field(None, min_length=1, max_length=200)
    all_customers: bool = False
    key: str | None = Field(None, min_length=1, max_length=200, pattern=r"^[\x21-\x7e]+$")
    reason: str | None = Field(None, max_length=2000)
    requested_by: str | None = Field(None, max_length=200)
    effective_at: datetime | None = None
    # Lane, as for a seat request: person offboarding is urgent unless it says bulk or a
    # batch carries it.
    priority: Priority | None = None

    @field_validator("priority", mode="before")
    @classmethod
    def _priority(cls, value: object) -> object:
        return value.strip().lower() or None if isinstance(value, str) else value

    @field_validator("member_id", "customer_id")
    @classmethod
    def _uuid(cls, value: str | None) -> str | None:
        return _uuid4(value)

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        return _email_address(value)

    @field_validator("external_id", "customer_external_id", "key", "reason", "requested_by",
                     "effective_at", mode="before")
    @classmethod
    def _blank_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("effective_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return _as_utc(value)

    @model_validator(mode="after")
    def _consistent(self) -> PersonInput:
        if not (self.email or self.external_id or self.member_id):
            raise ValueError("name the person: email, external_id or member_id")
        scopes = [bool(self.customer_id), bool(self.customer_external_id), self.all_customers]
        if sum(scopes) != 1:
            raise ValueError("give exactly one scope: customer_id, customer_external_id, or "
                             "all_customers (the whole organization)")
        return self

    @property
    def occupant(self) -> Occupant:
        return Occupant(email=self.email, member_id=self.member_id,
                        external_id=self.external_id)

    def idempotency_key(self) -> str:
        """The producer's key, else one derived from the person and the scope."""
        if self.key:
            return self.key
        identity = {
            "person": True,
            "email": self.email.casefold() if self.email else None,
            "external_id": self.external_id,
            "member_id": self.member_id,
            "customer_id": self.customer_id,
            "customer_external_id": self.customer_external_id,
            "all_customers": self.all_customers,
        }
        digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
        return f"auto:person:{digest[:40]}"


def _uuid4(value: str | None) -> str | None:
    return RevocationInput._uuid(value)


def _email_address(value: str | None) -> str | None:
    return RevocationInput._email(value)


def _as_utc(value: datetime | None) -> datetime | None:
    return RevocationInput._utc(value)
