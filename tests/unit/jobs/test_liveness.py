"""WorkerWatch: "no worker" only after a whole grace period without a live node."""

from __future__ import annotations

import pytest

from worker.jobs.liveness import NoWorker, WorkerWatch


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("counts", "raises_at"),
    [
        ([0, 0, 0, 0], 3),  # none for 15 s: gives up at the check past the grace
        ([1, 0, 0, 1, 0], None),  # a node came back in time
        ([None, None, None, None], None),  # Redis silent: not taken as "no worker"
        ([0, 1, 0, 0, 0, 0], 4),  # the grace restarts from the last node seen
    ],
)
def test_no_worker_after_the_grace(counts: list[int | None], raises_at: int | None) -> None:
    clock = Clock()
    readings = iter(counts)
    watch = WorkerWatch(lambda: next(readings), queue="q", grace=15, every=1, clock=clock)
    for index in range(len(counts)):
        clock.now = index * 5.0 + 0.5
        if index == raises_at:
            with pytest.raises(NoWorker, match="seat-revoker worker"):
                watch.check()
            return
        watch.check()
    assert raises_at is None


def test_reads_at_most_every_interval() -> None:
    clock, calls = Clock(), []
    watch = WorkerWatch(lambda: calls.append(1) or 1, queue="q", grace=15, every=1,
                        clock=clock)
    for step in range(10):
        clock.now = step * 0.25
        watch.check()
    assert len(calls) == 3  # at 0, 1.0 and 2.0
