"""``seat-revoker batch --dry-run``: what each row would do, from read-only Polar calls.

Seat lists are read once per subscription/order; nothing is deleted, written or enqueued.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass
from datetime import timedelta

from redis import Redis
from rich.console import Console
from rich.table import Table

from config.settings import Settings
from worker.batchfile import ParsedBatch
from worker.occupant import Verdict, find_seat, find_seat_of, judge_seat
from worker.polar import CustomerSeat, PolarClient, PolarError, build_http_client
from worker.ratelimit import SharedRateLimiter
from worker.requests import RevocationInput


@dataclass(frozen=True)
class Forecast:
    line: int
    seat_id: str | None
    verdict: str  # would_revoke | already_revoked | occupant_mismatch | no_active_seat | invalid
    note: str


def forecast(request: RevocationInput, seats: list[CustomerSeat] | None, line: int) -> Forecast:
    """The outcome a row would have, given its container's seat list (pure)."""
    if seats is None:
        return Forecast(line, request.seat_id, "would_revoke",
                        "seat id only: not checked (no subscription/order to read)")
    if request.seat_id is None:
        seat = find_seat_of(seats, request.occupant)
        if seat is None:
            return Forecast(line, None, "no_active_seat", "the person holds no active seat")
        return Forecast(line, seat.id, "would_revoke", "seat found by occupant")
    verdict, why = judge_seat(find_seat(seats, request.seat_id), request.occupant,
                              first_delete_at=None, skew=timedelta(0))
    names = {Verdict.PROCEED: "would_revoke", Verdict.ALREADY_REVOKED: "already_revoked",
             Verdict.MISMATCH: "occupant_mismatch", Verdict.NOT_FOUND: "invalid"}
    return Forecast(line, request.seat_id, names.get(verdict, "invalid"), why)


def dry_run(settings: Settings, parsed: ParsedBatch, *, as_json: bool) -> int:
    redis = Redis.from_url(settings.redis_url)
    limiter = SharedRateLimiter(redis, settings.redis_key("ratelimit"), settings.rate_limit,
                                max_hold=60.0)
    http = build_http_client(settings.api_base_url,
                             connect_timeout=settings.polar_connect_timeout,
                             read_timeout=settings.polar_read_timeout,
                             api_version=settings.polar_api_version)
    polar = PolarClient(http, settings.access_token, limiter)
    lists: dict[tuple[str, str], list[CustomerSeat] | str] = {}
    forecasts: list[Forecast] = []
    try:
        for row in parsed.rows:
            request = row.request
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
                forecasts.append(forecast(request, seats, row.line))
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
    for f in forecasts:
        table.add_row(str(f.line), f.seat_id or "", f.verdict, f.note)
    console = Console()
    console.print(table)
    console.print(", ".join(f"{k}={v}" for k, v in sorted(counts.items())))
    return 0
