"""``seat-revoker sandbox --seed N``: sample seats in the local sandbox and, printed once it
listens, everything a new user needs next — the seats' ids, the token, the exact
environment to export, and the commands of the README's walkthrough. No source reading.

Pure: ``sample_specs`` says what to create, ``walkthrough`` what to print.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from worker.sandbox.ratelimit import RateLimit
from worker.sandbox.seats import SeatSpec, SeatStatus

# Workers' own limiter when the local sandbox applies none: fast enough that a walkthrough
# batch is done in a blink, still a real limit. The default for POLAR_ENVIRONMENT=sandbox
# (100/minute, the hosted sandbox's) would make a small local batch crawl.
LOCAL_WORKER_RATE = "50/second"
DOMAIN = "example.test"


def sample_specs(count: int) -> list[SeatSpec]:
    """``count`` claimed seats of one subscription, held by person1… person<count>."""
    subscription = str(uuid.uuid4())
    return [SeatSpec(status=SeatStatus.CLAIMED, subscription_id=subscription,
                     email=f"person{i}@{DOMAIN}", external_id=f"E-{i:04d}")
            for i in range(1, count + 1)]


def worker_rate_for(limit: RateLimit) -> str:
    """The sandbox's limit as POLAR_RATE_LIMIT takes it (N/second or N/minute)."""
    text = str(limit)
    if text.endswith(("/second", "/minute")):
        return text
    return f"{max(1, int(limit.limit * 60 / limit.window))}/minute"


def rate_limit_line(limit: RateLimit | None) -> str:
    if limit is None:
        return "rate limit: none (start with --rate-limit 100/minute to act like Polar's sandbox)"
    return (f"rate limit: {limit} per organization, fixed window, 429 with "
            "retry-after past it (Polar's hosted sandbox: 100/minute)")


def walkthrough(url: str, token: str, limit: RateLimit | None,
                seats: Sequence[Any]) -> list[str]:
    """The lines printed after the sandbox starts with sample seats."""
    worker_rate = LOCAL_WORKER_RATE if limit is None else worker_rate_for(limit)
    lines = [f"sandbox listening on {url}", rate_limit_line(limit), f"token: {token}"]
    if not seats:
        return lines
    first = seats[0]
    sub = first.subscription_id
    lines += ["", f"{len(seats)} sample seat(s) in subscription {sub}:"]
    lines += [f"  {seat.id}  {_email(seat)}" for seat in seats]
    lines += [
        "",
        "In another terminal, export (also what a worker, the API and the CLI read):",
        f"  export POLAR_API_URL={url} POLAR_ACCESS_TOKEN={token}",
        f"  export POLAR_RATE_LIMIT={worker_rate}   # workers' own limit: match the sandbox's",
        "  export API_KEYS=ops-you:local-dashboard-key-0001   # for the API and dashboard",
        "then:",
        "  seat-revoker worker --concurrency 2 &",
        f"  seat-revoker revoke {first.id} --subscription-id {sub} \\",
        f"      --email {_email(first)} --reason 'left the company' --wait",
    ]
    if len(seats) > 1:
        rows = [f"{sub},{_email(seat)},," for seat in seats[1:4]]
        rows.append(f"{sub},nobody@{DOMAIN},,")  # no seat of theirs: no_active_seat
        # A seat id Polar does not know, revoked without the occupant check: failed (404).
        rows.append(f",,{uuid.uuid4()},false")
        lines += ["  printf 'subscription_id,email,seat_id,guard\\n" + "\\n".join(rows)
                  + "\\n' > leavers.csv",
                  "  seat-revoker batch leavers.csv --wait   # exits 1: one row failed (404)",
                  "  seat-revoker api &   # then open the dashboard it prints; sign in with "
                  "local-dashboard-key-0001"]
    return lines


def _email(seat: Any) -> str:
    member = getattr(seat, "member", None)
    return str(getattr(seat, "email", None) or getattr(member, "email", None) or "")
