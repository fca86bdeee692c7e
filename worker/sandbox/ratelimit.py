"""Polar's rate limit: a fixed window per identity that starts at its first request.

Polar runs asgi-ratelimit 0.10.0 with a Redis backend (polarsource/polar
server/polar/rate_limit.py; abersheeran/asgi-ratelimit ratelimit/backends/redis.py). Its
Lua script does `SET key <limit> EX <window> NX` and then `DECR`s the key for each admitted
request, so:

* a window opens at the first request after the previous one expired (not clock-aligned);
* a request is refused while the counter is below 1, and refused requests are not counted;
* the 429 carries `retry-after: <window length>` (60 for per-minute rules), not the time left.

The key's user part is `organization:<id>` for organization tokens, `customer:<id>` and
`member:<id>` for portal sessions (server/polar/auth/models.py `rate_limit_user`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from config.settings import RATE_UNITS, parse_rate

__all__ = ["FixedWindowLimiter", "RateLimit"]


@dataclass(frozen=True, slots=True)
class RateLimit:
    """N requests per fixed window of `window` seconds."""

    limit: int
    window: float

    @classmethod
    def parse(cls, text: str) -> RateLimit:
        """Parse "20/second", "100/minute", "5/10s", "500 per minute", "7/hour"."""
        count, window = parse_rate(text, units=RATE_UNITS, form="'N/<second|minute|hour|day>'")
        if not count.is_integer():
            raise ValueError(f"rate limit {text!r} must be a whole number of requests")
        return cls(int(count), window)

    @property
    def retry_after(self) -> int:
        """What a 429 says in `retry-after`: the window length, in whole seconds."""
        return max(1, math.ceil(self.window))

    def __str__(self) -> str:
        for unit in ("day", "hour", "minute", "second"):
            if self.window == RATE_UNITS[unit]:
                return f"{self.limit}/{unit}"
        return f"{self.limit}/{self.window:g}seconds"


@dataclass(slots=True)
class _Window:
    started: float  # clock reading of the request that opened it
    limit: int
    background: int  # requests of other integrations, spent when the window opened
    admitted: int = 0
    rejected: int = 0

    @property
    def remaining(self) -> int:
        return self.limit - self.background - self.admitted


class FixedWindowLimiter:
    """One fixed window per key; see the module docstring."""

    def __init__(self) -> None:
        self._windows: dict[str, _Window] = {}

    def hit(
        self, key: str, rate: RateLimit, now: float, background: float = 0.0
    ) -> int | None:
        """Count a request at `now`; None if admitted, else the retry-after seconds.

        `background` (0..1) is the share of each new window's budget another integration
        of the same identity uses up as the window opens.
        """
        window = self._windows.get(key)
        if window is None or now >= window.started + rate.window:
            spent = min(rate.limit, math.floor(rate.limit * background))
            window = self._windows[key] = _Window(now, rate.limit, spent)
        if window.remaining < 1:
            window.rejected += 1
            return rate.retry_after
        window.admitted += 1
        return None

    def windows(self, now: float, rate: RateLimit | None) -> dict[str, dict[str, Any]]:
        """The current window of each key (expired ones left out)."""
        span = rate.window if rate else 0.0
        return {
            key: {
                "opened_s_ago": round(now - w.started, 3),
                "limit": w.limit,
                "background": w.background,
                "admitted": w.admitted,
                "rejected": w.rejected,
                "remaining": max(0, w.remaining),
            }
            for key, w in self._windows.items()
            if now < w.started + span
        }

    def clear(self) -> None:
        self._windows.clear()
