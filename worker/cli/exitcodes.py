"""The exit status of every ``seat-revoker`` command: one table, one set of decisions.

Scripts can rely on these numbers; README.md prints the same table (a test compares them).
The decisions are pure: given the states a command ended with, which code it exits with.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import IntEnum

from worker.decisions.outcomes import State


class Exit(IntEnum):
    OK = 0  # done; every request named ended as a success (or is still in flight for status)
    FAILED = 1  # a request (or batch row) ended failed, needs_review or cancelled; or the
    # action was not done (refused in this state; Redis or the store refused it)
    USAGE = 2  # bad arguments or configuration, an ambiguous id prefix
    TIMEOUT = 3  # --wait gave up before every request had its outcome
    NO_WORKER = 4  # --wait: no live worker node is consuming the queue
    PAUSED = 5  # `status` without an id: the queue is paused or a circuit breaker is open;
    # `--wait`: the request waits for an operator at the circuit breaker
    NOT_FOUND = 6  # no request or batch with that id, prefix or key


# (code, name, meaning) as README.md shows it.
EXIT_TABLE: tuple[tuple[int, str, str], ...] = (
    (Exit.OK, "ok", "done: every request named ended revoked, already_revoked, "
     "occupant_mismatch or no_active_seat (`status ID`: also still in flight)"),
    (Exit.FAILED, "failed", "a request or batch row ended failed, needs_review or "
     "cancelled; or the action was not done (retry/cancel of a request in another state, "
     "Redis or the store refusing it)"),
    (Exit.USAGE, "usage", "bad arguments or configuration; an ambiguous id prefix"),
    (Exit.TIMEOUT, "timeout", "`--wait` gave up (`--timeout`) before every outcome was in"),
    (Exit.NO_WORKER, "no worker", "`--wait`: no live worker node consumes the queue"),
    (Exit.PAUSED, "paused", "`status` without an id: the queue is paused or a circuit "
     "breaker is open; `--wait`: the request is held at the circuit breaker"),
    (Exit.NOT_FOUND, "not found", "no request or batch with that id, id prefix or key"),
)


def for_states(states: Iterable[str]) -> Exit:
    """The code for requests that all ended (or are being waited for): any unfinished one
    means TIMEOUT, any unsuccessful outcome FAILED, else OK."""
    seen = [State(s) for s in states]
    if any(not s.is_terminal for s in seen):
        return Exit.TIMEOUT
    if any(not s.is_success for s in seen):
        return Exit.FAILED
    return Exit.OK


def for_counts(counts: Mapping[str, int]) -> Exit:
    """``for_states`` over a batch's ``{state: n}`` counts (zero counts ignored)."""
    return for_states(state for state, n in counts.items() if n)


def for_status(state: str) -> Exit:
    """``status ID`` of one request: FAILED for an unsuccessful outcome, else OK (a request
    still in flight is not an error when nobody waits for it)."""
    current = State(state)
    return Exit.FAILED if current.is_terminal and not current.is_success else Exit.OK


def for_batch_status(counts: Mapping[str, int]) -> Exit:
    """``status BATCH``: FAILED once any row ended unsuccessfully (even while others are
    still in flight), else OK."""
    ended_badly = any(n and State(s).is_terminal and not State(s).is_success
                      for s, n in counts.items())
    return Exit.FAILED if ended_badly else Exit.OK


def markdown_table() -> str:
    """The table as README.md shows it."""
    lines = ["| code | name | meaning |", "|---:|---|---|"]
    lines += [f"| {code} | {name} | {meaning} |" for code, name, meaning in EXIT_TABLE]
    return "\n".join(lines)
