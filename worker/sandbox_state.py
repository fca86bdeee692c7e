"""State model of the local Polar stand-in: seats, tokens, rate limits, faults, stats.

Pure and synchronous (no HTTP). Every public method of `SandboxState` holds its lock, so
the ASGI app (event-loop thread) and tests (other threads) can share one instance.
Public methods hand out copies of seats, never the stored rows.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import math
import random
import re
import secrets
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

__all__ = [
    "DEFAULT_SANDBOX_TOKEN",
    "SUPPORTED_POLAR_VERSIONS",
    "FaultRule",
    "RateLimit",
    "SandboxConfig",
    "SandboxError",
    "SandboxState",
    "Seat",
    "SeatSpec",
    "SeatStatus",
    "SeatsList",
    "SlidingWindowLimiter",
]

DEFAULT_SANDBOX_TOKEN = "polar_oat_sandbox_local"
SUPPORTED_POLAR_VERSIONS = frozenset({"2025-12", "2026-04"})
ORG_BUCKET = "org:sandbox"  # every organisation token shares this one bucket
LOG_LIMIT = 500_000  # request records kept for /_sandbox/log
INVITATION_TTL = timedelta(days=1)

_UNITS = {
    "s": 1.0,
    "sec": 1.0,
    "second": 1.0,
    "m": 60.0,
    "min": 60.0,
    "minute": 60.0,
    "h": 3600.0,
    "hour": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
}
_RATE_RE = re.compile(r"^\s*(\d+)\s*(?:/|per)\s*(\d+(?:\.\d+)?)?\s*([a-z]+?)s?\s*$")


def utcnow() -> datetime:
    """Current time, timezone-aware UTC."""
    return datetime.now(UTC)


def iso(value: datetime | None) -> str | None:
    """Serialise a datetime the way Polar (pydantic) does: ISO 8601 with `Z`."""
    return None if value is None else value.isoformat().replace("+00:00", "Z")


def token_hash(token: str | None) -> str | None:
    """Short SHA-256 prefix identifying a token in logs without revealing it."""
    return None if token is None else hashlib.sha256(token.encode()).hexdigest()[:12]


class SeatStatus(StrEnum):
    """Lifecycle of a seat row."""

    PENDING = "pending"  # assigned, invitation not yet claimed
    CLAIMED = "claimed"  # occupied
    REVOKED = "revoked"  # free; the row is reused by the next assignment


class SandboxError(Exception):
    """An API error answered as `{"error": name, "detail": detail}`."""

    def __init__(self, status: int, error: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.error, self.detail = status, error, detail

    @classmethod
    def not_found(cls, detail: str) -> SandboxError:
        return cls(404, "ResourceNotFound", detail)


@dataclass(frozen=True, slots=True)
class RateLimit:
    """N requests per sliding window of `window` seconds."""

    limit: int
    window: float

    @classmethod
    def parse(cls, text: str) -> RateLimit:
        """Parse "20/second", "100/minute", "5/10s", "500 per minute"."""
        match = _RATE_RE.match(text.lower())
        if not match or match.group(3) not in _UNITS or int(match.group(1)) < 1:
            raise ValueError(f"invalid rate limit {text!r}, expected e.g. '100/minute'")
        count = float(match.group(2)) if match.group(2) else 1.0
        return cls(int(match.group(1)), count * _UNITS[match.group(3)])

    def __str__(self) -> str:
        for unit in ("day", "hour", "minute", "second"):
            if self.window == _UNITS[unit]:
                return f"{self.limit}/{unit}"
        return f"{self.limit}/{self.window:g}seconds"


class SlidingWindowLimiter:
    """Strict sliding-window log per key; rejected requests are not recorded."""

    def __init__(self) -> None:
        self._logs: dict[str, deque[float]] = {}

    def hit(self, key: str, rate: RateLimit, now: float) -> int | None:
        """Record a request at `now`; return None if allowed, else retry-after seconds."""
        log = self._logs.setdefault(key, deque())
        cutoff = now - rate.window
        while log and log[0] <= cutoff:
            log.popleft()
        if len(log) >= rate.limit:
            # The request fits once the entry `limit` places from the end has expired.
            wait = log[len(log) - rate.limit] + rate.window - now
            return max(1, math.ceil(wait))
        log.append(now)
        return None

    def clear(self) -> None:
        self._logs.clear()


@dataclass(frozen=True, slots=True)
class SandboxConfig:
    """Runtime knobs of the sandbox."""

    rate_limit: RateLimit | None = None  # None: unlimited
    tokens: frozenset[str] = frozenset()  # accepted in addition to DEFAULT_SANDBOX_TOKEN
    legacy_rerevoke: bool = False  # re-revoking bumps revoked_at (older Polar)
    include_member: bool = True  # False: omit `member` like older API versions
    latency_ms: int = 0  # added to every Polar API request
    seed: int = 0  # RNG seed for probabilistic faults
    versions: frozenset[str] = SUPPORTED_POLAR_VERSIONS  # accepted Polar-Version values

    def to_json(self) -> dict[str, Any]:
        return {
            "rate_limit": None if self.rate_limit is None else str(self.rate_limit),
            "tokens": sorted(self.tokens),
            "legacy_rerevoke": self.legacy_rerevoke,
            "include_member": self.include_member,
            "latency_ms": self.latency_ms,
            "seed": self.seed,
            "versions": sorted(self.versions),
        }


@dataclass(slots=True)
class Seat:
    """One seat row, with the occupant's member fields."""

    id: str
    created_at: datetime
    modified_at: datetime
    status: SeatStatus
    subscription_id: str | None = None
    order_id: str | None = None
    customer_id: str | None = None
    member_id: str | None = None
    email: str | None = None
    name: str | None = None
    external_id: str | None = None
    invitation_token_expires_at: datetime | None = None
    claimed_at: datetime | None = None
    revoked_at: datetime | None = None
    seat_metadata: dict[str, Any] = field(default_factory=dict)

    def to_json(self, include_member: bool = True) -> dict[str, Any]:
        """The CustomerSeat body; `member` is omitted entirely when not included."""
        body: dict[str, Any] = {
            "id": self.id,
            "created_at": iso(self.created_at),
            "modified_at": iso(self.modified_at),
            "status": self.status.value,
            "subscription_id": self.subscription_id,
            "order_id": self.order_id,
            "customer_id": self.customer_id,
            "member_id": self.member_id,
            "email": self.email,
            "customer_email": self.email if self.customer_id else None,
            "invitation_token_expires_at": iso(self.invitation_token_expires_at),
            "claimed_at": iso(self.claimed_at),
            "revoked_at": iso(self.revoked_at),
            "seat_metadata": self.seat_metadata,
        }
        if include_member:
            body["member"] = (
                None
                if self.member_id is None
                else {
                    "id": self.member_id,
                    "customer_id": self.customer_id,
                    "email": self.email,
                    "name": self.name,
                    "external_id": self.external_id,
                    "role": "member",
                }
            )
        return body

    def occupy(self, spec: SeatSpec, now: datetime) -> None:
        """Give the row to the person in `spec` (generating customer and member ids)."""
        self.status = spec.status
        self.email = spec.email
        self.customer_id = spec.customer_id or str(uuid.uuid4())
        self.member_id = spec.member_id or str(uuid.uuid4())
        self.name, self.external_id = spec.name, spec.external_id
        self.revoked_at = None
        self.claimed_at = now if spec.status is SeatStatus.CLAIMED else None
        pending = spec.status is SeatStatus.PENDING
        self.invitation_token_expires_at = now + INVITATION_TTL if pending else None
        self.modified_at = now

    def vacate(self, now: datetime) -> None:
        """Revoke: clear the occupant and the invitation."""
        self.status = SeatStatus.REVOKED
        self.revoked_at = self.modified_at = now
        self.customer_id = self.member_id = self.email = None
        self.name = self.external_id = None
        self.invitation_token_expires_at = None


@dataclass(slots=True)
class SeatSpec:
    """What `/_sandbox/seats` and `/_sandbox/assign` accept for one seat."""

    status: SeatStatus = SeatStatus.CLAIMED
    id: str | None = None
    subscription_id: str | None = None
    order_id: str | None = None
    email: str | None = None
    customer_id: str | None = None
    member_id: str | None = None
    external_id: str | None = None
    name: str | None = None
    revoked_at: datetime | None = None


@dataclass(slots=True)
class SeatsList:
    """Body of the list endpoints."""

    seats: list[Seat]
    available_seats: int
    total_seats: int

    def to_json(self, include_member: bool = True) -> dict[str, Any]:
        return {
            "seats": [s.to_json(include_member) for s in self.seats],
            "available_seats": self.available_seats,
            "total_seats": self.total_seats,
        }


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
class _Container:
    """A subscription or an order: its billing customer and its seat rows, in order."""

    owner_customer_id: str | None
    seat_ids: list[str] = field(default_factory=list)


@dataclass(slots=True)
class _Stats:
    requests: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    by_route: Counter[str] = field(default_factory=Counter)
    rate_limited: int = 0
    deletes_by_seat: Counter[str] = field(default_factory=Counter)
    revocations_by_seat: Counter[str] = field(default_factory=Counter)
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
        self._reset_data()

    def _reset_data(self) -> None:
        self._seats: dict[str, Seat] = {}
        self._containers: dict[tuple[str, str], _Container] = {}
        self._sessions: dict[str, str] = {}
        self._faults: list[FaultRule] = []
        self._limiter = SlidingWindowLimiter()
        self._rng = random.Random(self.config.seed)
        self._stats = _Stats()
        self._log: deque[dict[str, Any]] = deque(maxlen=LOG_LIMIT)
        self._seq = 0

    # -- configuration -------------------------------------------------------------------

    def reset(self, **changes: Any) -> SandboxConfig:
        """Drop seats, sessions, faults, stats and log; start from default config + changes."""
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
            for key in ("tokens", "versions"):
                if key in changes:
                    changes[key] = frozenset(changes[key])
            self.config = dataclasses.replace(self.config, **changes)
            if "seed" in changes:
                self._rng = random.Random(self.config.seed)
            return self.config

    # -- seeding -------------------------------------------------------------------------

    def create_seats(
        self, specs: Sequence[SeatSpec], owner_customer_id: str | None = None
    ) -> list[Seat]:
        """Create seat rows; seats naming no subscription/order share a new subscription."""
        now = self.now()
        with self.lock:
            batch_subscription: str | None = None
            created: list[Seat] = []
            new_ids = [spec.id and _canonical(spec.id) for spec in specs]
            clash = [i for i in new_ids if i and i in self._seats]
            if clash or len({i for i in new_ids if i}) != len([i for i in new_ids if i]):
                raise SandboxError(409, "Conflict", f"seat id already exists: {clash[:3]}")
            for spec, seat_id in zip(specs, new_ids, strict=True):
                if spec.subscription_id is None and spec.order_id is None:
                    batch_subscription = batch_subscription or str(uuid.uuid4())
                    spec = dataclasses.replace(spec, subscription_id=batch_subscription)
                seat = Seat(
                    id=seat_id or str(uuid.uuid4()),
                    created_at=now,
                    modified_at=now,
                    status=SeatStatus.REVOKED,
                )
                key = self._container_key(spec.subscription_id, spec.order_id)
                seat.subscription_id = key[1] if key[0] == "subscription" else None
                seat.order_id = key[1] if key[0] == "order" else None
                if spec.status is SeatStatus.REVOKED:
                    seat.revoked_at = spec.revoked_at or now
                    seat.email, seat.customer_id, seat.member_id = (
                        spec.email,
                        spec.customer_id,
                        spec.member_id,
                    )
                    seat.name, seat.external_id = spec.name, spec.external_id
                else:
                    seat.occupy(spec, now)
                container = self._containers.get(key)
                if container is None:
                    container = self._containers[key] = _Container(owner_customer_id)
                elif owner_customer_id is not None:
                    container.owner_customer_id = owner_customer_id
                container.seat_ids.append(seat.id)
                self._seats[seat.id] = seat
                created.append(dataclasses.replace(seat))
            return created

    def assign(self, spec: SeatSpec) -> Seat:
        """Assign like Polar: reuse a revoked row of the container (same id) or add a row."""
        if spec.status is SeatStatus.REVOKED:
            raise SandboxError(400, "BadRequest", "An assigned seat is pending or claimed")
        now = self.now()
        with self.lock:
            key = self._container_key(spec.subscription_id, spec.order_id)
            container = self._containers.get(key)
            if container is None:
                raise SandboxError.not_found(f"{key[0].capitalize()} not found")
            seat = next(
                (
                    self._seats[i]
                    for i in container.seat_ids
                    if self._seats[i].status is SeatStatus.REVOKED
                ),
                None,
            )
            if seat is None:
                seat = Seat(
                    id=str(uuid.uuid4()),
                    created_at=now,
                    modified_at=now,
                    status=spec.status,
                    subscription_id=self._sub(key),
                    order_id=self._ord(key),
                )
                container.seat_ids.append(seat.id)
                self._seats[seat.id] = seat
            seat.occupy(spec, now)
            seat.seat_metadata = {}
            return dataclasses.replace(seat)

    def create_customer_session(self, customer_id: str) -> str:
        """Issue a customer session token for the customer portal."""
        token = "polar_cst_" + secrets.token_urlsafe(24)
        with self.lock:
            self._sessions[token] = _canonical(customer_id)
        return token

    def add_fault(self, rule: FaultRule) -> None:
        with self.lock:
            self._faults.append(rule)

    def clear_faults(self) -> None:
        with self.lock:
            self._faults.clear()

    def faults(self) -> list[FaultRule]:
        with self.lock:
            return [dataclasses.replace(rule) for rule in self._faults]

    # -- the Polar API -------------------------------------------------------------------

    def is_org_token(self, token: str) -> bool:
        return token == DEFAULT_SANDBOX_TOKEN or token in self.config.tokens

    def session_customer(self, token: str) -> str | None:
        """The customer a customer session token belongs to, or None."""
        return self._sessions.get(token)

    def hit_rate_limit(self, bucket: str) -> int | None:
        """Count a request against `bucket`; None if allowed, else retry-after seconds."""
        with self.lock:
            rate = self.config.rate_limit
            if rate is None:
                return None
            return self._limiter.hit(bucket, rate, self.clock())

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

    def revoke(self, seat_id: str, customer_id: str | None = None) -> Seat:
        """DELETE a seat; `customer_id` restricts to that customer's subscriptions/orders."""
        with self.lock:
            seat = self._visible_seat(_canonical(seat_id), customer_id)
            if seat.status is not SeatStatus.REVOKED:
                seat.vacate(self.now())
                self._stats.revocations_by_seat[seat.id] += 1
            elif self.config.legacy_rerevoke:
                seat.revoked_at = seat.modified_at = self.now()
                self._stats.revocations_by_seat[seat.id] += 1
            return dataclasses.replace(seat)

    def list_seats(
        self,
        subscription_id: str | None = None,
        order_id: str | None = None,
        customer_id: str | None = None,
    ) -> SeatsList:
        """All rows of one subscription or order, revoked included."""
        if subscription_id is None and order_id is None:
            raise SandboxError(
                400, "BadRequest", "Either subscription_id or order_id must be provided"
            )
        with self.lock:
            key = self._container_key(subscription_id, order_id)
            container = self._containers.get(key)
            if container is None or (
                customer_id is not None and container.owner_customer_id != customer_id
            ):
                raise SandboxError.not_found(f"{key[0].capitalize()} not found")
            seats = [dataclasses.replace(self._seats[i]) for i in container.seat_ids]
            available = sum(1 for s in seats if s.status is SeatStatus.REVOKED)
            return SeatsList(seats, available, len(seats))

    def _visible_seat(self, seat_id: str, customer_id: str | None) -> Seat:
        seat = self._seats.get(seat_id)
        if seat is not None and customer_id is not None:
            key = self._container_key(seat.subscription_id, seat.order_id)
            if self._containers[key].owner_customer_id != customer_id:
                seat = None
        if seat is None:
            raise SandboxError.not_found("Seat not found")
        return seat

    @staticmethod
    def _container_key(subscription_id: str | None, order_id: str | None) -> tuple[str, str]:
        if subscription_id is not None:
            return ("subscription", _canonical(subscription_id))
        if order_id is not None:
            return ("order", _canonical(order_id))
        raise SandboxError(400, "BadRequest", "Either subscription_id or order_id is required")

    @staticmethod
    def _sub(key: tuple[str, str]) -> str | None:
        return key[1] if key[0] == "subscription" else None

    @staticmethod
    def _ord(key: tuple[str, str]) -> str | None:
        return key[1] if key[0] == "order" else None

    # -- inspection & bookkeeping --------------------------------------------------------

    def seat(self, seat_id: str) -> Seat | None:
        with self.lock:
            seat = self._seats.get(_canonical(seat_id))
            return None if seat is None else dataclasses.replace(seat)

    def all_seats(self) -> list[Seat]:
        with self.lock:
            return [dataclasses.replace(seat) for seat in self._seats.values()]

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
                "deletes_by_seat": dict(s.deletes_by_seat),
                "revocations_by_seat": dict(s.revocations_by_seat),
                "max_concurrent": s.max_concurrent,
                "in_flight": s.in_flight,
            }

    def log_since(self, since: int = 0) -> list[dict[str, Any]]:
        """Request records with seq > since (oldest first)."""
        with self.lock:
            if not self._log:
                return []
            start = max(0, since - self._log[0]["seq"] + 1)
            return [dict(r) for r in itertools.islice(self._log, start, None)]
