"""Knobs and identities of the local Polar stand-in: its configuration, the subject a bearer
token authenticates, the versions and session lifetimes it serves (after polarsource/polar;
each constant names its source)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from worker.sandbox.people import MemberRole
from worker.sandbox.ratelimit import RateLimit

DEFAULT_SANDBOX_TOKEN = "polar_oat_sandbox_local"
# server/polar/version.py: CURRENT_API_VERSION (the default) and NEXT_API_VERSION.
DEFAULT_POLAR_VERSION = "2026-04"
SUPPORTED_POLAR_VERSIONS = frozenset({DEFAULT_POLAR_VERSION, "2026-10"})
SESSION_TTL = timedelta(hours=1)  # server/polar/config.py CUSTOMER_SESSION_TTL
CUSTOMER_SESSION_PREFIX = "polar_cst_"  # customer_session/service.py
MEMBER_SESSION_PREFIX = "polar_mst_"  # models/member_session.py

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


