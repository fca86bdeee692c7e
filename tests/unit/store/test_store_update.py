"""``Store.update`` changes only the columns of ``RequestChanges``: a key the type checker
could not see (a ``**dict``) is refused before anything is written."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from worker.decisions.outcomes import State
from worker.store.records import RequestChanges, Store


def test_update_refuses_a_column_that_is_not_updatable(tmp_path: Path) -> None:
    store = Store.from_url(f"sqlite:///{tmp_path / 'store.db'}")
    request_id = str(uuid.uuid4())
    store.add_requests([{"id": request_id, "idempotency_key": f"t:{request_id}",
                         "seat_id": str(uuid.uuid4()), "state": "queued"}])
    loose: dict[str, Any] = {"state": State.FAILED, "idempotency_key": "other"}
    with pytest.raises(TypeError, match="not updatable: idempotency_key"):
        store.update(request_id, **loose)
    record = store.get(request_id)
    assert record is not None and record.state == "queued"
    assert record.idempotency_key == f"t:{request_id}"
    changes: RequestChanges = {"state": State.FAILED, "last_error": "404"}
    updated = store.update(request_id, **changes)
    assert updated.state == "failed" and updated.finished_at is not None
    assert [e.state for e in store.history(request_id)] == ["queued", "failed"]
    store.engine.dispose()
