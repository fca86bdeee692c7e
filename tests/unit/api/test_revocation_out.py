"""``RevocationOut`` is read from a record's attributes (pydantic ``from_attributes``): every
field as stored, the column defaults for a record not yet flushed, and its history."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from worker.api.schemas import RevocationOut
from worker.store.models import RequestEvent, RevocationRequest

NOW = datetime(2026, 12, 1, tzinfo=UTC)


def record(**fields: object) -> RevocationRequest:
    base: dict[str, object] = {"id": str(uuid.uuid4()), "idempotency_key": "k",
                               "seat_id": "s1", "mode": "organization", "state": "queued",
                               "attempts": 0, "created_at": NOW, "updated_at": NOW}
    return RevocationRequest(**(base | fields))


def test_an_unflushed_record_shows_the_column_defaults() -> None:
    out = RevocationOut.of(record())
    assert (out.guarded, out.priority, out.kind, out.history) == (True, "urgent", "seat", None)


def test_every_field_is_read_from_the_record_with_its_history() -> None:
    rec = record(state="failed", attempts=2, guarded=False, priority="bulk", kind="person",
                 last_http_status=404, occupant_seen={"email": "jane@acme.com"},
                 outcome_detail="gone", finished_at=NOW)
    events = [RequestEvent(request_id=rec.id, at=NOW, state="failed", attempt=2,
                           detail={"status": 404})]
    out = RevocationOut.of(rec, events)
    for name in RevocationOut.model_fields:
        if name != "history":
            assert getattr(out, name) == getattr(rec, name), name
    assert out.history is not None
    assert [h.model_dump() for h in out.history] == [
        {"at": NOW, "state": "failed", "attempt": 2, "detail": {"status": 404}}]
