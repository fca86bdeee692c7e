"""Pause the whole queue of one Polar token when Polar says every request would fail.

A revoked token (401), a token without the seat scopes or an organization without
seat-based pricing (403), or a ``POLAR_API_VERSION`` Polar does not serve (404 on every
call) fails every request alike. Marking each one ``failed`` would bury a backlog under one
bad setting; instead the first such answer pauses the queue of that token and API version:
requests wait (nothing is marked failed, nothing is lost), the pause is shown by
``seat-revoker status``, ``/readyz``, ``/metrics`` and the dashboard, and every
``probe_seconds`` one request is let through as a probe. The queue resumes when a probe
succeeds, or at once when workers restart with a fixed setting (a new token or version is
another pause key).

Redis layout under ``key_prefix``: ``{p}:{scope}`` → JSON ``PauseInfo`` (no expiry: it
stays until a probe succeeds or an operator clears it), ``{p}:{scope}:probe`` → a lock
that elects one prober per interval.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from redis import Redis

from worker.decisions.outcomes import FLEET_FAULT_HINTS, FleetFault


@dataclass(frozen=True)
class PauseInfo:
    """Why and since when the queue of one token/API version is paused."""

    scope: str
    fault: str
    hint: str
    status: int | None
    since: str  # ISO 8601, UTC
    last_probe: str

    @property
    def message(self) -> str:
        return f"paused since {self.since}: {self.hint}"


@dataclass(frozen=True)
class Admission:
    wait: float = 0.0  # > 0: paused; come back in this many seconds
    probe: bool = False  # paused, and this request is the one sent to see if it still is


class FleetPause:
    def __init__(self, redis: Redis, key_prefix: str, *, probe_seconds: float = 30.0) -> None:
        self._redis = redis
        self._prefix = key_prefix
        self.probe_seconds = probe_seconds

    def _key(self, scope: str) -> str:
        return f"{self._prefix}:{scope}"

    def pause(self, scope: str, fault: FleetFault, status: int | None) -> PauseInfo:
        """Record (or keep) the pause of ``scope``; the next probe is ``probe_seconds`` away."""
        now = _now()
        current = self.get(scope)
        info = PauseInfo(
            scope=scope,
            fault=fault.value,
            hint=FLEET_FAULT_HINTS[fault],
            status=status,
            since=current.since if current and current.fault == fault.value else now,
            last_probe=now,
        )
        pipe = self._redis.pipeline()
        pipe.set(self._key(scope), json.dumps(asdict(info)))
        # The prober's lock doubles as the interval: nobody probes before it expires.
        pipe.set(f"{self._key(scope)}:probe", "1", px=int(self.probe_seconds * 1000))
        pipe.execute()
        return info

    def get(self, scope: str) -> PauseInfo | None:
        raw = self._redis.get(self._key(scope))
        return None if raw is None else PauseInfo(**json.loads(raw))

    def all(self) -> list[PauseInfo]:
        """Every pause in force (for status, readiness, metrics and the dashboard)."""
        found = []
        for key in self._redis.scan_iter(match=f"{self._prefix}:*", count=100):
            name = key.decode() if isinstance(key, bytes) else str(key)
            if name.endswith(":probe"):
                continue
            raw = self._redis.get(name)
            if raw is not None:
                found.append(PauseInfo(**json.loads(raw)))
        return sorted(found, key=lambda info: info.since)

    def admit(self, scope: str) -> Admission:
        """May a request go to Polar now? Under a pause, one per interval goes, as a probe."""
        if not self._redis.exists(self._key(scope)):
            return Admission()
        probe = f"{self._key(scope)}:probe"
        if self._redis.set(probe, "1", nx=True, px=int(self.probe_seconds * 1000)):
            return Admission(probe=True)
        ttl_ms = self._redis.pttl(probe)
        wait = max(int(ttl_ms), 0) / 1000 if isinstance(ttl_ms, int) else self.probe_seconds
        return Admission(wait=max(wait, 0.5))

    def forget_others(self, scope: str) -> list[str]:
        """Clear pauses of every scope but ``scope``: a worker started with another token
        or API version means the operator replaced the setting that was refused."""
        stale = [info.scope for info in self.all() if info.scope != scope]
        for other in stale:
            self.resume(other)
        return stale

    def resume(self, scope: str) -> bool:
        """A call with the paused token succeeded, or an operator cleared it."""
        return bool(self._redis.delete(self._key(scope), f"{self._key(scope)}:probe"))


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
