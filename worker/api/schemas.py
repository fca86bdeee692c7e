"""Request and response bodies of the REST API (they make the OpenAPI document)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from config.settings import Priority
from worker.store.batches import BatchSummary
from worker.store.models import RequestEvent, RevocationRequest


def no_nul(value: object) -> object:
    """Refuse text PostgreSQL cannot store (a NUL character) at the edge, on every backend."""
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("must not contain a NUL character")
    return value


class RevocationIn(BaseModel):
    """One revocation, with the same fields as ``seat-revoker revoke``."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "seat_id": "4f1c2b9e-0000-4000-8000-000000000001",
                    "subscription_id": "9a0e1d2c-0000-4000-8000-000000000002",
                    "email": "jane@acme.com",
                    "reason": "offboarding",
                }
            ]
        },
    )

    seat_id: str | None = Field(None, max_length=100)
    subscription_id: str | None = Field(None, max_length=100)
    order_id: str | None = Field(None, max_length=100)
    email: str | None = Field(None, max_length=320)
    member_id: str | None = Field(None, max_length=100)
    customer_id: str | None = Field(None, max_length=100)
    external_id: str | None = Field(None, max_length=200)
    key: str | None = Field(None, max_length=200, description="Idempotency key")
    reason: str | None = Field(None, max_length=2000)
    guard: bool = Field(
        True,
        description="false: revoke a bare seat_id without checking who holds it (when its "
        "subscription/order is unknown); the seat may have been reassigned",
    )
    priority: Priority = Field(
        "urgent", description="Lane: urgent (the default for a single request) overtakes "
        "bulk work (batch rows) in the queue and the rate limiter",
    )

    _text = field_validator(
        "seat_id", "subscription_id", "order_id", "email", "member_id", "customer_id",
        "external_id", "key", "reason",
    )(no_nul)


class HistoryEntry(BaseModel):
    model_config = ConfigDict(from_attributes=True)  # from a stored ``RequestEvent``

    at: datetime
    state: str
    attempt: int
    detail: dict[str, Any] | None = None


class RevocationOut(BaseModel):
    # A stored request as the API shows it, read from the ``RevocationRequest`` record's
    # attributes (``RevocationOut.of``). A comment, not a docstring: that would become a
    # description in the OpenAPI document.
    model_config = ConfigDict(from_attributes=True)

    id: str
    idempotency_key: str
    state: str = Field(description="needs_review: who holds the seat could not be decided; "
                       "nothing was deleted, outcome_detail says what to check")
    outcome_detail: str | None = Field(
        None, description="Why the request ended as it did, for operators"
    )
    seat_id: str | None = Field(description="The seat revoked (or to revoke)")
    requested_seat_id: str | None = Field(
        None, description="The seat id the producer named, when it was stale and the "
        "person's seat in the same subscription/order was revoked instead",
    )
    guarded: bool = Field(
        True, description="false: revoked without checking who holds the seat"
    )
    end_state_verified: bool | None = Field(
        None, description="Whether the seat list showed the person holding no active seat "
        "at the end (null: not checked)",
    )
    verified_at: datetime | None = None
    priority: str = Field("urgent", description="Lane: urgent or bulk")
    kind: str = Field("seat", description="seat, or person: every seat the person holds in "
                      "a scope, revoked by child requests (GET /v1/people/{id})")
    parent_id: str | None = Field(None, description="The person request this seat's "
                                  "request was made for")
    mode: str
    subscription_id: str | None
    order_id: str | None
    occupant_email: str | None
    occupant_member_id: str | None
    occupant_customer_id: str | None
    occupant_external_id: str | None
    occupant_seen: dict[str, Any] | None
    attempts: int
    last_http_status: int | None
    last_error: str | None
    error_detail: dict[str, Any] | None
    seat_snapshot: dict[str, Any] | None
    requested_by: str | None
    reason: str | None
    batch_id: str | None
    effective_at: datetime | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    history: list[HistoryEntry] | None = None

    # A record not yet flushed has None where the column default applies.
    @field_validator("guarded", mode="before")
    @classmethod
    def _guarded_unless_false(cls, value: object) -> bool:
        return value is not False

    @field_validator("priority", mode="before")
    @classmethod
    def _urgent_by_default(cls, value: object) -> object:
        return value or "urgent"

    @field_validator("kind", mode="before")
    @classmethod
    def _seat_by_default(cls, value: object) -> object:
        return value or "seat"

    @classmethod
    def of(
        cls, record: RevocationRequest, history: list[RequestEvent] | None = None
    ) -> RevocationOut:
        """The record (and its history, when given: ``GET /v1/revocations/{id}``)."""
        out = cls.model_validate(record)
        if history is not None:
            out.history = [HistoryEntry.model_validate(event) for event in history]
        return out


class SubmitOut(BaseModel):
    created: bool = Field(description="False: the idempotency key existed; nothing was sent")
    request: RevocationOut


class KeyConflictOut(BaseModel):
    detail: str
    idempotency_key: str
    request_id: str = Field(description="The stored request that holds the key")
    fields: list[str] = Field(description="What differs from the stored request")


class RevocationPage(BaseModel):
    items: list[RevocationOut]
    total: int
    next_cursor: str | None = None
    next_offset: int | None = None


class BatchOut(BaseModel):
    id: str
    name: str | None
    source: str | None
    total: int
    requested_by: str | None
    created_at: datetime
    counts: dict[str, int]
    finished: int
    done: bool
    succeeded: int = Field(0, description="Requests whose outcome is a success")
    needs_attention: int = Field(
        0, description="Requests that are failed or needs_review: not successful"
    )
    elapsed_s: float | None = None

    @classmethod
    def of(cls, summary: BatchSummary) -> BatchOut:
        """The batch as the API shows it (``elapsed_s`` only where it was measured: one
        batch, not a list)."""
        batch = summary.batch
        return cls(
            id=batch.id, name=batch.name, source=batch.source, total=summary.total,
            requested_by=batch.requested_by, created_at=batch.created_at,
            counts=summary.counts, finished=summary.finished, done=summary.done,
            succeeded=summary.succeeded, needs_attention=summary.attention,
            elapsed_s=None if summary.elapsed_s is None else round(summary.elapsed_s, 3),
        )


class BatchPage(BaseModel):
    items: list[BatchOut]
    total: int
    next_offset: int | None = None


class BatchCreated(BaseModel):
    batch_id: str
    total: int
    created: int
    duplicates: int
    request_ids: list[str]


class LineErrorOut(BaseModel):
    line: int
    message: str


class BatchRejected(BaseModel):
    detail: str
    errors: list[LineErrorOut]


class WebhookAccepted(BaseModel):
    webhook_id: str
    request_ids: list[str]


class WebhookIgnored(BaseModel):
    ignored: bool = True
    type: str
