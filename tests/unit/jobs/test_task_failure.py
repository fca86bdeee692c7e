"""A stored outcome an operator must act on is raised to Celery (Flower shows FAILURE)."""

from __future__ import annotations

import pytest

from worker.jobs.tasks import RevocationFailed, raise_if_failed, revoke_seat


@pytest.mark.parametrize(
    ("outcome", "raises"),
    [("revoked", False), ("already_revoked", False), ("occupant_mismatch", False),
     ("no_active_seat", False), ("cancelled", False), ("failed", True),
     ("needs_review", True), ("unknown", True)],
)
def test_raise_if_failed(outcome: str, raises: bool) -> None:
    result = {"request_id": "abcd1234-0000", "seat_id": "s-1", "outcome": outcome}
    if not raises:
        assert raise_if_failed(result) is result
        return
    with pytest.raises(RevocationFailed, match=f"request abcd1234-0000 ended {outcome}"):
        raise_if_failed(result)


def test_the_failure_is_expected_by_the_task() -> None:
    # Expected exceptions are logged by Celery without a traceback and never retried.
    assert RevocationFailed in revoke_seat.throws
