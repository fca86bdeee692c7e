"""The exit-status decisions of every command, as a table; and the README shows the table."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.cli import exitcodes
from worker.cli.exitcodes import Exit


@pytest.mark.parametrize(
    ("states", "code"),
    [
        (["revoked"], Exit.OK),
        (["revoked", "already_revoked", "occupant_mismatch", "no_active_seat"], Exit.OK),
        (["revoked", "failed"], Exit.FAILED),
        (["needs_review"], Exit.FAILED),
        (["cancelled", "revoked"], Exit.FAILED),
        (["failed", "retrying"], Exit.TIMEOUT),  # not done yet: the wait gave up
        (["scheduled"], Exit.TIMEOUT),
        ([], Exit.OK),
    ],
)
def test_for_states(states: list[str], code: Exit) -> None:
    assert exitcodes.for_states(states) is code


@pytest.mark.parametrize(
    ("counts", "code"),
    [
        ({"revoked": 3}, Exit.OK),
        ({"revoked": 3, "failed": 0}, Exit.OK),  # zero counts do not count
        ({"revoked": 3, "failed": 1}, Exit.FAILED),
        ({"revoked": 3, "needs_review": 2}, Exit.FAILED),
        ({"revoked": 1, "queued": 2}, Exit.TIMEOUT),
    ],
)
def test_for_counts(counts: dict[str, int], code: Exit) -> None:
    assert exitcodes.for_counts(counts) is code


@pytest.mark.parametrize(
    ("state", "code"),
    [("revoked", Exit.OK), ("no_active_seat", Exit.OK), ("queued", Exit.OK),
     ("retrying", Exit.OK), ("failed", Exit.FAILED), ("needs_review", Exit.FAILED),
     ("cancelled", Exit.FAILED)],
)
def test_for_status(state: str, code: Exit) -> None:
    assert exitcodes.for_status(state) is code


@pytest.mark.parametrize(
    ("counts", "code"),
    [({"revoked": 2, "queued": 1}, Exit.OK), ({"failed": 1, "queued": 5}, Exit.FAILED),
     ({"revoked": 1}, Exit.OK), ({"cancelled": 1}, Exit.FAILED)],
)
def test_for_batch_status(counts: dict[str, int], code: Exit) -> None:
    assert exitcodes.for_batch_status(counts) is code


def test_codes_are_distinct_and_every_one_is_in_the_table() -> None:
    codes = [code for code, _, _ in exitcodes.EXIT_TABLE]
    assert sorted(codes) == sorted(set(codes)) == sorted(int(e) for e in Exit)
    assert Exit.TIMEOUT != Exit.NO_WORKER != Exit.PAUSED


def test_readme_shows_the_same_table() -> None:
    readme = (Path(__file__).parents[3] / "README.md").read_text(encoding="utf-8")
    assert exitcodes.markdown_table() in readme
