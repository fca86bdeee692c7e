"""What the sandbox saw: request counts, concurrency, DELETEs and real revocations per seat,
and a log of every Polar API request (`/_sandbox/stats`, `/_sandbox/log`). Tests and
benchmarks prove "every seat revoked once, no bystander touched" from here."""

from __future__ import annotations

import itertools
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from worker.sandbox.config import token_hash

LOG_LIMIT = 500_000  # request records kept for /_sandbox/log


@dataclass(slots=True)
class _Counts:
    requests: int = 0
    by_status: Counter[str] = field(default_factory=Counter)
    by_route: Counter[str] = field(default_factory=Counter)
    rate_limited: int = 0
    deletes_by_seat: Counter[str] = field(default_factory=Counter)
    revocations_by_seat: Counter[str] = field(default_factory=Counter)
    revocations: list[dict[str, str | None]] = field(default_factory=list)
    in_flight: int = 0
    max_concurrent: int = 0


class Accounting:
    """Counters and the request log (not thread-safe: the state's lock guards it)."""

    def __init__(self) -> None:
        self._counts = _Counts()
        self._log: deque[dict[str, Any]] = deque(maxlen=LOG_LIMIT)
        self._seq = 0

    def revoked(self, occupant: dict[str, str | None] | None, seat_id: str) -> None:
        """A revocation took effect; ``occupant`` is who held the seat (None: a legacy
        re-revoke of an already revoked seat)."""
        if occupant is not None:
            self._counts.revocations.append(occupant)
        self._counts.revocations_by_seat[seat_id] += 1

    def revocations(self) -> list[dict[str, str | None]]:
        return [dict(r) for r in self._counts.revocations]

    def started(self) -> None:
        counts = self._counts
        counts.in_flight += 1
        counts.max_concurrent = max(counts.max_concurrent, counts.in_flight)

    def count_delete(self, seat_id: str) -> None:
        self._counts.deletes_by_seat[seat_id] += 1

    def finished(self, *, method: str, path: str, route: str, status: int,
                 token: str | None, seat_id: str | None, started: float) -> None:
        counts = self._counts
        counts.in_flight -= 1
        counts.requests += 1
        counts.by_status[str(status)] += 1
        counts.by_route[route] += 1
        if status == 429:
            counts.rate_limited += 1
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
        c = self._counts
        return {
            "requests": c.requests,
            "by_status": dict(c.by_status),
            "by_route": dict(c.by_route),
            "rate_limited": c.rate_limited,
            "deletes_by_seat": dict(c.deletes_by_seat),
            "revocations_by_seat": dict(c.revocations_by_seat),
            "revocations": [dict(r) for r in c.revocations],
            "max_concurrent": c.max_concurrent,
            "in_flight": c.in_flight,
        }

    def log_since(self, since: int = 0) -> list[dict[str, Any]]:
        """Request records with seq > since (oldest first)."""
        if not self._log:
            return []
        start = max(0, since - self._log[0]["seq"] + 1)
        return [dict(r) for r in itertools.islice(self._log, start, None)]
