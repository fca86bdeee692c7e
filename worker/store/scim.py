"""SCIM tenants and users in the record store.

A tenant is one identity provider's connection for one Polar customer. Its bearer token is
shown once when the tenant is created and only its SHA-256 digest is stored: a token is
looked up by its digest, so it is never kept, logged or compared in clear. Users are the
identity mapping the provider provisioned (``ScimUser.resource`` is the SCIM resource as
last written); they are always read and written within one tenant.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from worker.store.models import ScimTenant, ScimUser, utcnow
from worker.store.records import Store

TOKEN_PREFIX = "srscim_"


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class NewTenant:
    tenant: ScimTenant
    token: str  # shown once, never stored


class UserNameTaken(Exception):
    """Another user of the tenant has this userName."""


def create_tenant(
    store: Store, *, customer_id: str | None = None, customer_external_id: str | None = None,
    created_by: str | None = None,
) -> NewTenant:
    if (customer_id is None) == (customer_external_id is None):
        raise ValueError("a SCIM tenant is one Polar customer: give its id or its external id")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    tenant = ScimTenant(id=str(uuid.uuid4()), customer_id=customer_id,
                        customer_external_id=customer_external_id,
                        token_hash=token_digest(token), created_by=created_by,
                        created_at=utcnow())
    with store.session() as session:
        session.add(tenant)
    return NewTenant(tenant, token)


def tenant_by_token(store: Store, token: str) -> ScimTenant | None:
    if not token.startswith(TOKEN_PREFIX):
        return None
    with store.session() as session:
        return session.scalar(select(ScimTenant).where(
            ScimTenant.token_hash == token_digest(token)))


def list_tenants(store: Store) -> list[ScimTenant]:
    with store.session() as session:
        return list(session.scalars(select(ScimTenant).order_by(ScimTenant.created_at)))


def get_user(store: Store, tenant_id: str, user_id: str) -> ScimUser | None:
    with store.session() as session:
        return session.scalar(select(ScimUser).where(
            ScimUser.tenant_id == tenant_id, ScimUser.id == user_id,
            ScimUser.deleted.is_(False)))


def scim_user(store: Store, user_id: str) -> ScimUser | None:
    """A user by id in any tenant (operators' reports; deleted ones too)."""
    with store.session() as session:
        return session.get(ScimUser, user_id)


def tenant_users(store: Store, tenant_id: str, *, user_name: str | None = None,
                 external_id: str | None = None) -> list[ScimUser]:
    """The tenant's users (not deleted), oldest first: the order list pages follow.
    ``user_name`` (any case) and ``external_id`` narrow the read in the database (the
    caller still applies the whole filter)."""
    query = select(ScimUser).where(ScimUser.tenant_id == tenant_id,
                                   ScimUser.deleted.is_(False))
    if user_name is not None:
        query = query.where(func.lower(ScimUser.user_name) == user_name.lower())
    if external_id is not None:
        query = query.where(ScimUser.external_id == external_id)
    with store.session() as session:
        return list(session.scalars(query.order_by(ScimUser.created_at, ScimUser.id)))


def add_user(store: Store, tenant_id: str, user_id: str, user_name: str,
             external_id: str | None, active: bool, resource: dict[str, Any]) -> ScimUser:
    now = utcnow()
    user = ScimUser(id=user_id, tenant_id=tenant_id, user_name=user_name,
                    external_id=external_id, active=active, resource=resource,
                    deactivations=0, deleted=False, created_at=now, updated_at=now)
    try:
        with store.session() as session:
            _check_name_free(session, tenant_id, user_name, user_id)
            session.add(user)
    except IntegrityError:
        raise UserNameTaken(user_name) from None
    return user


def save_user(store: Store, user: ScimUser, *, user_name: str, external_id: str | None,
              active: bool, resource: dict[str, Any], deactivated: bool = False,
              request_id: str | None = None, deleted: bool = False) -> ScimUser:
    """Write a user's new state; ``deactivated`` counts one more offboarding."""
    values: dict[str, Any] = {"user_name": user_name, "external_id": external_id,
                              "active": active, "resource": resource,
                              "updated_at": utcnow(), "deleted": deleted}
    if deactivated:
        values["deactivations"] = ScimUser.deactivations + 1
    if request_id is not None:
        values["last_request_id"] = request_id
    try:
        with store.session() as session:
            _check_name_free(session, user.tenant_id, user_name, user.id)
            session.execute(update(ScimUser).where(ScimUser.id == user.id).values(**values))
            saved = session.get(ScimUser, user.id, populate_existing=True)
            assert saved is not None
            return saved
    except IntegrityError:
        raise UserNameTaken(user_name) from None


def _check_name_free(session: Any, tenant_id: str, user_name: str, user_id: str) -> None:
    """userName is unique per tenant, case-insensitively (RFC 7643 §4.1.1: caseExact
    false); a deleted user's name is free again."""
    taken = session.scalar(select(ScimUser.id).where(
        ScimUser.tenant_id == tenant_id, ScimUser.id != user_id,
        ScimUser.deleted.is_(False)).where(
        ScimUser.user_name.ilike(user_name.replace("\\", "\\\\").replace("%", "\\%")
                                 .replace("_", "\\_"), escape="\\")))
    if taken is not None:
        raise UserNameTaken(user_name)
