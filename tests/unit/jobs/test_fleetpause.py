"""The fleet pause over a real Redis: one probe per interval, resume, nothing else lost."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest
from redis import Redis

from worker.decisions.outcomes import FleetFault
from worker.jobs.fleetpause import FleetPause


@pytest.fixture
def pause(redis_url: str) -> Iterator[FleetPause]:
    redis = Redis.from_url(redis_url)
    prefix = f"test-pause-{uuid.uuid4().hex[:8]}"
    yield FleetPause(redis, prefix, probe_seconds=0.3)
    for key in redis.scan_iter(match=f"{prefix}:*"):
        redis.delete(key)
    redis.close()


def test_no_pause_admits_everyone(pause: FleetPause) -> None:
    admission = pause.admit("tok:default")
    assert admission.wait == 0 and not admission.probe
    assert pause.all() == []


def test_a_pause_holds_requests_and_lets_one_probe_per_interval(pause: FleetPause) -> None:
    info = pause.pause("tok:default", FleetFault.TOKEN_INVALID, 401)
    assert "POLAR_ACCESS_TOKEN" in info.message
    held = pause.admit("tok:default")
    assert held.wait > 0 and not held.probe
    assert pause.admit("other:default").wait == 0, "another token/version is not paused"
    time.sleep(0.35)
    probes = [pause.admit("tok:default") for _ in range(5)]
    assert [a.probe for a in probes].count(True) == 1
    assert all(a.wait > 0 for a in probes if not a.probe)


def test_a_failed_probe_keeps_the_original_since(pause: FleetPause) -> None:
    first = pause.pause("tok:v", FleetFault.API_VERSION, 404)
    again = pause.pause("tok:v", FleetFault.API_VERSION, 404)
    assert again.since == first.since
    assert [p.scope for p in pause.all()] == ["tok:v"]


def test_resume_clears_the_pause(pause: FleetPause) -> None:
    pause.pause("tok:default", FleetFault.FORBIDDEN, 403)
    assert pause.resume("tok:default")
    assert pause.get("tok:default") is None
    assert pause.admit("tok:default").wait == 0
    assert not pause.resume("tok:default")


def test_workers_with_a_new_setting_forget_the_old_pause(pause: FleetPause) -> None:
    pause.pause("old-token:default", FleetFault.TOKEN_INVALID, 401)
    pause.pause("new-token:default", FleetFault.API_VERSION, 404)
    assert pause.forget_others("new-token:default") == ["old-token:default"]
    assert [p.scope for p in pause.all()] == ["new-token:default"]
