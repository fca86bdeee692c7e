"""The store's cancellation writes agree with ``may_cancel`` and never lose to a run that
began before the cancel: the DELETE's compare-and-set, the children swept with their
person's actor, no child recorded for a cancelled person, no ending written over a
cancel. SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from worker.decisions.outcomes import State, may_cancel
from worker.store.cancels import ParentStopped
from worker.store.models import utcnow
from worker.store.records import Store


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    opened = Store.from_url(database_url)
    yield opened
    opened.engine.dispose()


def row(state: State, **fields: Any) -> dict[str, Any]:
    request_id = str(uuid.uuid4())
    return {"id": request_id, "idempotency_key": f"t:{request_id}", "kind": "seat",
            "seat_id": str(uuid.uuid4()), "state": state.value, "parent_id": None,
            "first_delete_at": None, **fields}


def person(store: Store, state: State = State.RUNNING) -> str:
    parent = row(state, kind="person", seat_id=None)
    store.add_requests([parent])
    return str(parent["id"])


def cancel(store: Store, request_id: str, by: str = "cli:ops") -> None:
    states = [s for s in State if may_cancel(s, kind="person")]
    assert store.transition([request_id], from_states=states, to_state=State.CANCELLED,
                            detail={"cancelled": "operator", "by": by})


def test_children_swept_are_exactly_those_may_cancel_names(store: Store) -> None:
    parent = person(store)
    cases = [(state, sent) for state in State for sent in (False, True)]
    rows = [row(state, parent_id=parent, first_delete_at=utcnow() if sent else None)
            for state, sent in cases]
    store.add_requests(rows)
    cancel(store, parent, by="dashboard:ana")

    swept = set(store.cancel_children(parent))

    for (state, sent), child in zip(cases, rows, strict=True):
        expected = may_cancel(state, kind="seat", delete_sent=sent, with_person=True)
        assert (child["id"] in swept) is expected, (state, sent)
        record = store.get(child["id"])
        assert record is not None
        assert record.state == (State.CANCELLED if expected else state)
        if expected:
            last = store.history(child["id"])[-1]
            assert last.detail == {"cancelled": "with its person request", "by": "dashboard:ana",
                                   "person_request": parent}
            assert record.finished_at is not None and record.lease_expires_at is None


def test_no_child_is_swept_while_the_person_request_goes_on(store: Store) -> None:
    parent = person(store)
    child = row(State.QUEUED, parent_id=parent)
    store.add_requests([child])
    assert store.cancel_children(parent) == []
    assert store.get(child["id"]).state == "queued"  # type: ignore[union-attr]


def test_the_delete_is_begun_only_while_running_and_its_person_not_cancelled(
    store: Store,
) -> None:
    parent = person(store)
    alone, child, queued = (row(State.RUNNING), row(State.RUNNING, parent_id=parent),
                            row(State.QUEUED))
    store.add_requests([alone, child, queued])
    first = utcnow()
    assert store.begin_delete(alone["id"], at=first)
    assert store.begin_delete(alone["id"], at=utcnow())  # a later try keeps the first stamp
    assert store.get(alone["id"]).first_delete_at == first  # type: ignore[union-attr]
    assert not store.begin_delete(queued["id"], at=first)

    cancel(store, parent)
    assert not store.begin_delete(child["id"], at=first)
    assert store.get(child["id"]).first_delete_at is None  # type: ignore[union-attr]
    assert store.cancel_children(parent, child_id=child["id"]) == [child["id"]]


def test_a_cancel_and_a_delete_never_both_win(store: Store) -> None:
    """Whichever comes first: the child's stamp (then the sweep leaves it to finish) or
    the sweep (then the stamp is refused)."""
    parent = person(store)
    early, late = row(State.RUNNING, parent_id=parent), row(State.RUNNING, parent_id=parent)
    store.add_requests([early, late])
    assert store.begin_delete(early["id"], at=utcnow())
    cancel(store, parent)
    assert store.cancel_children(parent) == [late["id"]]
    assert not store.begin_delete(late["id"], at=utcnow())
    assert store.get(early["id"]).state == "running"  # type: ignore[union-attr]


def test_a_cancelled_person_request_gets_no_new_child(store: Store) -> None:
    parent = person(store)
    cancel(store, parent)
    child = row(State.QUEUED, parent_id=parent)
    with pytest.raises(ParentStopped):
        store.add_requests([child], parent_id=parent)
    assert store.get(child["id"]) is None and store.children_of(parent) == []
    going = person(store)
    assert store.add_requests([row(State.QUEUED, parent_id=going)], parent_id=going)


def test_an_ending_written_after_a_cancel_does_not_replace_it(store: Store) -> None:
    request = row(State.RUNNING)
    store.add_requests([request])
    store.transition([request["id"]], from_states=[State.RUNNING], to_state=State.CANCELLED)
    for late in (State.OCCUPANT_MISMATCH, State.RETRYING, State.REVOKED):
        assert store.update(request["id"], state=late, outcome_detail="late").state == "cancelled"
    record = store.get(request["id"])
    assert record is not None and record.state == "cancelled" and record.outcome_detail is None
    assert [e.state for e in store.history(request["id"])] == ["running", "cancelled"]
