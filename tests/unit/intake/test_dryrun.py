"""``forecast``: what a batch row would do, decided by the same rules as the worker."""

from __future__ import annotations

import pytest

from tests.unit.decisions.test_occupant import ADA, BILLING, BOB, SEAT_A, SUB, legacy
from worker.decisions.identity import IdentityContext
from worker.intake.dryrun import forecast
from worker.intake.requests import RevocationInput
from worker.polar.seats import CustomerSeat


@pytest.mark.parametrize(
    ("fields", "seats", "context", "verdict"),
    [
        ({"subscription_id": SUB, "email": "ada@acme.test"}, [ADA, BOB], IdentityContext(),
         "would_revoke"),
        ({"subscription_id": SUB, "customer_id": BILLING}, [ADA, BOB], IdentityContext(),
         "needs_review"),
        ({"seat_id": SEAT_A, "subscription_id": SUB, "email": "bob@acme.test"}, [ADA, BOB],
         IdentityContext(), "would_revoke"),
        ({"subscription_id": SUB, "email": "carol@acme.test"}, [ADA, BOB], IdentityContext(),
         "no_active_seat"),
        ({"subscription_id": SUB, "email": "ada@acme.test"}, [legacy(before_march=True)],
         IdentityContext(billing_customer_id=BILLING), "would_revoke"),
    ],
    ids=["by email", "purchaser alone", "stale seat id: the person's other seat",
         "holds none", "legacy address in customer_email"],
)
def test_forecast(fields: dict[str, str], seats: list[CustomerSeat],
                  context: IdentityContext, verdict: str) -> None:
    assert forecast(RevocationInput(**fields), seats, 1, context).verdict == verdict


def test_forecast_names_the_seat_the_person_holds() -> None:
    row = forecast(RevocationInput(seat_id=SEAT_A, subscription_id=SUB, email="bob@acme.test"),
                   [ADA, BOB], 1, IdentityContext())
    assert row.seat_id == BOB.id
