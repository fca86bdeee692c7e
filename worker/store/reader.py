"""Reading the record store: a request, its history, requests by state, seat or person.

``RecordReader`` holds the engine and its sessions and everything that only reads;
``worker.store.records.Store`` adds the writes. Database errors come out of ``session()``
as ``StoreUnavailable``, one line naming the store.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, sessionmaker

from worker.decisions.outcomes import IN_FLIGHT_STATES, State
from worker.store.engine import DB_ERRORS, StoreUnavailable, describe_db_error, display_url
from worker.store.models import Batch, RequestEvent, RevocationRequest


class RecordReader:
    """The store's engine, sessions and read queries (``Store`` is the full store)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._store_id: str | None = None

    @property
    def url(self) -> str:
        """This store's URL for messages (password hidden, SQLite path absolute)."""
        return display_url(self.engine.url)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A transaction; database errors come out as ``StoreUnavailable`` (one line)."""
        try:
            with self._sessions.begin() as session:
                yield session
        except DB_ERRORS as exc:
            raise self._unavailable(exc) from exc

    def _unavailable(self, error: BaseException) -> StoreUnavailable:
        return StoreUnavailable(describe_db_error(error, self.url,
                                                  secret=self.engine.url.password))

    # -- reads ---------------------------------------------------------------------------

    def get(self, request_id: str) -> RevocationRequest | None:
        with self.session() as session:
            return session.get(RevocationRequest, request_id)

    def batch_approval(self, batch_id: str) -> str | None:
        """``awaiting``, ``approved``, ``rejected``, or None (the batch needed no approval)."""
        with self.session() as session:
            return session.scalar(select(Batch.approval).where(Batch.id == batch_id))

    def held(self, scope: str | None = None) -> list[RevocationRequest]:
        """Requests held at the breaker (of one scope), oldest first."""
        with self.session() as session:
            query = select(RevocationRequest).where(
                RevocationRequest.state == State.HELD.value)
            if scope is not None:
                query = query.where(RevocationRequest.held_scope == scope)
            return list(session.scalars(query.order_by(RevocationRequest.updated_at)))

    def get_by_key(self, key: str) -> RevocationRequest | None:
        with self.session() as session:
            return session.scalar(
                select(RevocationRequest).where(RevocationRequest.idempotency_key == key)
            )

    def find(
        self,
        *,
        states: Iterable[State],
        lease_before: datetime | None = None,
        effective_before: datetime | None = None,
        updated_since: datetime | None = None,
        limit: int = 1000,
    ) -> list[RevocationRequest]:
        """Requests in ``states``, oldest first, filtered by lease, due time or update time."""
        query = select(RevocationRequest).where(
            RevocationRequest.state.in_([s.value for s in states])
        )
        if lease_before is not None:
            query = query.where(
                (RevocationRequest.lease_expires_at < lease_before)
                | RevocationRequest.lease_expires_at.is_(None)
            )
        if effective_before is not None:
            query = query.where(RevocationRequest.effective_at <= effective_before)
        if updated_since is not None:
            query = query.where(RevocationRequest.updated_at >= updated_since)
        with self.session() as session:
            return list(session.scalars(query.order_by(RevocationRequest.updated_at).limit(limit)))

    def history(self, request_id: str) -> list[RequestEvent]:
        with self.session() as session:
            return list(
                session.scalars(
                    select(RequestEvent)
                    .where(RequestEvent.request_id == request_id)
                    .order_by(RequestEvent.id)
                )
            )

    def children_of(self, parent_id: str) -> list[RevocationRequest]:
        """The child requests of a person request (one per seat found), oldest first."""
        with self.session() as session:
            return list(session.scalars(
                select(RevocationRequest)
                .where(RevocationRequest.parent_id == parent_id)
                .order_by(RevocationRequest.created_at, RevocationRequest.id)
            ))

    def person_requests(self, *, email: str | None = None, external_id: str | None = None,
                        key_prefix: str | None = None, limit: int = 100
                        ) -> list[RevocationRequest]:
        """Person requests naming this address (any case) or external id, or whose
        idempotency key starts with ``key_prefix``, newest first."""
        query = select(RevocationRequest).where(RevocationRequest.kind == "person")
        if key_prefix is not None:
            escaped = (key_prefix.replace("\\", "\\\\").replace("%", "\\%")
                       .replace("_", "\\_"))
            query = query.where(RevocationRequest.idempotency_key.like(escaped + "%",
                                                                       escape="\\"))
        if email is not None:
            query = query.where(func.lower(RevocationRequest.occupant_email) == email.lower())
        if external_id is not None:
            query = query.where(RevocationRequest.occupant_external_id == external_id)
        with self.session() as session:
            return list(session.scalars(
                query.order_by(RevocationRequest.created_at.desc()).limit(limit)))

    def count_by_state(self, batch_id: str | None = None) -> dict[str, int]:
        query = select(RevocationRequest.state, func.count()).group_by(RevocationRequest.state)
        if batch_id is not None:
            query = query.where(RevocationRequest.batch_id == batch_id)
        with self.session() as session:
            return {state: count for state, count in session.execute(query).all()}

    def last_revocation_of_seat(
        self, seat_id: str, *, excluding: str
    ) -> RevocationRequest | None:
        """The newest request, other than ``excluding``, that revoked this seat."""
        with self.session() as session:
            return session.scalar(
                select(RevocationRequest)
                .where(
                    RevocationRequest.seat_id == seat_id,
                    RevocationRequest.state == State.REVOKED.value,
                    RevocationRequest.id != excluding,
                )
                .order_by(RevocationRequest.finished_at.desc())
                .limit(1)
            )

    def last_snapshot_of_seat(self, seat_id: str) -> dict[str, Any] | None:
        """The newest seat snapshot stored for this seat by any request (it names the
        seat's subscription/order, which stays the seat's for good)."""
        with self.session() as session:
            snapshots = session.scalars(
                select(RevocationRequest.seat_snapshot)
                .where(RevocationRequest.seat_id == seat_id)
                .order_by(RevocationRequest.updated_at.desc())
                .limit(20)
            )
            return next((snapshot for snapshot in snapshots if snapshot), None)

    def in_flight(self, *, updated_before: datetime, limit: int = 100_000
                  ) -> list[tuple[str, str]]:
        """(id, state) of queued, running and retrying requests last changed before
        ``updated_before`` — what the reconciler checks against the broker."""
        with self.session() as session:
            rows = session.execute(
                select(RevocationRequest.id, RevocationRequest.state)
                .where(RevocationRequest.state.in_([s.value for s in IN_FLIGHT_STATES]),
                       RevocationRequest.updated_at < updated_before)
                .limit(limit)
            ).all()
            return [(row[0], row[1]) for row in rows]

    def unsent(self, *, recorded_before: datetime, limit: int = 1000) -> list[str]:
        """Ids of queued requests whose message was never published (Redis was down or
        full), queued before ``recorded_before``, oldest first."""
        with self.session() as session:
            return list(session.scalars(
                select(RevocationRequest.id)
                .where(RevocationRequest.state == State.QUEUED.value,
                       RevocationRequest.sent_at.is_(None),
                       RevocationRequest.updated_at < recorded_before)
                .order_by(RevocationRequest.updated_at)
                .limit(limit)
            ))
