"""Cancellation in the store: an operator's cancel and a DELETE never both win.

Every write here is a compare-and-set in one statement, so it holds with any number of
workers and operators at once, on SQLite and PostgreSQL alike:

- ``begin_delete``: a seat request stamps ``first_delete_at`` just before each DELETE, only
  while it is running and its person request (if any) is not cancelled;
- ``cancel_children``: the seat requests of a cancelled person request that have not
  stamped ``first_delete_at`` (``may_cancel(…, with_person=True)``) end ``cancelled`` with
  the person's actor; a worker that was refused its DELETE cancels its own request so;
- ``hold_parent``: children are recorded only in the transaction that finds their person
  request still going (``ParentStopped`` otherwise), so none is made after a cancel.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import and_, exists, func, insert, or_, select, update
from sqlalchemy.orm import Session, aliased

from worker.decisions.outcomes import CANCELLABLE_STATES, TERMINAL_STATES, State
from worker.store.models import RequestEvent, RevocationRequest, utcnow
from worker.store.reader import RecordReader

Request = RevocationRequest


class ParentStopped(Exception):
    """The person request is no longer going (it was cancelled): no child was recorded."""


def hold_parent(session: Session, parent_id: str) -> None:
    """In the caller's transaction: lock the person request's row while it has not ended
    (a cancel waits for this transaction, then finds its children), else ``ParentStopped``."""
    result = session.execute(
        update(Request)
        .where(Request.id == parent_id,
               Request.state.not_in([s.value for s in TERMINAL_STATES]))
        .values(updated_at=utcnow())
    )
    if result.rowcount == 0:  # type: ignore[attr-defined]
        raise ParentStopped(parent_id)


class Cancels(RecordReader):
    """The store's cancellation writes (mixed into ``worker.store.records.Store``)."""

    def begin_delete(self, request_id: str, *, at: datetime) -> bool:
        """Stamp ``first_delete_at`` (kept if set) before a DELETE is sent: True while the
        request is running and its person request is not cancelled; False means send no
        DELETE (an operator cancelled it, or its person)."""
        parent = aliased(Request)
        parent_cancelled = exists().where(parent.id == Request.parent_id,
                                          parent.state == State.CANCELLED.value)
        with self.session() as session:
            result = session.execute(
                update(Request)
                .where(Request.id == request_id, Request.state == State.RUNNING.value,
                       ~parent_cancelled)
                .values(first_delete_at=func.coalesce(Request.first_delete_at, at))
                .execution_options(synchronize_session=False)
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    def cancel_children(self, parent_id: str, *, child_id: str | None = None) -> list[str]:
        """End ``cancelled`` the seat requests of the cancelled person request
        ``parent_id`` that have not sent their DELETE; returns their ids. With
        ``child_id``: only that running child, whose worker was refused its DELETE
        (``begin_delete``). Each is recorded with the person's cancellation and its actor."""
        now = utcnow()
        if child_id is not None:
            which = and_(Request.id == child_id, Request.state == State.RUNNING.value)
        else:
            which = or_(Request.state.in_([s.value for s in CANCELLABLE_STATES]),
                        and_(Request.state == State.RUNNING.value,
                             Request.first_delete_at.is_(None)))
        with self.session() as session:
            detail = self._cancelled_with(session, parent_id)
            if detail is None:
                return []
            rows = session.execute(
                update(Request)
                .where(Request.parent_id == parent_id, which)
                .values(state=State.CANCELLED.value, updated_at=now, finished_at=now,
                        lease_expires_at=None)
                .returning(Request.id, Request.attempts)
                .execution_options(synchronize_session=False)
            ).all()
            if rows:
                session.execute(insert(RequestEvent), [
                    {"request_id": rid, "at": now, "state": State.CANCELLED.value,
                     "attempt": attempts, "detail": detail} for rid, attempts in rows])
            return [row[0] for row in rows]

    @staticmethod
    def _cancelled_with(session: Session, parent_id: str) -> dict[str, Any] | None:
        """What a child's cancellation records: its person's, with who cancelled it; None
        unless the person request is cancelled."""
        state = session.scalar(select(Request.state).where(Request.id == parent_id))
        if state != State.CANCELLED.value:
            return None
        event = session.scalars(
            select(RequestEvent)
            .where(RequestEvent.request_id == parent_id,
                   RequestEvent.state == State.CANCELLED.value)
            .order_by(RequestEvent.id.desc()).limit(1)
        ).first()
        cause = dict(event.detail or {}) if event is not None else {}
        return {**cause, "cancelled": "with its person request", "person_request": parent_id}
