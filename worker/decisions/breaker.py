"""The circuit breaker's arithmetic: may one more seat be revoked in this window?

Pure: the counts come from the fleet-wide reservation (``worker.jobs.breaker``), the active
seats from the seat lists the worker already read. Modelled on the brakes of trusted
provisioning systems: Okta's Import Safeguards (on by default at 20 % of an app's
assignments), Entra's accidental-deletions threshold (deletes *and* disables per cycle; the
job is quarantined until an admin allows them), Google Cloud Directory Sync's "do not
synchronize if deletions exceed" a count or a share.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum

ORG_SCOPE = "org"
CUSTOMER_PREFIX = "customer:"


def customer_scope(customer_id: str) -> str:
    return f"{CUSTOMER_PREFIX}{customer_id}"


def scope_customer(scope: str) -> str | None:
    """The Polar customer id a scope names (None for the organization's)."""
    return scope[len(CUSTOMER_PREFIX):] if scope.startswith(CUSTOMER_PREFIX) else None


@dataclass(frozen=True)
class Limits:
    customer_max: int = 5
    customer_share: float = 0.2
    org_max: int = 200

    def customer_limit(self, active_seats: int) -> int:
        """Seats a customer may lose per window: the floor, or the share of its active
        seats, whichever is larger. ``active_seats`` is what the customer held before this
        window's revocations: the seats not revoked when this one is judged (the seat about
        to be revoked included) plus those revoked in the window, so the limit does not
        shrink as the window's revocations land."""
        return max(self.customer_max, math.floor(self.customer_share * max(active_seats, 0)))


class Verdict(StrEnum):
    GO = "go"
    HOLD = "hold"


@dataclass(frozen=True)
class Check:
    verdict: Verdict
    scope: str | None = None  # the scope whose limit it hit (HOLD)
    limit: int | None = None
    used: int | None = None
    tripped: bool = False  # this check opened the scope's breaker (it was closed)

    def describe(self) -> str:
        if self.verdict is Verdict.GO:
            return "within the breaker's limits"
        customer = scope_customer(self.scope or "")
        what = f"customer {customer}" if customer else "the organization"
        return f"{what} reached its limit of {self.limit} seats per window ({self.used} revoked)"


def judge(*, customer_used: int, org_used: int, customer_limit: int | None, org_limit: int,
          customer_scope_name: str = ORG_SCOPE, customer_open: bool = False,
          org_open: bool = False, forced: bool = False) -> Check:
    """Whether one more revocation fits: each scope's count *after* it must stay within its
    limit, and an open breaker holds everything of its scope until an operator acts.
    ``customer_limit`` None: the seat's customer is unknown (an unguarded seat id), only
    the organization's limit applies. ``forced``: released by an operator (or in an
    approved batch): it goes, and counts."""
    if forced:
        return Check(Verdict.GO)
    if org_open:
        return Check(Verdict.HOLD, ORG_SCOPE, org_limit, org_used)
    if customer_limit is not None and customer_open:
        return Check(Verdict.HOLD, customer_scope_name, customer_limit, customer_used)
    if customer_limit is not None and customer_used + 1 > customer_limit:
        return Check(Verdict.HOLD, customer_scope_name, customer_limit, customer_used, True)
    if org_used + 1 > org_limit:
        return Check(Verdict.HOLD, ORG_SCOPE, org_limit, org_used, True)
    return Check(Verdict.GO)


@dataclass(frozen=True)
class BlastRadius:
    """What a planned batch would do to one customer (the dry run and the approver see it)."""

    customer_id: str
    would_revoke: int
    active_seats: int
    limit: int

    @property
    def share(self) -> float:
        return self.would_revoke / self.active_seats if self.active_seats else 1.0

    @property
    def trips(self) -> bool:
        return self.would_revoke > self.limit


def blast_radius(customer_id: str, would_revoke: int, active_seats: int,
                 limits: Limits) -> BlastRadius:
    return BlastRadius(customer_id, would_revoke, active_seats,
                       limits.customer_limit(active_seats))
