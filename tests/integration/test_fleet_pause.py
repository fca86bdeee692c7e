"""Faults that would fail every request alike pause the queue, and it resumes after the fix.

Polar answers an unserved ``Polar-Version`` with 404 on every call, a revoked token with
401 ``invalid_token`` (polarsource/polar ``server/polar/kit/versioning.py``,
``server/polar/auth/dependencies.py``). Nothing may be marked failed for that: the queue
pauses, the pause shows in the worker's log, and every request ends done once an operator
fixes the setting — by restarting the workers with it, or on Polar's side (then a probe
finds out).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from config.settings import Settings
from worker.intake.producer import RevocationInput
from worker.jobs.fleetpause import FleetPause
from worker.jobs.runtime import pause_scope
from worker.sandbox.app import DEFAULT_SANDBOX_TOKEN
from worker.sandbox.localstack import LocalStack

pytestmark = pytest.mark.integration


@pytest.fixture
def paused_stack(tmp_path: Path, redis_url: str) -> Iterator[LocalStack]:
    with LocalStack(workdir=tmp_path, redis_url=redis_url,
                    settings_overrides={"pause_probe_seconds": 1.0}) as stack:
        yield stack


def people(stack: LocalStack, count: int) -> list[str]:
    """``count`` offboarding requests for seats in one subscription; their ids."""
    sub = str(uuid.uuid4())
    seats = stack.control.create_seats(
        [{"subscription_id": sub, "email": f"p{i}.{uuid.uuid4().hex[:6]}@acme.test"}
         for i in range(count)])
    return [
        stack.producer.submit(RevocationInput(subscription_id=sub, email=seat["email"])).record.id
        for seat in seats
    ]


def pauses(settings: Settings) -> FleetPause:
    from redis import Redis

    return FleetPause(Redis.from_url(settings.redis_url), settings.redis_key("pause"))


def test_unserved_api_version_pauses_until_workers_restart_fixed(
    paused_stack: LocalStack,
) -> None:
    stack = paused_stack
    stack.control.configure(versions=["2026-04"])  # Polar stops serving 2026-10
    stack.settings_overrides["polar_api_version"] = "2026-10"
    worker = stack.add_worker(concurrency=2)
    ids = people(stack, 5)

    with pytest.raises(TimeoutError):
        stack.wait_terminal(ids, timeout=6)
    records = [stack.store.get(i) for i in ids]
    assert all(r is not None and r.state in ("queued", "retrying") for r in records)
    paused = pauses(stack.settings).get(pause_scope(stack.settings))
    assert paused is not None and paused.fault == "api_version"
    assert '"event": "pause.fleet"' in stack.logs()

    # The operator fixes the setting and restarts the workers.
    worker.stop()
    stack.workers.remove(worker)
    del stack.settings_overrides["polar_api_version"]
    stack.add_worker(concurrency=2)
    done = stack.wait_terminal(ids, timeout=90)
    assert [r.state for r in done] == ["revoked"] * 5
    assert stack.control.stats()["deletes_by_seat"] and all(
        r.attempts >= 1 for r in done)


def test_revoked_token_pauses_and_a_probe_resumes_after_the_fix(
    paused_stack: LocalStack,
) -> None:
    stack = paused_stack
    stack.control.configure(revoked_tokens=[DEFAULT_SANDBOX_TOKEN])
    stack.add_worker(concurrency=2)
    ids = people(stack, 5)

    with pytest.raises(TimeoutError):
        stack.wait_terminal(ids, timeout=6)
    assert pauses(stack.settings).get(pause_scope(stack.settings)) is not None
    assert not any(r and r.state == "failed" for r in (stack.store.get(i) for i in ids))

    stack.control.configure(revoked_tokens=[])  # fixed on Polar's side
    done = stack.wait_terminal(ids, timeout=90)
    assert [r.state for r in done] == ["revoked"] * 5
    assert pauses(stack.settings).get(pause_scope(stack.settings)) is None
    assert '"event": "pause.resumed"' in stack.logs()
