"""``seat-revoker batch --dry-run``: what each row would do, from read-only Polar calls.

Seat lists are read once per subscription/order; nothing is deleted, written or enqueued.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass, replace
from datetime import timedelta

from rich.console import Console
from rich.table import Table
from rich.text import Text

from config.settings import Settings
from worker.connections import polar_client, rate_limiter, redis_client
from worker.decisions.identity import (
    IdentityContext,
    billing_customer_of,
    needs_billing_lookup,
    needs_external_lookup,
)
from worker.decisions.occupant import Verdict, decide
from worker.intake.batchfile import ParsedBatch
from worker.intake.requests import PersonInput, RevocationInput
from worker.polar.client import PolarClient
from worker.polar.errors import PolarError
from worker.polar.seats import CustomerSeat


@dataclass(frozen=True)
class Forecast:
    line: int
    seat_id: str | None
    # would_revoke | already_revoked | occupant_mismatch | no_active_seat | needs_review |
    # invalid
    verdict: str
    note: str


_FORECAST = {
    Verdict.PROCEED: "would_revoke",
    Verdict.REVOKED_BY_US: "already_revoked",
    Verdict.ALREADY_REVOKED: "already_revoked",
    Verdict.MISMATCH: "occupant_mismatch",
    Verdict.NO_ACTIVE_SEAT: "no_active_seat",
    Verdict.REVIEW: "needs_review",
    Verdict.NOT_FOUND: "needs_review",
}


def forecast(
    request: RevocationInput,
    seats: list[CustomerSeat] | None,
    line: int,
    context: IdentityContext | None = None,
) -> Forecast:
    """The outcome a row would have, given its container's seat list (pure)."""
    if seats is None:
        return Forecast(line, request.seat_id, "would_revoke",
                        "seat id only: not checked (no subscription/order to read)")
    decision = decide(seats, request.seat_id, request.occupant, context or IdentityContext(),
                      first_delete_at=None, skew=timedelta(0))
    seat_id = decision.seat.id if decision.seat is not None else request.seat_id
    return Forecast(line, seat_id, _FORECAST[decision.verdict], decision.why)


def _context(
    polar: PolarClient, request: RevocationInput, kind: str, container: str,
    seats: list[CustomerSeat],
) -> IdentityContext:
    """What the seat bodies cannot show, read as the worker would."""
    context = IdentityContext(billing_customer_id=billing_customer_of(seats))
    if needs_billing_lookup(seats, request.occupant):
        context = replace(context, billing_customer_id=polar.billing_customer(
            **{kind: container}))
    if request.external_id and needs_external_lookup(seats, request.occupant, context):
        context = replace(context, external_customer=polar.customer_by_external_id(
            request.external_id))
    return context


def dry_run(settings: Settings, parsed: ParsedBatch, *, as_json: bool) -> int:
    redis = redis_client(settings.redis_url)
    polar = polar_client(settings, throttle=rate_limiter(settings, redis, max_hold=60.0))
    lists: dict[tuple[str, str], list[CustomerSeat] | str] = {}
    forecasts: list[Forecast] = []
    try:
        for row in parsed.rows:
            request = row.request
            if isinstance(request, PersonInput):
                forecasts.append(Forecast(row.line, None, "person", "the person's seats are "
                                          "found in the scope when the row runs"))
                continue
            container = request.subscription_id or request.order_id
            if container is None:
                forecasts.append(forecast(request, None, row.line))
                continue
            kind = "subscription_id" if request.subscription_id else "order_id"
            if (kind, container) not in lists:
                try:
                    lists[kind, container] = (
                        polar.list_seats(subscription_id=container).seats
                        if kind == "subscription_id"
                        else polar.list_seats(order_id=container).seats
                    )
                except PolarError as error:
                    lists[kind, container] = str(error)
            seats = lists[kind, container]
            if isinstance(seats, str):
                forecasts.append(Forecast(row.line, request.seat_id, "invalid", seats))
            else:
                try:
                    context = _context(polar, request, kind, container, seats)
                except PolarError as error:
                    forecasts.append(Forecast(row.line, request.seat_id, "invalid", str(error)))
                    continue
                forecasts.append(forecast(request, seats, row.line, context))
    finally:
        polar.close()
        redis.close()
    counts = Counter(f.verdict for f in forecasts)
    if as_json:
        print(json.dumps({"dry_run": True, "total": len(forecasts), "counts": dict(counts),
                          "rows": [asdict(f) for f in forecasts]}))
        return 0
    table = Table(title=f"dry run: {len(forecasts)} rows, {len(lists)} seat lists read")
    for column in ("line", "seat", "would be", "why"):
        table.add_column(column)
    for f in forecasts:  # Text: a Polar error in the note is never read as Rich markup
        table.add_row(Text(str(f.line)), Text(f.seat_id or ""), Text(f.verdict), Text(f.note))
    console = Console()
    console.print(table)
    console.print(", ".join(f"{k}={v}" for k, v in sorted(counts.items())))
    return 0
