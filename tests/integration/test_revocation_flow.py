"""End to end: producer → Redis → worker process → sandbox over HTTP → record store.

Runs once per database backend (see the ``stack`` fixture). Each test seeds its own seats,
so tests share the module's worker without seeing each other's data.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

import pytest

from worker.intake.producer import RevocationInput
from worker.sandbox.localstack import LocalStack

pytestmark = pytest.mark.integration


def seed(stack: LocalStack, status: str = "claimed", **person: Any) -> tuple[str, str, str]:
    """One seat in a fresh subscription; returns (seat_id, subscription_id, email)."""
    subscription_id = str(uuid.uuid4())
    email = person.pop("email", f"{uuid.uuid4().hex[:8]}@acme.test")
    seat = stack.control.create_seats(
        [{"subscription_id": subscription_id, "status": status, "email": email, **person}]
    )[0]
    return seat["id"], subscription_id, email


def run(stack: LocalStack, timeout: float = 30.0, **fields: Any) -> Any:
    result = stack.producer.submit(RevocationInput(**fields))
    return stack.wait_terminal([result.record.id], timeout=timeout)[0]


def deletes(stack: LocalStack, seat_id: str) -> int:
    return int(stack.control.stats()["deletes_by_seat"].get(seat_id, 0))


def revocations(stack: LocalStack, seat_id: str) -> int:
    return int(stack.control.stats()["revocations_by_seat"].get(seat_id, 0))


def test_seat_id_only_is_revoked_with_one_delete(sandbox_reset: LocalStack) -> None:
    stack = sandbox_reset
    seat_id, _, _ = seed(stack)
    record = run(stack, seat_id=seat_id, guard=False, reason="left the company")
    assert record.state == "revoked"
    assert record.seat_snapshot["status"] == "revoked"
    assert record.attempts == 1 and record.finished_at is not None
    assert deletes(stack, seat_id) == 1
    assert stack.control.seat(seat_id)["status"] == "revoked"
    states = [event.state for event in stack.store.history(record.id)]
    assert states == ["queued", "running", "revoked"]


def test_guarded_revoke_reads_the_occupant_then_deletes(sandbox_reset: LocalStack) -> None:
    stack = sandbox_reset
    seat_id, subscription_id, email = seed(stack, external_id="E-1042")
    record = run(stack, seat_id=seat_id, subscription_id=subscription_id,
                 email=email.upper(), external_id="E-1042")
    assert record.state == "revoked"
    assert record.occupant_seen["email"] == email
    assert record.occupant_seen["external_id"] == "E-1042"
    assert stack.control.stats()["by_route"] == {
        "GET /v1/customer-seats": 1, "DELETE /v1/customer-seats": 1,
    }


def test_already_revoked_seat_with_context_gets_no_delete(sandbox_reset: LocalStack) -> None:
    stack = sandbox_reset
    seat_id, subscription_id, email = seed(stack, status="revoked")
    record = run(stack, seat_id=seat_id, subscription_id=subscription_id, email=email)
    assert record.state == "already_revoked"
    assert deletes(stack, seat_id) == 0


def test_already_revoked_seat_without_context_is_told_by_revoked_at(
    sandbox_reset: LocalStack,
) -> None:
    stack = sandbox_reset
    seat_id, _, _ = seed(stack, status="revoked", revoked_at="2026-01-01T00:00:00Z")
    record = run(stack, seat_id=seat_id, guard=False)
    assert record.state == "already_revoked"
    assert record.seat_snapshot["revoked_at"].startswith("2026-01-01")
    assert revocations(stack, seat_id) == 0


def test_reassigned_seat_is_never_revoked(sandbox_reset: LocalStack) -> None:
    stack = sandbox_reset
    seat_id, subscription_id, old_email = seed(stack)
    stack.control._call("DELETE", f"/v1/customer-seats/{seat_id}",
                        headers={"Authorization": "Bearer polar_oat_sandbox_local"})
    new = stack.control.assign("new.hire@acme.test", subscription_id=subscription_id)
    assert new["id"] == seat_id  # Polar reuses the row: same id, new person
    before = deletes(stack, seat_id)

    record = run(stack, seat_id=seat_id, subscription_id=subscription_id, email=old_email)

    assert record.state == "occupant_mismatch"
    assert record.occupant_seen["email"] == "new.hire@acme.test"
    assert deletes(stack, seat_id) == before
    assert stack.control.seat(seat_id)["status"] == "claimed"
    assert '"event": "seat.revoke.occupant_mismatch"' in stack.logs()


def test_seat_revoked_here_then_reassigned_is_not_revoked_on_seat_id_alone(
    sandbox_reset: LocalStack,
) -> None:
    stack = sandbox_reset
    seat_id, subscription_id, _ = seed(stack)
    assert run(stack, seat_id=seat_id, guard=False, key=f"first-{seat_id}").state == "revoked"
    stack.control.assign("successor@acme.test", subscription_id=subscription_id)

    replay = run(stack, seat_id=seat_id, key=f"replay-{seat_id}")

    assert replay.state == "occupant_mismatch"
    assert deletes(stack, seat_id) == 1
    assert stack.control.seat(seat_id)["email"] == "successor@acme.test"


@pytest.mark.parametrize(
    ("status", "error"),
    [(403, "NotPermitted"), (404, "ResourceNotFound"), (422, "RequestValidationError")],
)
def test_permanent_errors_fail_without_retry(
    sandbox_reset: LocalStack, status: int, error: str
) -> None:
    """One request's permanent error fails it; the token-wide ones (401, 403
    insufficient_scope/FeatureNotEnabled) pause the queue instead (test_fleet_pause.py)."""
    stack = sandbox_reset
    seat_id, _, _ = seed(stack)
    stack.control.add_fault(method="DELETE", seat_id=seat_id, status=status,
                            body={"error": error, "detail": f"{error} detail"})
    record = run(stack, seat_id=seat_id, guard=False)
    assert record.state == "failed"
    assert record.last_http_status == status
    assert record.error_detail["error"] == error
    assert f"{error} detail" in record.last_error
    assert record.attempts == 1
    assert deletes(stack, seat_id) == 1


def test_unknown_seat_fails_with_polars_404(sandbox_reset: LocalStack) -> None:
    record = run(sandbox_reset, seat_id=str(uuid.uuid4()), guard=False)
    assert record.state == "failed"
    assert record.last_http_status == 404
    assert record.error_detail["detail"] == "Seat not found"


def test_short_429_is_waited_out_in_process(sandbox_reset: LocalStack) -> None:
    stack = sandbox_reset
    seat_id, _, _ = seed(stack)
    stack.control.add_fault(method="DELETE", seat_id=seat_id, status=429, retry_after=1,
                            times=1)
    started = time.monotonic()
    record = run(stack, seat_id=seat_id, guard=False)
    assert record.state == "revoked"
    assert record.attempts == 1  # same task run: tenacity waited
    assert time.monotonic() - started >= 1.0
    assert deletes(stack, seat_id) == 2
    assert stack.control.stats()["rate_limited"] == 1


def test_long_429_goes_back_to_celery_and_succeeds(sandbox_reset: LocalStack) -> None:
    stack = sandbox_reset
    seat_id, _, _ = seed(stack)
    stack.control.add_fault(method="DELETE", seat_id=seat_id, status=429, retry_after=3,
                            times=1)
    started = time.monotonic()
    record = run(stack, seat_id=seat_id, guard=False)
    assert record.state == "revoked"
    assert record.attempts == 2  # a second task run after the countdown
    assert time.monotonic() - started >= 3.0
    assert "retrying" in [e.state for e in stack.store.history(record.id)]


def test_server_errors_are_retried_then_succeed(sandbox_reset: LocalStack) -> None:
    stack = sandbox_reset
    seat_id, _, _ = seed(stack)
    stack.control.add_fault(method="DELETE", seat_id=seat_id, status=503, times=2)
    record = run(stack, seat_id=seat_id, guard=False)
    assert record.state == "revoked"
    assert deletes(stack, seat_id) == 3
    assert revocations(stack, seat_id) == 1


def test_timeout_after_the_change_was_applied_counts_as_revoked_once(
    sandbox_reset: LocalStack,
) -> None:
    stack = sandbox_reset
    seat_id, _, _ = seed(stack)
    stack.control.add_fault(method="DELETE", seat_id=seat_id, hang_s=3,
                            apply_then_hang=True, times=1)
    record = run(stack, seat_id=seat_id, guard=False)
    assert record.state == "revoked"  # the retry's answer shows our own revoked_at
    assert revocations(stack, seat_id) == 1


def test_guarded_timeout_rereads_before_deleting_again(sandbox_reset: LocalStack) -> None:
    stack = sandbox_reset
    seat_id, subscription_id, email = seed(stack)
    stack.control.add_fault(method="DELETE", seat_id=seat_id, hang_s=3,
                            apply_then_hang=True, times=1)
    record = run(stack, seat_id=seat_id, subscription_id=subscription_id, email=email)
    assert record.state == "revoked"
    assert deletes(stack, seat_id) == 1  # the re-read showed our own revocation


def test_duplicate_enqueues_send_one_delete(sandbox_reset: LocalStack) -> None:
    stack = sandbox_reset
    seat_id, subscription_id, email = seed(stack)
    request = RevocationInput(seat_id=seat_id, subscription_id=subscription_id, email=email)
    results: list[Any] = []

    def submit() -> None:
        results.append(stack.producer.submit(request))

    threads = [threading.Thread(target=submit) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    again = stack.producer.submit(request)

    ids = {r.record.id for r in [*results, again]}
    assert len(ids) == 1
    assert sum(r.created for r in results) == 1 and not again.created
    assert stack.wait_terminal(ids)[0].state == "revoked"
    time.sleep(0.5)  # give a stray duplicate task time to show up
    assert deletes(stack, seat_id) == 1


def test_terminal_request_redelivered_does_nothing(sandbox_reset: LocalStack) -> None:
    stack = sandbox_reset
    seat_id, _, _ = seed(stack)
    record = run(stack, seat_id=seat_id, guard=False)
    stack.producer.send([record.id])  # a redelivery of the same task
    time.sleep(1.0)
    again = stack.store.get(record.id)
    assert again is not None and again.attempts == 1 and again.state == "revoked"
    assert deletes(stack, seat_id) == 1


def test_portal_mode_revokes_with_a_customer_session(sandbox_reset: LocalStack) -> None:
    stack = sandbox_reset
    owner = str(uuid.uuid4())
    subscription_id = str(uuid.uuid4())
    seat = stack.control.create_seats(
        [{"subscription_id": subscription_id, "status": "claimed", "email": "p@acme.test"}],
        owner_customer_id=owner,
    )[0]
    token = stack.control.customer_session(owner)
    from pydantic import SecretStr

    result = stack.producer.submit(
        RevocationInput(seat_id=seat["id"], subscription_id=subscription_id,
                        email="p@acme.test", mode="customer_portal"),
        portal_token=SecretStr(token),
    )
    record = stack.wait_terminal([result.record.id])[0]
    assert record.state == "revoked"
    assert record.portal_token_ref and token not in str(record.to_dict())
    assert stack.control.stats()["by_route"] == {
        "GET /v1/customer-portal/seats": 1, "DELETE /v1/customer-portal/seats": 1,
    }
