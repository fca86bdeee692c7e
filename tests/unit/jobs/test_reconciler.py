"""Table tests of ``lost_messages``: which in-flight requests lost their broker message."""

from __future__ import annotations

import pytest

from worker.jobs.reconciler import lost_messages

Q, RUN, RETRY = "queued", "running", "retrying"


@pytest.mark.parametrize(
    ("in_flight", "in_broker", "held_live", "held_dead", "missing_before", "resend", "missing"),
    [
        pytest.param([("a", Q)], {"a"}, set(), set(), set(), [], set(),
                     id="waiting in the broker's queue"),
        pytest.param([("a", Q)], set(), {"a"}, set(), set(), [], set(),
                     id="held by a live node (prefetched or waiting for its countdown)"),
        pytest.param([("a", Q)], set(), set(), {"a"}, set(), ["a"], set(),
                     id="held by a dead node: sent again at once"),
        pytest.param([("a", RUN)], set(), set(), {"a"}, set(), ["a"], set(),
                     id="running on a dead node: sent again without waiting for the lease"),
        pytest.param([("a", RUN)], set(), set(), set(), set(), [], set(),
                     id="running elsewhere: left to its heartbeat lease"),
        pytest.param([("a", Q)], set(), {"a"}, {"a"}, set(), [], set(),
                     id="a live node took it over from a dead one"),
        pytest.param([("a", Q)], set(), set(), set(), set(), [], {"a"},
                     id="missing once: could be between pop and record"),
        pytest.param([("a", RETRY)], set(), set(), set(), {"a"}, ["a"], set(),
                     id="missing twice: lost (e.g. Redis lost the message)"),
        pytest.param([("a", Q), ("b", Q)], {"b"}, set(), set(), {"a", "b"}, ["a"], set(),
                     id="only the one still missing"),
    ],
)
def test_lost_messages(
    in_flight: list[tuple[str, str]], in_broker: set[str], held_live: set[str],
    held_dead: set[str], missing_before: set[str], resend: list[str], missing: set[str],
) -> None:
    assert lost_messages(in_flight, in_broker=in_broker, held_live=held_live,
                         held_dead=held_dead, missing_before=missing_before) == (resend, missing)
