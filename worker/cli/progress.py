"""Follow a batch until it is done: a live bar on a TTY, plain periodic lines otherwise."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from worker.store.batches import BatchSummary


def counts_text(progress: BatchSummary) -> str:
    return " ".join(f"{state}={n}" for state, n in progress.counts.items())


def follow(
    read: Callable[[], BatchSummary],
    *,
    timeout: float,
    interval: float = 0.25,
    line_every: float = 5.0,
    console: Console | None = None,
) -> BatchSummary:
    """Poll ``read`` until the batch is done or ``timeout`` passes; return the last reading."""
    console = console or Console(stderr=True)
    deadline = time.monotonic() + timeout
    started = time.monotonic()
    if console.is_terminal:
        columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[rate]:.1f}/s"), TimeRemainingColumn(),
                   TimeElapsedColumn(), TextColumn("{task.fields[counts]}", markup=False))
        with Progress(*columns, console=console, transient=False) as bar:
            current = read()
            task = bar.add_task("batch", total=current.total, rate=0.0, counts="")
            while True:
                rate = current.finished / max(time.monotonic() - started, 1e-6)
                bar.update(task, completed=current.finished, rate=rate,
                           counts=counts_text(current))
                if current.done or time.monotonic() > deadline:
                    return current
                time.sleep(interval)
                current = read()
    last_line = 0.0
    while True:
        current = read()
        now = time.monotonic()
        if now - last_line >= line_every or current.done:
            rate = current.finished / max(now - started, 1e-6)
            remaining = (current.total - current.finished) / rate if rate > 0 else float("inf")
            eta = f"{remaining:.0f}s" if remaining != float("inf") else "?"
            print(f"batch {current.batch_id[:8]}: {current.finished}/{current.total} done, "
                  f"{rate:.1f}/s, eta {eta}, {counts_text(current)}", file=sys.stderr,
                  flush=True)
            last_line = now
        if current.done or now > deadline:
            return current
        time.sleep(interval)
