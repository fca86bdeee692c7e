"""State model of the local Polar stand-in: people, seats, sessions, limits, faults, stats.

Pure and synchronous (no HTTP). Every public method of `SandboxState` holds its lock, so
the ASGI app (event-loop thread) and tests (other threads) can share one instance.
Public methods hand out copies (or JSON), never the stored rows. Behaviour follows
polarsource/polar; each piece names its source file.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import itertools
import random
import secrets
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from worker.sandbox.errors import SandboxError
from worker.sandbox.people import Customer, Directory, Member, MemberRole, iso, new_id
from worker.sandbox.ratelimit import FixedWindowLimiter, RateLimit
from worker.sandbox.seats import (
    Holder,
    Seat,
    SeatsList,
    SeatSpec,
    SeatStatus,
    SeatVariant,
    place_holder,
)
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
]

DEFAULT_SANDBOX_TOKEN = "polar_oat_sandbox_local"
# server/polar/version.py: CURRENT_API_VERSION (the default) and NEXT_API_VERSION.
DEFAULT_POLAR_VERSION = "2026-04"
SUPPORTED_POLAR_VERSIONS = frozenset({DEFAULT_POLAR_VERSION, "2026-10"})
SESSION_TTL = timedelta(hours=1)  # server/polar/config.py CUSTOMER_SESSION_TTL
CUSTOMER_SESSION_PREFIX = "polar_cst_"  # customer_session/service.py
MEMBER_SESSION_PREFIX = "polar_mst_"  # models/member_session.py
LOG_LIMIT = 500_000  # request records kept for /_sandbox/log

ContainerKind = Literal["subscription", "order"]


def token_hash(token: str | None) -> str | None:
    """Short SHA-256 prefix identifying a token in logs without revealing it."""
    return None if token is None else hashlib.sha256(token.encode()).hexdigest()[:12]


@dataclass(frozen=True, slots=True)
class SandboxConfig:
    """Runtime knobs of the sandbox."""

    rate_limit: RateLimit | None = None  # None: unlimited
    tokens: frozenset[str] = frozenset()  # accepted in addition to DEFAULT_SANDBOX_TOKEN
    revoked_tokens: frozenset[str] = frozenset()  # answered 401 invalid_token
    legacy_rerevoke: bool = False  # re-revoking bumps revoked_at (older Polar)
    member_model_enabled: bool = True  # shape of seats assigned from now on
    seats_enabled: bool = True  # False: 403 FeatureNotEnabled on the seat endpoints
    scopes_missing: bool = False  # True: org tokens get 403 insufficient_scope
    background_usage: float = 0.0  # share of each org window spent by other integrations
    latency_ms: int = 0  # added to every Polar API request
    seed: int = 0  # RNG seed for probabilistic faults
    versions: frozenset[str] = SUPPORTED_POLAR_VERSIONS  # accepted Polar-Version values

    def to_json(self) -> dict[str, Any]:
        return {
            "rate_limit": None if self.rate_limit is None else str(self.rate_limit),
            "tokens": sorted(self.tokens),
            "revoked_tokens": sorted(self.revoked_tokens),
            "legacy_rerevoke": self.legacy_rerevoke,
            "member_model_enabled": self.member_model_enabled,
            "seats_enabled": self.seats_enabled,
            "scopes_missing": self.scopes_missing,
            "background_usage": self.background_usage,
            "latency_ms": self.latency_ms,
            "seed": self.seed,
            "versions": sorted(self.versions),
        }


@dataclass(frozen=True, slots=True)
class Subject:
    """Who a bearer token authenticates (server/polar/auth/models.py AuthSubject).

    `customer_id` is the customer whose subscriptions and orders a portal session sees:
    the customer itself, or the customer a member belongs to.
    """

    kind: Literal["organization", "customer", "member"]
    id: str
    customer_id: str | None = None
    role: MemberRole | None = None

    @property
    def rate_key(self) -> str:
        """The rate limit's user key (auth/models.py `rate_limit_user`)."""
        return f"{self.kind}:{self.id}"


@dataclass(slots=True)
class FaultRule:
    """An injected failure; the first matching rule applies (see `SandboxState.match_fault`)."""

    method: str | None = None
    seat_id: str | None = None
    status: int | None = None
    body: Any = None  # None: a default body for the status
    times: int | None = None  # None: unlimited
    probability: float | None = None
    latency_ms: int = 0
    hang_s: float = 0.0
    apply_then_hang: bool = False
    retry_after: int | None = None
    hits: int = 0

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(slots=True)
class _Session:
    kind: Literal["customer", "member"]
    subject_id: str
    expires_at: datetime


@dataclass(slots=True)
class _Container:
    """A subscription or an order: its billing customer and its seat rows, in order."""

    kind: ContainerKind
    id: str
    billing: Customer
    created_at: datetime
    seat_ids: list[str] = field(default_factory=list)

    @property
    def not_found(self) -> SandboxError:
        return SandboxError.not_found(f"{self.kind.capitalize()} not found")


@dataclass(slots=True)
class _Stats:
    requests: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    by_route: Counter[str] = field(default_factory=Counter)
    rate_limited: int = 0
    deletes_by_seat: Counter[str] = field(default_factory=Counter)
    revocations_by_seat: Counter[str] = field(default_factory=Counter)
    revocations: list[dict[str, str | None]] = field(default_factory=list)
    in_flight: int = 0
    max_concurrent: int = 0


def _canonical(value: str) -> str:
    return str(uuid.UUID(value))


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
        self._seats: dict[str, Seat] = {}
        self._containers: dict[tuple[str, str], _Container] = {}
        self._sessions: dict[str, _Session] = {}
        self._faults: list[FaultRule] = []
        self._limiter = FixedWindowLimiter()
        self._rng = random.Random(self.config.seed)
        self._stats = _Stats()
        self._log: deque[dict[str, Any]] = deque(maxlen=LOG_LIMIT)
        self._seq = 0

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
                self.now(), email, external_id, name, _maybe(customer_id)
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
                self.now(), _canonical(customer_id), email, name=name, external_id=external_id,
                role=role, member_id=_maybe(member_id),
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
                if customer_id is None or m.customer_id == _canonical(customer_id)
            ]

    def create_customer_session(self, customer_id: str, ttl: float | None = None) -> str:
        """A customer session token (`polar_cst_…`) for the portal, valid `ttl` seconds."""
        with self.lock:
            customer = self._people.customer(_canonical(customer_id))
            return self._new_session("customer", customer.id, CUSTOMER_SESSION_PREFIX, ttl)

    def create_member_session(self, member_id: str, ttl: float | None = None) -> str:
        """A member session token (`polar_mst_…`) for the portal, valid `ttl` seconds."""
        with self.lock:
            member = self._people.member(_canonical(member_id))
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
        owner = _maybe(owner_customer_id)
        with self.lock, self._atomic():
            new_ids = [_maybe(spec.id) for spec in specs]
            self._check_new_ids(new_ids)
            batch_subscription = new_id()
            created: list[Seat] = []
            for spec, seat_id in zip(specs, new_ids, strict=True):
                if spec.subscription_id is None and spec.order_id is None:
                    spec = dataclasses.replace(spec, subscription_id=batch_subscription)
                container = self._container_for_seeding(spec, owner, now)
                seat = self._add_row(container, seat_id, now)
                if spec.status is SeatStatus.REVOKED:
                    seat.revoked_at = spec.revoked_at or now
                else:
                    seat.occupy(self._holder(container, spec, now), spec.status, now)
                created.append(seat.snapshot())
            return created

    def assign(self, spec: SeatSpec) -> Seat:
        """Assign like Polar: reuse a revoked row of the container (same id) or add a row
        (customer_seat/service.py `assign_seat`)."""
        if spec.status is SeatStatus.REVOKED:
            raise SandboxError.bad_request("An assigned seat is pending or claimed")
        now = self.now()
        with self.lock, self._atomic():
            container = self._container(spec.subscription_id, spec.order_id)
            holder = self._holder(container, spec, now)
            self._check_not_seated(container, holder)
            seat = self._free_row(container) or self._add_row(container, None, now)
            seat.occupy(holder, spec.status, now)
            return seat.snapshot()

    @contextlib.contextmanager
    def _atomic(self) -> Iterator[None]:
        """All or nothing: on an error, undo every row, container, customer and member the
        block created (with the lock held)."""
        undo: list[Callable[[], None]] = []
        self._people.undo = undo
        try:
            yield
        except BaseException:
            for action in reversed(undo):
                action()
            raise
        finally:
            self._people.undo = None

    def _free_row(self, container: _Container) -> Seat | None:
        """A revoked row of the container (Polar takes any one; here the first)."""
        rows = (self._seats[i] for i in container.seat_ids)
        return next((s for s in rows if s.status is SeatStatus.REVOKED), None)

    def _check_new_ids(self, new_ids: list[str | None]) -> None:
        given = [i for i in new_ids if i]
        clash = [i for i in given if i in self._seats]
        if clash or len(set(given)) != len(given):
            raise SandboxError(409, "Conflict", f"seat id already exists: {clash[:3]}")

    def _container_for_seeding(
        self, spec: SeatSpec, owner: str | None, now: datetime
    ) -> _Container:
        kind, container_id = _container_key(spec.subscription_id, spec.order_id)
        container = self._containers.get((kind, container_id))
        if container is None:
            billing = self._people.billing_customer(now, owner)
            container = _Container(kind, container_id, billing, now)
            self._containers[(kind, container_id)] = container
            self._remember(lambda: self._drop_container(container))
        elif owner is not None and container.billing.id != owner:
            raise SandboxError(
                409, "Conflict", f"{kind} {container_id} is billed to {container.billing.id}"
            )
        return container

    def _add_row(self, container: _Container, seat_id: str | None, now: datetime) -> Seat:
        seat = Seat(seat_id or new_id(), now, now, SeatStatus.REVOKED)
        seat.subscription_id = container.id if container.kind == "subscription" else None
        seat.order_id = container.id if container.kind == "order" else None
        container.seat_ids.append(seat.id)
        self._seats[seat.id] = seat
        self._remember(lambda: self._drop_row(container, seat))
        return seat

    def _drop_row(self, container: _Container, seat: Seat) -> None:
        # Undone newest first, so the row is the container's last one.
        if container.seat_ids[-1] == seat.id:
            container.seat_ids.pop()
        else:
            container.seat_ids.remove(seat.id)
        del self._seats[seat.id]

    def _drop_container(self, container: _Container) -> None:
        del self._containers[(container.kind, container.id)]

    def _remember(self, action: Callable[[], None]) -> None:
        if self._people.undo is not None:
            self._people.undo.append(action)

    def _holder(self, container: _Container, spec: SeatSpec, now: datetime) -> Holder:
        spec = dataclasses.replace(
            spec, customer_id=_maybe(spec.customer_id), member_id=_maybe(spec.member_id)
        )
        return place_holder(
            self._people, now, container.billing, spec, self.config.member_model_enabled
        )

    def _check_not_seated(self, container: _Container, holder: Holder) -> None:
        """SeatAlreadyAssigned: the member (or a legacy holder's customer) already has an
        occupied seat of this container."""
        own_customer = holder.customer is not container.billing
        for seat_id in container.seat_ids:
            seat = self._seats[seat_id]
            if seat.status is SeatStatus.REVOKED:
                continue
            same_member = holder.member is not None and seat.member_id == holder.member.id
            same_customer = own_customer and seat.customer_id == holder.customer.id
            if same_member or same_customer:
                who = holder.email or holder.customer.email or holder.customer.id
                raise SandboxError(
                    400, "SeatAlreadyAssigned", f"Seat already assigned to customer {who}"
                )

    # -- faults ----------------------------------------------------------------------------

    def add_fault(self, rule: FaultRule) -> None:
        with self.lock:
            self._faults.append(rule)

    def clear_faults(self) -> None:
        with self.lock:
            self._faults.clear()

    def faults(self) -> list[FaultRule]:
        with self.lock:
            return [dataclasses.replace(rule) for rule in self._faults]

    def match_fault(self, method: str, seat_id: str | None) -> FaultRule | None:
        """The first rule matching this request (consuming one of its `times`)."""
        with self.lock:
            for rule in self._faults:
                if rule.method is not None and rule.method.upper() != method:
                    continue
                if rule.seat_id is not None and rule.seat_id.lower() != (seat_id or "").lower():
                    continue
                if rule.times is not None and rule.hits >= rule.times:
                    continue
                if rule.probability is not None and self._rng.random() >= rule.probability:
                    continue
                rule.hits += 1
                return dataclasses.replace(rule)
            return None

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
            seat = self._visible_seat(_canonical(seat_id), customer_id)
            portal_no_op = customer_id is not None and seat.status is SeatStatus.REVOKED
            if check_feature and not portal_no_op:
                self._check_seats_enabled()
            if seat.status is not SeatStatus.REVOKED:
                self._stats.revocations.append(self._occupant(seat))
                seat.vacate(self.now())
                self._stats.revocations_by_seat[seat.id] += 1
            elif self.config.legacy_rerevoke:
                seat.revoked_at = seat.modified_at = self.now()
                self._stats.revocations_by_seat[seat.id] += 1
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
            container = self._container(subscription_id, order_id)
            if customer_id is not None and container.billing.id != customer_id:
                raise container.not_found
            self._check_seats_enabled()
            seats = [self._seats[i].snapshot() for i in container.seat_ids]
            available = sum(1 for s in seats if s.status is SeatStatus.REVOKED)
            return SeatsList(seats, available, len(seats))

    def _check_seats_enabled(self) -> None:
        if not self.config.seats_enabled:
            raise SandboxError.feature_not_enabled()

    def _visible_seat(self, seat_id: str, customer_id: str | None) -> Seat:
        seat = self._seats.get(seat_id)
        if seat is not None and customer_id is not None:
            container = self._containers[_container_key(seat.subscription_id, seat.order_id)]
            if container.billing.id != customer_id:
                seat = None
        if seat is None:
            raise SandboxError.not_found("Seat not found")
        return seat

    def _container(self, subscription_id: str | None, order_id: str | None) -> _Container:
        key = _container_key(subscription_id, order_id)
        container = self._containers.get(key)
        if container is None:
            raise SandboxError.not_found(f"{key[0].capitalize()} not found")
        return container

    def _occupant(self, seat: Seat) -> dict[str, str | None]:
        """Who holds `seat`: its ids, address (`customer_email`) and external id (the
        member's, else a legacy holder's own customer's)."""
        container = self._containers[_container_key(seat.subscription_id, seat.order_id)]
        external_id = seat.member.external_id if seat.member is not None else None
        if external_id is None and seat.customer not in (None, container.billing):
            assert seat.customer is not None
            external_id = seat.customer.external_id
        return {
            "seat_id": seat.id,
            "email": seat.customer_email,
            "member_id": seat.member_id,
            "customer_id": seat.customer_id,
            "external_id": external_id,
        }

    # -- identity reads ----------------------------------------------------------------------

    def customer_json(self, customer_id: str) -> dict[str, Any]:
        """GET /v1/customers/{id} (customer/endpoints.py `get`)."""
        with self.lock:
            return self._people.customer(_canonical(customer_id)).to_json(self.organization_id)

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
            return _page([m.to_json() for m in found], page, limit)

    def container_json(self, kind: ContainerKind, container_id: str) -> dict[str, Any]:
        """GET /v1/subscriptions/{id} and /v1/orders/{id}: the fields the seat worker reads."""
        with self.lock:
            container = self._containers.get((kind, _canonical(container_id)))
            if container is None:
                raise SandboxError.not_found()
            return self._container_body(container)

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
            wanted = {_canonical(i) for i in customer_ids}
            found = [
                c
                for c in self._containers.values()
                if c.kind == kind
                and (not customer_ids or c.billing.id in wanted)
                and (not external_customer_ids or c.billing.external_id in external_customer_ids)
            ]
            found.sort(key=lambda c: c.created_at, reverse=True)
            return _page([self._container_body(c) for c in found], page, limit)

    def _container_body(self, container: _Container) -> dict[str, Any]:
        return {
            "created_at": iso(container.created_at),
            "modified_at": None,
            "id": container.id,
            "status": "active" if container.kind == "subscription" else "paid",
            "customer_id": container.billing.id,
            "seats": len(container.seat_ids),
            "metadata": {},
            "customer": container.billing.to_json(self.organization_id),
        }

    # -- inspection & bookkeeping --------------------------------------------------------

    def seat(self, seat_id: str) -> Seat | None:
        with self.lock:
            seat = self._seats.get(_canonical(seat_id))
            return None if seat is None else seat.snapshot()

    def all_seats(self) -> list[Seat]:
        with self.lock:
            return [seat.snapshot() for seat in self._seats.values()]

    def revocations(self) -> list[dict[str, str | None]]:
        """The occupant of each seat just before each real revocation, oldest first."""
        with self.lock:
            return [dict(r) for r in self._stats.revocations]

    def request_started(self) -> None:
        with self.lock:
            stats = self._stats
            stats.in_flight += 1
            stats.max_concurrent = max(stats.max_concurrent, stats.in_flight)

    def count_delete(self, seat_id: str) -> None:
        """Count a DELETE admitted past auth and rate limit."""
        with self.lock:
            self._stats.deletes_by_seat[seat_id] += 1

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
            stats = self._stats
            stats.in_flight -= 1
            stats.requests += 1
            stats.by_status[str(status)] += 1
            stats.by_route[route] += 1
            if status == 429:
                stats.rate_limited += 1
            self._seq += 1
            self._log.append(
                {
                    "seq": self._seq,
                    "time": time.time(),
                    "method": method,
                    "path": path,
                    "seat_id": seat_id,
                    "status": status,
                    "token": token_hash(token),
                    "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                }
            )

    def stats(self) -> dict[str, Any]:
        with self.lock:
            s = self._stats
            return {
                "requests": s.requests,
                "by_status": dict(s.by_status),
                "by_route": dict(s.by_route),
                "rate_limited": s.rate_limited,
                "rate_windows": self._limiter.windows(self.clock(), self.config.rate_limit),
                "deletes_by_seat": dict(s.deletes_by_seat),
                "revocations_by_seat": dict(s.revocations_by_seat),
                "revocations": [dict(r) for r in s.revocations],
                "max_concurrent": s.max_concurrent,
                "in_flight": s.in_flight,
                "organization_id": self.organization_id,
            }

    def log_since(self, since: int = 0) -> list[dict[str, Any]]:
        """Request records with seq > since (oldest first)."""
        with self.lock:
            if not self._log:
                return []
            start = max(0, since - self._log[0]["seq"] + 1)
            return [dict(r) for r in itertools.islice(self._log, start, None)]


def _maybe(value: str | None) -> str | None:
    return None if value is None else _canonical(value)


def _container_key(subscription_id: str | None, order_id: str | None) -> tuple[ContainerKind, str]:
    if subscription_id is not None:
        return ("subscription", _canonical(subscription_id))
    if order_id is not None:
        return ("order", _canonical(order_id))
    raise SandboxError.bad_request("Either subscription_id or order_id is required")


def _page(items: list[dict[str, Any]], page: int, limit: int) -> dict[str, Any]:
    """Polar's `ListResource` (server/polar/kit/pagination.py)."""
    start = (page - 1) * limit
    return {
        "items": items[start : start + limit],
        "pagination": {"total_count": len(items), "max_page": -(-len(items) // limit)},
    }
