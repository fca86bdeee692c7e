"""Injected failures of the sandbox: rules matched against each Polar API request."""

from __future__ import annotations

import dataclasses
import random
from dataclasses import dataclass
from typing import Any


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



class FaultBook:
    """The rules in force, first match wins (not thread-safe: the state's lock guards it)."""

    def __init__(self) -> None:
        self._rules: list[FaultRule] = []

    def add(self, rule: FaultRule) -> None:
        self._rules.append(rule)

    def clear(self) -> None:
        self._rules.clear()

    def rules(self) -> list[FaultRule]:
        return [dataclasses.replace(rule) for rule in self._rules]

    def match(self, method: str, seat_id: str | None, rng: random.Random) -> FaultRule | None:
        """The first rule matching this request (consuming one of its `times`)."""
        for rule in self._rules:
            if rule.method is not None and rule.method.upper() != method:
                continue
            if rule.seat_id is not None and rule.seat_id.lower() != (seat_id or "").lower():
                continue
            if rule.times is not None and rule.hits >= rule.times:
                continue
            if rule.probability is not None and rng.random() >= rule.probability:
                continue
            rule.hits += 1
            return dataclasses.replace(rule)
        return None
