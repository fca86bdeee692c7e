"""Tables of the record store. The schema itself is created by the Alembic migrations in
``worker/store/migrations``; these classes must stay in step with them (a test checks that)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    false,
    true,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite stores naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the record store; use UTC-aware values")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar = {datetime: UTCDateTime, dict[str, Any]: JSON}


class RevocationRequest(Base):
    """One request to revoke one seat, from enqueue to its outcome."""

    __tablename__ = "revocation_requests"
    __table_args__ = (
        Index("ix_requests_state_updated", "state", "updated_at"),
        Index("ix_requests_batch_state", "batch_id", "state"),
        Index("ix_requests_lease", "state", "lease_expires_at"),
        Index("ix_requests_unsent", "state", "sent_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    seat_id: Mapped[str | None] = mapped_column(String(36), index=True)
    mode: Mapped[str] = mapped_column(String(20), default="organization")
    subscription_id: Mapped[str | None] = mapped_column(String(36))
    order_id: Mapped[str | None] = mapped_column(String(36))
    # The person being offboarded, as the producer named them.
    occupant_email: Mapped[str | None] = mapped_column(String(320), index=True)
    occupant_member_id: Mapped[str | None] = mapped_column(String(36))
    occupant_customer_id: Mapped[str | None] = mapped_column(String(36))
    occupant_external_id: Mapped[str | None] = mapped_column(String(200))
    # Who held the seat when the worker looked (from the seat list read before the DELETE).
    occupant_seen: Mapped[dict[str, Any] | None]
    state: Mapped[str] = mapped_column(String(20), index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_http_status: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    error_detail: Mapped[dict[str, Any] | None]
    seat_snapshot: Mapped[dict[str, Any] | None]
    requested_by: Mapped[str | None] = mapped_column(String(200))
    reason: Mapped[str | None] = mapped_column(Text)
    batch_id: Mapped[str | None] = mapped_column(ForeignKey("batches.id"))
    # Opaque name of a customer-session token kept in Redis (portal mode); never the token.
    portal_token_ref: Mapped[str | None] = mapped_column(String(64))
    effective_at: Mapped[datetime | None]
    lease_expires_at: Mapped[datetime | None]
    first_delete_at: Mapped[datetime | None]
    # A manual retry opens a new window: retry budget and attempt limit count from here.
    window_started_at: Mapped[datetime | None]
    attempts_before_window: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[datetime | None]
    # False only when the producer opted out of the occupant guard (a bare seat id whose
    # subscription/order is unknown): shown wherever the request is.
    guarded: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    # The seat id the producer named, when it was stale and the worker revoked the seat the
    # same person holds in the same subscription/order instead (``seat_id``).
    requested_seat_id: Mapped[str | None] = mapped_column(String(36))
    # Why the request ended as it did, in words for the operator (``needs_review``: what
    # to check); Polar's own error stays in ``last_error``.
    outcome_detail: Mapped[str | None] = mapped_column(Text)
    # Whether the seat list showed the person holding no active seat in the
    # subscription/order at the end, and when (None: not checked, e.g. an unguarded DELETE).
    end_state_verified: Mapped[bool | None] = mapped_column(Boolean)
    verified_at: Mapped[datetime | None]
    # When its current message was published to the broker; None while a queued request
    # has not been sent (Redis was down or full when it was recorded or re-queued): the
    # scheduler sends those within seconds of Redis taking messages again.
    sent_at: Mapped[datetime | None]
    # ``urgent`` (single requests: a termination) or ``bulk`` (batch rows): urgent work
    # overtakes bulk work in the broker (its own queue) and in the rate limiter.
    priority: Mapped[str] = mapped_column(String(10), default="urgent",
                                          server_default="urgent")
    # ``seat``: one seat (named, or the person's seat in one subscription/order).
    # ``person``: every seat the person named holds in a scope (``worker.jobs.person``); its
    # seats are revoked by child requests (``parent_id``), ``discovered`` lists them.
    kind: Mapped[str] = mapped_column(String(10), default="seat", server_default="seat")
    parent_id: Mapped[str | None] = mapped_column(
        ForeignKey("revocation_requests.id", name="fk_requests_parent"), index=True)
    # The scope of a person request: one Polar customer (by id or external id), or all.
    scope_customer_id: Mapped[str | None] = mapped_column(String(36))
    scope_external_customer_id: Mapped[str | None] = mapped_column(String(200))
    scope_all_customers: Mapped[bool] = mapped_column(Boolean, default=False,
                                                      server_default=false())
    discovered: Mapped[dict[str, Any] | None]
    # The breaker scope (``customer:<id>`` or ``org``) that held this request before its
    # DELETE (state ``held``); kept after a release or rejection as the record of it.
    held_scope: Mapped[str | None] = mapped_column(String(200), index=True)
    # ``kind=restore``: the request whose revoked seat this one re-assigns, and the seat id
    # Polar assigned (it can differ from the revoked one: Polar reuses revoked seat rows).
    restores_id: Mapped[str | None] = mapped_column(
        ForeignKey("revocation_requests.id", name="fk_requests_restores"), index=True)
    assigned_seat_id: Mapped[str | None] = mapped_column(String(36))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for column in self.__table__.columns:
            value = getattr(self, column.key)
            out[column.key] = value.isoformat() if isinstance(value, datetime) else value
        return out


class Batch(Base):
    """A bulk offboarding submission; its rows are revocation requests with its id."""

    __tablename__ = "batches"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(200))
    source: Mapped[str | None] = mapped_column(String(500))
    total: Mapped[int] = mapped_column(Integer, default=0)
    requested_by: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Four eyes on bulk work: ``awaiting`` until a different identity approves (``approved``)
    # or rejects (``rejected``) it; None when the batch needed no approval.
    approval: Mapped[str | None] = mapped_column(String(20))
    approved_by: Mapped[str | None] = mapped_column(String(200))
    approved_at: Mapped[datetime | None]


class BatchItem(Base):
    """One line of a batch file and the request it maps to (shared by duplicates)."""

    __tablename__ = "batch_items"

    batch_id: Mapped[str] = mapped_column(ForeignKey("batches.id"), primary_key=True)
    line: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("revocation_requests.id"), index=True)


class RequestEvent(Base):
    """History of a request: every state change and attempt, never rewritten."""

    __tablename__ = "request_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    request_id: Mapped[str] = mapped_column(ForeignKey("revocation_requests.id"), index=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    state: Mapped[str] = mapped_column(String(20))
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    detail: Mapped[dict[str, Any] | None]


class StoreIdentity(Base):
    """One row: this store's random id, written when the schema is created. Producers and
    workers sharing a namespace compare it through Redis, so two processes never work on
    two different stores unnoticed."""

    __tablename__ = "store_identity"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    store_id: Mapped[str] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookDelivery(Base):
    """Offboarding webhooks already accepted, keyed by their ``webhook-id``."""

    __tablename__ = "webhook_deliveries"

    webhook_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow)
    response: Mapped[dict[str, Any]]


class ScimTenant(Base):
    """One identity provider's SCIM connection, scoped to one Polar customer. Only the
    SHA-256 digest of its bearer token is kept."""

    __tablename__ = "scim_tenants"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    customer_id: Mapped[str | None] = mapped_column(String(36))
    customer_external_id: Mapped[str | None] = mapped_column(String(200))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_by: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ScimUser(Base):
    """A user as the tenant's identity provider provisioned it: the identity mapping only
    (creating one assigns no seat). ``resource`` is the SCIM resource as last written."""

    __tablename__ = "scim_users"
    __table_args__ = (
        UniqueConstraint("tenant_id", "user_name", name="uq_scim_users_tenant_user_name"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("scim_tenants.id"), index=True)
    user_name: Mapped[str] = mapped_column(String(320))
    external_id: Mapped[str | None] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean)
    resource: Mapped[dict[str, Any]]
    # How many times the user was deactivated (or deleted): names each person offboarding.
    deactivations: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_request_id: Mapped[str | None] = mapped_column(String(36))
    deleted: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
