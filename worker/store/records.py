"""The record store: where every revocation request and its outcome lives.

``Store`` persists requests, batches and their history; the rules live in
``worker.jobs.revocation``. It reads through ``RecordReader`` (``worker.store.reader``),
sits on the engine and schema of ``worker.store.engine`` and is bound to its namespace by
``worker.store.binding``. Database errors come out as ``StoreError`` (one line).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, TypedDict, Unpack

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from worker.decisions.outcomes import TERMINAL_STATES, State
from worker.store.cancels import Cancels, hold_parent
from worker.store.engine import (
    CHECK_BUSY_TIMEOUT_MS,
    DB_ERRORS,
    SQLITE_BUSY_TIMEOUT,
    check_schema,
    make_engine,
    migrate,
)
from worker.store.models import (
    Batch,
    BatchItem,
    RequestEvent,
    RevocationRequest,
    StoreIdentity,
    utcnow,
)
from worker.store.reader import RecordReader


class RequestChanges(TypedDict, total=False):
    """The columns of a request that ``Store.update`` may change, with their types: mostly
    what a worker learns (seat, outcome, Polar's answer, what it saw) and when to look again.

    Not here: who and what the request is about, its idempotency key, batch and parent,
    fixed when it is recorded (``add_requests``), and what the store keeps itself
    (``updated_at``, ``finished_at``; ``attempts`` by ``claim``)."""

    state: State  # a change of state is added to the request's history
    seat_id: str | None
    requested_seat_id: str | None  # the stale seat named, when another one was revoked
    guarded: bool
    reason: str | None
    effective_at: datetime | None
    lease_expires_at: datetime | None
    first_delete_at: datetime | None
    last_http_status: int | None
    last_error: str | None
    error_detail: dict[str, Any] | None
    outcome_detail: str | None
    seat_snapshot: dict[str, Any] | None
    occupant_seen: dict[str, Any] | None
    end_state_verified: bool | None
    verified_at: datetime | None
    discovered: dict[str, Any] | None  # a person request's discovery rounds
    held_scope: str | None  # the breaker scope that held it (kept after a release)


class Store(Cancels, RecordReader):
    """Persistence of requests, batches and their history."""

    @classmethod
    def from_url(cls, database_url: str, *, migrate_schema: bool = True) -> Store:
        """Open (and by default create or migrate) the store; ``StoreError`` names what is
        wrong when it cannot be used."""
        engine = make_engine(database_url)
        if migrate_schema:
            try:
                migrate(engine)
            except BaseException:
                engine.dispose()
                raise
        return cls(engine)

    @classmethod
    def open_read_only(cls, database_url: str) -> Store:
        """Open the store as it is, for commands that only read: nothing is created or
        migrated. ``StoreError`` (one line naming the store and who creates or upgrades
        its schema) when the database, its tables or its newest migration are missing."""
        engine = make_engine(database_url, create=False)
        try:
            check_schema(engine)
        except BaseException:
            engine.dispose()
            raise
        return cls(engine)

    # -- identity and health ----------------------------------------------------------------

    def store_id(self) -> str:
        """This store's random id (written by the migration; created here if missing)."""
        if self._store_id is None:
            for _ in range(2):
                try:
                    with self.session() as session:
                        row = session.get(StoreIdentity, 1)
                        if row is None:
                            row = StoreIdentity(id=1, store_id=str(uuid.uuid4()),
                                                created_at=utcnow())
                            session.add(row)
                        self._store_id = row.store_id
                    break
                except IntegrityError:  # another process wrote it first: read that one
                    continue
        assert self._store_id is not None
        return self._store_id

    def check(self) -> None:
        """Raise ``StoreUnavailable`` unless the store takes a write right now.

        A real write (an UPDATE of the identity row) in a transaction that is rolled back,
        so a read-only file, a locked database, a read-only PostgreSQL server or a lost
        connection all show, not just a failed ``SELECT 1``. Meant for readiness probes
        (``/readyz``); a SQLite lock is waited for at most a few seconds here."""
        try:
            with self.engine.connect() as connection:
                sqlite = connection.dialect.name == "sqlite"
                if sqlite:
                    connection.exec_driver_sql(f"PRAGMA busy_timeout={CHECK_BUSY_TIMEOUT_MS}")
                try:
                    connection.execute(
                        update(StoreIdentity).where(StoreIdentity.id == 1)
                        .values(store_id=StoreIdentity.store_id)
                    )
                    connection.rollback()
                finally:
                    if sqlite and not connection.invalidated:
                        busy = int(float(self.engine.url.query.get(  # type: ignore[arg-type]
                            "timeout", SQLITE_BUSY_TIMEOUT)) * 1000)
                        connection.exec_driver_sql(f"PRAGMA busy_timeout={busy}")
        except DB_ERRORS as exc:
            raise self._unavailable(exc) from exc

    # -- requests -------------------------------------------------------------------------

    def add_requests(
        self,
        rows: Sequence[dict[str, Any]],
        batch: dict[str, Any] | None = None,
        lines: Sequence[int] | None = None,
        *,
        parent_id: str | None = None,
    ) -> list[tuple[RevocationRequest, bool]]:
        """Insert requests; a row whose idempotency key exists yields the existing record.

        Returns ``(record, created)`` per row, in order; all rows (and the batch) commit
        together. Inserts are executemany statements, so 10,000 rows take well under a second.
        ``parent_id``: the rows are children of that person request, recorded only while it
        has not ended (``ParentStopped`` otherwise: a cancelled person gets no new child).
        """
        for _ in range(3):  # a concurrent producer may insert one of our keys meanwhile
            try:
                return self._insert_new(rows, batch, lines, parent_id)
            except IntegrityError:
                continue
        raise RuntimeError("could not insert requests: idempotency keys kept colliding")

    def _insert_new(
        self,
        rows: Sequence[dict[str, Any]],
        batch: dict[str, Any] | None,
        lines: Sequence[int] | None,
        parent_id: str | None = None,
    ) -> list[tuple[RevocationRequest, bool]]:
        now = utcnow()
        with self.session() as session:
            if parent_id is not None:
                hold_parent(session, parent_id)
            if batch is not None:
                session.execute(insert(Batch), [{"created_at": now, **batch}])
            existing = self._by_keys(session, [row["idempotency_key"] for row in rows])
            results: list[tuple[RevocationRequest, bool]] = []
            fresh: list[dict[str, Any]] = []
            for row in rows:
                key = row["idempotency_key"]
                if key in existing:
                    results.append((existing[key], False))
                    continue
                values = {"attempts": 0, "created_at": now, "updated_at": now, **row}
                record = RevocationRequest(**values)
                existing[key] = record
                fresh.append(values)
                results.append((record, True))
            if fresh:
                # render_nulls keeps every row the same shape, so this stays one executemany
                # instead of one INSERT per distinct set of non-null columns.
                session.execute(
                    insert(RevocationRequest).execution_options(render_nulls=True), fresh
                )
                session.execute(
                    insert(RequestEvent),
                    [{"request_id": v["id"], "at": now, "state": v["state"], "attempt": 0}
                     for v in fresh],
                )
            if batch is not None:
                numbers = lines if lines is not None else range(1, len(results) + 1)
                session.execute(
                    insert(BatchItem),
                    [{"batch_id": batch["id"], "line": line, "request_id": record.id}
                     for line, (record, _created) in zip(numbers, results, strict=True)],
                )
            return results

    def _by_keys(self, session: Session, keys: Iterable[str]) -> dict[str, RevocationRequest]:
        found: dict[str, RevocationRequest] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), 500):
            chunk = unique[start : start + 500]
            query = select(RevocationRequest).where(RevocationRequest.idempotency_key.in_(chunk))
            for record in session.scalars(query):
                found[record.idempotency_key] = record
        return found

    def claim(self, request_id: str, *, lease_until: datetime) -> RevocationRequest | None:
        """Mark a non-terminal request running for this attempt; ``None`` if it is terminal."""
        now = utcnow()
        with self.session() as session:
            result = session.execute(
                update(RevocationRequest)
                .where(
                    RevocationRequest.id == request_id,
                    RevocationRequest.state.not_in([s.value for s in TERMINAL_STATES]),
                )
                .values(
                    state=State.RUNNING.value,
                    attempts=RevocationRequest.attempts + 1,
                    lease_expires_at=lease_until,
                    updated_at=now,
                )
            )
            if result.rowcount == 0:  # type: ignore[attr-defined]
                return None
            record = session.get(RevocationRequest, request_id, populate_existing=True)
            assert record is not None
            session.add(
                RequestEvent(
                    request_id=request_id, at=now, state=State.RUNNING, attempt=record.attempts
                )
            )
            return record

    def update(
        self,
        request_id: str,
        *,
        event_detail: dict[str, Any] | None = None,
        **changes: Unpack[RequestChanges],
    ) -> RevocationRequest:
        """Apply ``changes`` (only columns of ``RequestChanges``); a change of state is added
        to the request's history, with ``event_detail``."""
        unknown = changes.keys() - RequestChanges.__optional_keys__
        if unknown:  # a ``**dict`` the type checker could not see into
            raise TypeError(f"Store.update: not updatable: {', '.join(sorted(unknown))}")
        now = utcnow()
        with self.session() as session:
            record = session.get(RevocationRequest, request_id, with_for_update=True)
            if record is None:
                raise KeyError(request_id)
            state = changes.get("state")
            if (record.state == State.CANCELLED and state is not None
                    and State(state) is not State.CANCELLED):
                # An operator's cancel stands: a run that began before it (and was stopped
                # before its DELETE) does not write its own ending over it.
                return record
            for name, value in changes.items():
                setattr(record, name, value.value if isinstance(value, State) else value)
            record.updated_at = now
            if state is not None:
                if State(state).is_terminal:
                    record.finished_at = now
                    record.lease_expires_at = None
                session.add(
                    RequestEvent(
                        request_id=request_id,
                        at=now,
                        state=str(state),
                        attempt=record.attempts,
                        detail=event_detail,
                    )
                )
            return record

    def renew_lease(self, request_id: str, *, until: datetime) -> bool:
        """Extend a running request's lease (its worker's heartbeat); False once it is no
        longer running (finished, or handed to another attempt)."""
        with self.session() as session:
            result = session.execute(
                update(RevocationRequest)
                .where(RevocationRequest.id == request_id,
                       RevocationRequest.state == State.RUNNING.value)
                .values(lease_expires_at=until)
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    def transition(
        self,
        request_ids: Sequence[str],
        *,
        from_states: Iterable[State],
        to_state: State,
        detail: dict[str, Any] | None = None,
        **values: Any,
    ) -> list[str]:
        """Move requests that are in ``from_states`` to ``to_state`` (compare-and-set);
        returns the ids that moved. Each move is recorded in the request's history."""
        now = utcnow()
        sources = [s.value for s in from_states]
        if to_state.is_terminal:
            values = {"finished_at": now, "lease_expires_at": None, **values}
        if to_state is State.QUEUED:
            values = {"sent_at": None, **values}  # a new message is due: ``claim_unsent``
        moved: list[str] = []
        with self.session() as session:
            for start in range(0, len(request_ids), 500):
                chunk = list(request_ids[start : start + 500])
                rows = session.execute(
                    update(RevocationRequest)
                    .where(RevocationRequest.id.in_(chunk),
                           RevocationRequest.state.in_(sources))
                    .values(state=to_state.value, updated_at=now, **values)
                    .returning(RevocationRequest.id, RevocationRequest.attempts)
                ).all()
                moved += [row[0] for row in rows]
                if rows:
                    session.execute(insert(RequestEvent), [
                        {"request_id": rid, "at": now, "state": to_state.value,
                         "attempt": attempts, "detail": detail} for rid, attempts in rows
                    ])
        return moved

    def claim_unsent(self, request_ids: Sequence[str]
                     ) -> tuple[list[tuple[str, str]], datetime]:
        """Claim the right to publish these requests' messages: stamp ``sent_at`` on those
        that have none and return them as (id, priority) pairs, with the stamp. Two
        producers racing to send the same request (a duplicate submission while the first
        is still publishing, the scheduler's unsent sweep) claim it once, so exactly one
        message goes out, to the request's own lane. A caller whose publish failed gives
        the claim back with ``release_claim``."""
        now = utcnow()
        claimed: dict[str, str] = {}
        with self.session() as session:
            for start in range(0, len(request_ids), 500):
                chunk = list(request_ids[start : start + 500])
                rows = session.execute(
                    update(RevocationRequest)
                    .where(RevocationRequest.id.in_(chunk),
                           RevocationRequest.sent_at.is_(None))
                    .values(sent_at=now)
                    .returning(RevocationRequest.id, RevocationRequest.priority)
                )
                claimed.update((request_id, priority) for request_id, priority in rows)
        return [(i, claimed[i]) for i in dict.fromkeys(request_ids) if i in claimed], now

    def release_claim(self, request_ids: Sequence[str], stamp: datetime) -> None:
        """Mark these requests unsent again (their publish failed), unless someone has
        claimed them since."""
        with self.session() as session:
            for start in range(0, len(request_ids), 500):
                chunk = list(request_ids[start : start + 500])
                session.execute(
                    update(RevocationRequest)
                    .where(RevocationRequest.id.in_(chunk),
                           RevocationRequest.sent_at == stamp)
                    .values(sent_at=None)
                )
