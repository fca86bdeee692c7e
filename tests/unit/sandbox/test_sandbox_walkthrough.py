"""What `seat-revoker sandbox --seed N` prints: the rate limit it applies and the matching
POLAR_RATE_LIMIT for workers (the walkthrough itself runs in tests/integration)."""

from __future__ import annotations

import pytest

from worker.sandbox.ratelimit import RateLimit
from worker.sandbox.walkthrough import (
    LOCAL_WORKER_RATE,
    rate_limit_line,
    sample_specs,
    walkthrough,
    worker_rate_for,
)


@pytest.mark.parametrize(
    ("limit", "rate"),
    [("100/minute", "100/minute"), ("20/second", "20/second"), ("5/10s", "30/minute"),
     ("1000/hour", "16/minute"), ("1/day", "1/minute")],
)
def test_worker_rate_matches_the_sandbox(limit: str, rate: str) -> None:
    assert worker_rate_for(RateLimit.parse(limit)) == rate


def test_the_limit_in_force_is_said() -> None:
    assert rate_limit_line(None).startswith("rate limit: none")
    assert "100/minute per organization" in rate_limit_line(RateLimit.parse("100/minute"))


def test_seeded_seats_and_unlimited_sandbox_export_a_fast_worker_rate() -> None:
    specs = sample_specs(3)
    assert [s.email for s in specs] == [f"person{i}@example.test" for i in (1, 2, 3)]
    assert len({s.subscription_id for s in specs}) == 1

    class Seat:
        def __init__(self, n: int) -> None:
            self.id, self.subscription_id, self.email = f"id-{n}", "sub-1", f"p{n}@x"

    text = "\n".join(walkthrough("http://127.0.0.1:8800", "tok", None,
                                 [Seat(1), Seat(2)]))
    assert f"POLAR_RATE_LIMIT={LOCAL_WORKER_RATE}" in text
    assert "POLAR_API_URL=http://127.0.0.1:8800 POLAR_ACCESS_TOKEN=tok" in text
    assert "seat-revoker revoke id-1 --subscription-id sub-1" in text
    assert walkthrough("http://h:1", "tok", None, [])[-1] == "token: tok"
