"""State model of the local Polar stand-in: people, seats, sessions, limits, faults, stats.

Pure and synchronous (no HTTP). Every public method of `SandboxState` holds its lock, so
the ASGI app (event-loop thread) and tests (other threads) can share one instance.
Public methods hand out copies (or JSON), never the stored rows. Its parts: `config`
(knobs, token subjects), `people` (customers and members), `rows` (subscriptions, orders,
seat rows), `faults`, `accounting` (stats and log), `ratelimit`. Behaviour follows
polarsource/polar; each piece names its source file.
"""

from __future__ import annotations

import dataclasses
import random
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from worker.sandbox.accounting import Accounting
from worker.sandbox.config import (
    CUSTOMER_SESSION_PREFIX,
    DEFAULT_POLAR_VERSION,
    DEFAULT_SANDBOX_TOKEN,
    MEMBER_SESSION_PREFIX,
    SESSION_TTL,
    SUPPORTED_POLAR_VERSIONS,
    ContainerKind,
    SandboxConfig,
    Subject,
    token_hash,
)
from worker.sandbox.errors import SandboxError
from worker.sandbox.faults import FaultBook, FaultRule
from worker.sandbox.people import Customer, Directory, Member, MemberRole, new_id
from worker.sandbox.ratelimit import FixedWindowLimiter, RateLimit
from worker.sandbox.rows import SeatRows, canonical, maybe_canonical, page_of
from worker.sandbox.seats import Seat, SeatsList, SeatSpec, SeatStatus, SeatVariant
from worker.store.models import utcnow

__all__ = [
    "DEFAULT_POLAR_VERSION",
    "DEFAULT_SANDBOX_TOKEN",
    "SESSION_TTL",
    "SUPPORTED_POLAR_VERSIONS",
    "ContainerKind",
    "Customer",
    "FaultRule",
    "Member",
    "MemberRole",
    "RateLimit",
    "SandboxConfig",
    "SandboxError",
    "SandboxState",
    "Seat",
    "SeatSpec",
    "SeatStatus",
    "SeatVariant",
    "SeatsList",
    "Subject",
    "token_hash",
    "utcnow",
]


@dataclass(slots=True)
class _Session:
    kind: Literal["customer", "member"]
    subject_id: str
    expires_at: datetime


class SandboxState:
    """Everything the sandbox knows; thread-safe."""

    def __init__(
        self,
        config: SandboxConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self.lock = threading.RLock()
        self.clock, self.now = clock, now
        self.config = config or SandboxConfig()
        self.organization_id = new_id()
        self._reset_data()

    def _reset_data(self) -> None:
        self._people = Directory()
        self._rows = SeatRows(self._people)
        self._sessions: dict[str, _Session] = {}
        self._faults = FaultBook()
        self._limiter = FixedWindowLimiter()
        self._rng = random.Random(self.config.seed)
        self._accounting = Accounting()

    # -- configuration -------------------------------------------------------------------

    def reset(self, **changes: Any) -> SandboxConfig:
        """Drop people, seats, sessions, faults, windows, stats and log; default config +
        changes."""
        with self.lock:
            self.config = SandboxConfig()
            self.configure(**changes)
            self._reset_data()
            return self.config

    def configure(self, **changes: Any) -> SandboxConfig:
        """Change knobs (field names of SandboxConfig; rate_limit may be a string)."""
        with self.lock:
            unknown = set(changes) - {f.name for f in dataclasses.fields(SandboxConfig)}
            if unknown:
                raise ValueError(f"unknown config keys: {sorted(unknown)}")
            rate = changes.get("rate_limit")
            if isinstance(rate, str):
                changes["rate_limit"] = RateLimit.parse(rate)
            for key in ("tokens", "revoked_tokens", "versions"):
                if key in changes:
                    changes[key] = frozenset(changes[key])
            if not 0.0 <= float(changes.get("background_usage", 0.0)) <= 1.0:
                raise ValueError("background_usage must be between 0 and 1")
            self.config = dataclasses.replace(self.config, **changes)
            if "seed" in changes:
                self._rng = random.Random(self.config.seed)
            return self.config

    # -- people and sessions ---------------------------------------------------------------

    def create_customer(
        self,
        email: str | None,
        external_id: str | None = None,
        name: str | None = None,
        customer_id: str | None = None,
    ) -> Customer:
        with self.lock:
            customer = self._people.add_customer(
                self.now(), email, external_id, name, maybe_canonical(customer_id)
            )
            return dataclasses.replace(customer)

    def create_member(
        self,
        customer_id: str,
        email: str,
        *,
        name: str | None = None,
        external_id: str | None = None,
        role: MemberRole = MemberRole.MEMBER,
        member_id: str | None = None,
    ) -> Member:
        with self.lock:
            member = self._people.add_member(
                self.now(), canonical(customer_id), email, name=name, external_id=external_id,
                role=role, member_id=maybe_canonical(member_id),
            )
            return dataclasses.replace(member)

    def customers(self) -> list[Customer]:
        with self.lock:
            return [dataclasses.replace(c) for c in self._people.customers.values()]

    def members(self, customer_id: str | None = None) -> list[Member]:
        with self.lock:
            return [
                dataclasses.replace(m)
                for m in self._people.members.values()
                if customer_id is None or m.customer_id == canonical(customer_id)
            ]

    def create_customer_session(self, customer_id: str, ttl: float | None = None) -> str:
        """A customer session token (`polar_cst_…`) for the portal, valid `ttl` seconds."""
        with self.lock:
            customer = self._people.customer(canonical(customer_id))
            return self._new_session("customer", customer.id, CUSTOMER_SESSION_PREFIX, ttl)

    def create_member_session(self, member_id: str, ttl: float | None = None) -> str:
        """A member session token (`polar_mst_…`) for the portal, valid `ttl` seconds."""
        with self.lock:
            member = self._people.member(canonical(member_id))
            return self._new_session("member", member.id, MEMBER_SESSION_PREFIX, ttl)

    def _new_session(
        self, kind: Literal["customer", "member"], subject_id: str, prefix: str, ttl: float | None
    ) -> str:
        token = prefix + secrets.token_urlsafe(24)
        lifetime = SESSION_TTL if ttl is None else timedelta(seconds=ttl)
        self._sessions[token] = _Session(kind, subject_id, self.now() + lifetime)
        return token

    # -- seeding ---------------------------------------------------------------------------

    def create_seats(
        self, specs: Sequence[SeatSpec], owner_customer_id: str | None = None
    ) -> list[Seat]:
        """Create seat rows; seats naming no subscription/order share a new subscription.
        New subscriptions/orders get `owner_customer_id` (created if unknown) or a new
        customer as their billing customer."""
        now = self.now()
        owner = maybe_canonical(owner_customer_id)
        with self.lock:
            return self._rows.create(specs, owner, now,
                                     member_model=self.config.member_model_enabled)

    def assign(self, spec: SeatSpec) -> Seat:
        """Assign like Polar: reuse a revoked row of the container (same id) or add a row
        (customer_seat/service.py `assign_seat`)."""
        now = self.now()
        with self.lock:
            return self._rows.assign(spec, now, member_model=self.config.member_model_enabled)

    # -- faults ----------------------------------------------------------------------------

    def add_fault(self, rule: FaultRule) -> None:
        with self.lock:
            self._faults.add(rule)

    def clear_faults(self) -> None:
        with self.lock:
            self._faults.clear()

    def faults(self) -> list[FaultRule]:
        with self.lock:
            return self._faults.rules()

    def match_fault(self, method: str, seat_id: str | None) -> FaultRule | None:
        """The first rule matching this request (consuming one of its `times`)."""
        with self.lock:
            return self._faults.match(method, seat_id, self._rng)

    # -- authentication and rate limit -----------------------------------------------------

    def is_org_token(self, token: str) -> bool:
        return token == DEFAULT_SANDBOX_TOKEN or token in self.config.tokens

    def authenticate(self, token: str) -> Subject | None:
        """The subject of a bearer token; None if unknown, expired or revoked
        (auth/middlewares.py `get_auth_subject`)."""
        with self.lock:
            if token in self.config.revoked_tokens:
                return None
            if self.is_org_token(token):
                return Subject("organization", self.organization_id)
            session = self._sessions.get(token)
            if session is None or session.expires_at <= self.now():
                return None
            if session.kind == "customer":
                return Subject("customer", session.subject_id, session.subject_id)
            member = self._people.members[session.subject_id]
            return Subject("member", member.id, member.customer_id, member.role)

    def hit_rate_limit(self, key: str) -> int | None:
        """Count a request against `key`; None if allowed, else retry-after seconds.
        `background_usage` applies to the organization's window only."""
        with self.lock:
            rate = self.config.rate_limit
            if rate is None:
                return None
            background = self.config.background_usage if key.startswith("organization:") else 0.0
            return self._limiter.hit(key, rate, self.clock(), background)

    # -- the seat API ----------------------------------------------------------------------

    def revoke(
        self, seat_id: str, customer_id: str | None = None, *, check_feature: bool = True
    ) -> Seat:
        """DELETE a seat. `customer_id` set: the portal, restricted to that customer's
        subscriptions/orders (customer_portal/endpoints/customer_seat.py); the feature
        check then only runs for a seat not yet revoked (service.py `revoke_seat`).
        `check_feature=False`: a control-plane revoke, whatever `seats_enabled` says."""
        with self.lock:
            seat = self._rows.visible_seat(canonical(seat_id), customer_id)
            portal_no_op = customer_id is not None and seat.status is SeatStatus.REVOKED
            if check_feature and not portal_no_op:
                self._check_seats_enabled()
            if seat.status is not SeatStatus.REVOKED:
                self._accounting.revoked(self._rows.occupant(seat), seat.id)
                seat.vacate(self.now())
            elif self.config.legacy_rerevoke:
                seat.revoked_at = seat.modified_at = self.now()
                self._accounting.revoked(None, seat.id)
            return seat.snapshot()

    def list_seats(
        self,
        subscription_id: str | None = None,
        order_id: str | None = None,
        customer_id: str | None = None,
    ) -> SeatsList:
        """All rows of one subscription or order, revoked included."""
        if subscription_id is None and order_id is None:
            raise SandboxError.bad_request("Either subscription_id or order_id must be provided")
        with self.lock:
            container = self._rows.container(subscription_id, order_id)
            if customer_id is not None and container.billing.id != customer_id:
                raise container.not_found
            self._check_seats_enabled()
            seats = self._rows.rows_of(container)
            available = sum(1 for s in seats if s.status is SeatStatus.REVOKED)
            return SeatsList(seats, available, len(seats))

    def _check_seats_enabled(self) -> None:
        if not self.config.seats_enabled:
            raise SandboxError.feature_not_enabled()

    # -- identity reads ----------------------------------------------------------------------

    def customer_json(self, customer_id: str) -> dict[str, Any]:
        """GET /v1/customers/{id} (customer/endpoints.py `get`)."""
        with self.lock:
            return self._people.customer(canonical(customer_id)).to_json(self.organization_id)

    def customer_by_external_id_json(self, external_id: str) -> dict[str, Any]:
        """GET /v1/customers/external/{external_id} (customer/endpoints.py `get_external`)."""
        with self.lock:
            customer = self._people.customer_by_external_id(external_id)
            return customer.to_json(self.organization_id)

    def members_page(
        self,
        customer_id: str | None,
        external_customer_id: str | None,
        role: MemberRole | None,
        page: int,
        limit: int,
    ) -> dict[str, Any]:
        """GET /v1/members/ (member/service.py `list`): newest first, paginated."""
        with self.lock:
            customers = [
                c.id
                for c in self._people.customers.values()
                if (customer_id is None or c.id == customer_id)
                and (external_customer_id is None or c.external_id == external_customer_id)
            ]
            found = [
                m for m in self._people.members_of(customers) if role is None or m.role is role
            ]
            return page_of([m.to_json() for m in found], page, limit)

    def container_json(self, kind: ContainerKind, container_id: str) -> dict[str, Any]:
        """GET /v1/subscriptions/{id} and /v1/orders/{id}: the fields the seat worker reads."""
        with self.lock:
            return self._rows.container_json(kind, container_id, self.organization_id)

    def containers_page(
        self,
        kind: ContainerKind,
        customer_ids: Sequence[str],
        external_customer_ids: Sequence[str],
        page: int,
        limit: int,
    ) -> dict[str, Any]:
        """GET /v1/subscriptions/ and /v1/orders/ filtered by customer (id or external id)."""
        with self.lock:
            return self._rows.containers_page(kind, customer_ids, external_customer_ids,
                                              page, limit, self.organization_id)

    # -- inspection & bookkeeping --------------------------------------------------------

    def seat(self, seat_id: str) -> Seat | None:
        with self.lock:
            seat = self._rows.get(canonical(seat_id))
            return None if seat is None else seat.snapshot()

    def all_seats(self) -> list[Seat]:
        with self.lock:
            return self._rows.all()

    def revocations(self) -> list[dict[str, str | None]]:
        """The occupant of each seat just before each real revocation, oldest first."""
        with self.lock:
            return self._accounting.revocations()

    def request_started(self) -> None:
        with self.lock:
            self._accounting.started()

    def count_delete(self, seat_id: str) -> None:
        """Count a DELETE admitted past auth and rate limit."""
        with self.lock:
            self._accounting.count_delete(seat_id)

    def request_finished(
        self,
        *,
        method: str,
        path: str,
        route: str,
        status: int,
        token: str | None,
        seat_id: str | None,
        started: float,
    ) -> None:
        """Record a finished Polar API request in stats and the log."""
        with self.lock:
            self._accounting.finished(method=method, path=path, route=route, status=status,
                                      token=token, seat_id=seat_id, started=started)

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {
                **self._accounting.stats(),
                "rate_windows": self._limiter.windows(self.clock(), self.config.rate_limit),
                "organization_id": self.organization_id,
            }

    def log_since(self, since: int = 0) -> list[dict[str, Any]]:
        """Request records with seq > since (oldest first)."""
        with self.lock:
            return self._accounting.log_since(since)

