"""Customers and members of the sandbox organization, with Polar's lookups and JSON shapes.

A customer is unique per organization by email (case-insensitive) and by external id
(polarsource/polar server/polar/customer/repository.py). A member belongs to one customer
and is unique within it by email (case-insensitive) and by external id
(server/polar/models/member.py); `Member` JSON is server/polar/member/schemas.py `Member`,
`Customer` JSON is server/polar/customer/schemas/customer.py `CustomerIndividual`.
Not thread-safe: `SandboxState` holds its lock around every call.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from worker.sandbox.errors import SandboxError

__all__ = ["Customer", "Directory", "Member", "MemberRole", "iso"]


def iso(value: datetime | None) -> str | None:
    """Serialise a datetime the way Polar (pydantic) does: ISO 8601 with `Z`."""
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def new_id() -> str:
    """A fresh id; Polar's ids are UUID version 4."""
    return str(uuid.uuid4())


def _lower(email: str | None) -> str | None:
    return None if email is None else email.lower()


class MemberRole(StrEnum):
    """server/polar/models/member.py MemberRole."""

    OWNER = "owner"
    BILLING_MANAGER = "billing_manager"
    MEMBER = "member"


@dataclass(slots=True)
class Customer:
    """A customer: a purchaser (billing customer) or, in legacy seats, a seat holder."""

    id: str
    created_at: datetime
    email: str | None
    external_id: str | None = None
    name: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_json(self, organization_id: str) -> dict[str, Any]:
        return {
            "created_at": iso(self.created_at),
            "modified_at": None,
            "id": self.id,
            "metadata": dict(self.metadata),
            "external_id": self.external_id,
            "email": self.email,
            "email_verified": False,
            "type": "individual" if self.email is not None else "team",
            "name": self.name,
            "billing_name": self.name,
            "billing_address": None,
            "tax_id": None,
            "locale": None,
            "organization_id": organization_id,
            "default_payment_method_id": None,
            "deleted_at": None,
            "first_user_event_at": None,
            "avatar_url": None,
        }


@dataclass(slots=True)
class Member:
    """A member of a customer (the seat holder in member-model seats)."""

    id: str
    created_at: datetime
    modified_at: datetime | None
    customer_id: str
    email: str
    name: str | None = None
    external_id: str | None = None
    role: MemberRole = MemberRole.MEMBER

    def to_json(self) -> dict[str, Any]:
        return {
            "created_at": iso(self.created_at),
            "modified_at": iso(self.modified_at),
            "id": self.id,
            "customer_id": self.customer_id,
            "email": self.email,
            "name": self.name,
            "external_id": self.external_id,
            "role": self.role.value,
        }


class Directory:
    """Every customer and member, indexed the way Polar looks them up.

    While `undo` is a list, every change appends the action that reverts it (so a failed
    batch can leave no trace, like Polar's rolled-back transaction).
    """

    def __init__(self) -> None:
        self.undo: list[Callable[[], None]] | None = None
        self.customers: dict[str, Customer] = {}
        self.members: dict[str, Member] = {}
        self._customer_by_email: dict[str, str] = {}
        self._customer_by_external: dict[str, str] = {}
        self._member_by_email: dict[tuple[str, str], str] = {}
        self._member_by_external: dict[tuple[str, str], str] = {}
        self._issued: set[str] = set()  # generated addresses

    # -- customers -------------------------------------------------------------------------

    def add_customer(
        self,
        now: datetime,
        email: str | None,
        external_id: str | None = None,
        name: str | None = None,
        customer_id: str | None = None,
    ) -> Customer:
        """Create a customer; 409 when its id, email or external id is taken."""
        customer_id = customer_id or new_id()
        if customer_id in self.customers:
            raise _conflict(f"Customer {customer_id} already exists")
        if email is not None and _lower(email) in self._customer_by_email:
            raise _conflict("A customer with this email address already exists.")
        if external_id is not None and external_id in self._customer_by_external:
            raise _conflict("A customer with this external ID already exists.")
        customer = Customer(customer_id, now, email, external_id, name)
        self.customers[customer_id] = customer
        if email is not None:
            self._customer_by_email[email.lower()] = customer_id
        if external_id is not None:
            self._customer_by_external[external_id] = customer_id
        self._remember(lambda: self._forget_customer(customer))
        return customer

    def billing_customer(self, now: datetime, customer_id: str | None) -> Customer:
        """The purchaser of a new subscription/order: the given one (created if unknown)
        or a new one with an address like `billing-1a2b3c4d@customers.test`."""
        if customer_id is not None and customer_id in self.customers:
            return self.customers[customer_id]
        email = self.unused_email("billing", "customers.test")
        return self.add_customer(now, email, customer_id=customer_id)

    def unused_email(self, prefix: str, domain: str) -> str:
        """A generated address, never handed out before (`billing-1a2b3c4d@customers.test`)."""
        while True:
            email = f"{prefix}-{secrets.token_hex(4)}@{domain}"
            if email not in self._issued and email not in self._customer_by_email:
                self._issued.add(email)
                return email

    def customer(self, customer_id: str) -> Customer:
        customer = self.customers.get(customer_id)
        if customer is None:
            raise SandboxError.not_found()
        return customer

    def customer_by_external_id(self, external_id: str) -> Customer:
        customer_id = self._customer_by_external.get(external_id)
        if customer_id is None:
            raise SandboxError.not_found()
        return self.customers[customer_id]

    def holder_customer(
        self,
        now: datetime,
        *,
        customer_id: str | None,
        email: str | None,
        external_id: str | None,
        name: str | None,
    ) -> Customer:
        """A legacy seat holder's own customer: the one named by id (404 if unknown), else
        found by external id or email, else created (customer_seat/service.py
        `_find_or_create_customer`)."""
        if customer_id is not None:
            if customer_id not in self.customers:
                raise SandboxError(404, "CustomerNotFound", f"Customer not found: {customer_id}")
            return self.customers[customer_id]
        found = self._customer_by_external.get(external_id or "") or self._customer_by_email.get(
            _lower(email) or ""
        )
        if found is not None:
            return self.customers[found]
        return self.add_customer(now, email, external_id, name)

    # -- members ---------------------------------------------------------------------------

    def seat_member(
        self,
        now: datetime,
        customer: Customer,
        *,
        member_id: str | None,
        email: str | None,
        external_id: str | None,
        name: str | None,
        role: MemberRole | None,
    ) -> Member:
        """The member under `customer` a seat goes to: by id, else by external id, else by
        email, else a new one (customer_seat/service.py `_resolve_member`,
        `_resolve_member_by_external_id`). A given `member_id` that is unknown becomes the
        new member's id."""
        if member_id is not None and member_id in self.members:
            member = self.members[member_id]
            if member.customer_id != customer.id:
                raise SandboxError(404, "MemberNotFound", f"Member not found: {member_id}")
            return member
        if external_id is not None:
            known = self._member_by_external.get((customer.id, external_id))
            if known is not None:
                member = self.members[known]
                if email is not None and member.email.lower() != email.lower():
                    raise _email_mismatch(external_id, email)
                return member
        if email is not None:
            known = self._member_by_email.get((customer.id, email.lower()))
            if known is not None:
                return self._link_external_id(self.members[known], external_id, email)
        email = email or self.unused_email("holder", "members.test")
        return self.add_member(
            now, customer.id, email, name=name, external_id=external_id,
            role=role or MemberRole.MEMBER, member_id=member_id,
        )

    def add_member(
        self,
        now: datetime,
        customer_id: str,
        email: str,
        *,
        name: str | None = None,
        external_id: str | None = None,
        role: MemberRole = MemberRole.MEMBER,
        member_id: str | None = None,
    ) -> Member:
        """Create a member; 404 for an unknown customer, 409 for a taken id/email/external id."""
        self.customer(customer_id)
        member_id = member_id or new_id()
        taken = (
            member_id in self.members
            or (customer_id, email.lower()) in self._member_by_email
            or (external_id is not None and (customer_id, external_id) in self._member_by_external)
        )
        if taken:
            raise _conflict("A member with this id, email or external ID already exists.")
        member = Member(member_id, now, None, customer_id, email, name, external_id, role)
        self.members[member_id] = member
        self._member_by_email[(customer_id, email.lower())] = member_id
        if external_id is not None:
            self._member_by_external[(customer_id, external_id)] = member_id
        self._remember(lambda: self._forget_member(member))
        return member

    def member(self, member_id: str) -> Member:
        member = self.members.get(member_id)
        if member is None:
            raise SandboxError(404, "MemberNotFound", f"Member not found: {member_id}")
        return member

    def members_of(self, customers: Iterable[str]) -> list[Member]:
        """Members of these customers, newest first (member/sorting.py: `-created_at`)."""
        wanted = set(customers)
        found = [m for m in self.members.values() if m.customer_id in wanted]
        return sorted(found, key=lambda m: m.created_at, reverse=True)

    def _link_external_id(self, member: Member, external_id: str | None, email: str) -> Member:
        if external_id is None or member.external_id == external_id:
            return member
        if member.external_id is not None:
            raise _email_mismatch(external_id, email)
        member.external_id = external_id
        self._member_by_external[(member.customer_id, external_id)] = member.id
        self._remember(lambda: self._unlink_external_id(member))
        return member

    def _remember(self, action: Callable[[], None]) -> None:
        if self.undo is not None:
            self.undo.append(action)

    def _forget_customer(self, customer: Customer) -> None:
        del self.customers[customer.id]
        self._customer_by_email.pop(_lower(customer.email) or "", None)
        self._customer_by_external.pop(customer.external_id or "", None)

    def _forget_member(self, member: Member) -> None:
        del self.members[member.id]
        self._member_by_email.pop((member.customer_id, member.email.lower()), None)
        self._member_by_external.pop((member.customer_id, member.external_id or ""), None)

    def _unlink_external_id(self, member: Member) -> None:
        self._member_by_external.pop((member.customer_id, member.external_id or ""), None)
        member.external_id = None


def _conflict(detail: str) -> SandboxError:
    return SandboxError(409, "Conflict", detail)


def _email_mismatch(external_id: str, email: str) -> SandboxError:
    """customer_seat/service.py MemberEmailMismatch."""
    return SandboxError(
        400,
        "MemberEmailMismatch",
        f"Member with external_member_id '{external_id}' exists but has a different email "
        f"than '{email}'",
    )
