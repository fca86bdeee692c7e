"""Read-only commands: what happened and what is waiting (``status``, ``requests``,
``batches``, ``scheduled``, ``failed``, ``report``). They never change the store: they open
it with ``Store.open_read_only`` (no migration; a schema missing or behind is a one-line
error saying a worker or the API creates or upgrades it)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from config.settings import Settings
from worker.cli.common import (
    EXIT_FAILED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_PAUSED,
    emit_json,
    emit_json_lines,
    fail,
    find_batch,
    load_settings,
    print_requests,
    read_pauses,
    show,
    utc,
)
from worker.cli.display import print_batch
from worker.decisions.outcomes import ATTENTION_STATES, State
from worker.store.lookup import Ambiguous, NotFound
from worker.store.records import Store


@click.command()
@click.argument("request_id", metavar="[ID]", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def status(request_id: str | None, as_json: bool) -> None:
    """Show one request (by id, id prefix or idempotency key) or a batch's progress;
    without an ID, the queue's health: each pause in force, or "no pause", and each open
    circuit breaker.

    Exit status: 0; 1 for a request that is failed, needs_review or cancelled, or a batch
    with such a row; 5 (no ID) while the queue is paused or a breaker is open; 6 for an
    unknown id.
    """
    from worker.cli import exitcodes
    from worker.store.batches import batch_progress
    from worker.store.lookup import resolve_any

    settings = load_settings()
    if request_id is None:
        sys.exit(queue_health(settings, as_json))
    store = Store.open_read_only(settings.database_url)
    try:
        found = resolve_any(store, request_id)
    except Ambiguous as exc:
        fail(str(exc))
    except NotFound as exc:
        fail(str(exc), EXIT_NOT_FOUND)
    if found.kind == "request":
        record = store.get(found.id)
        assert record is not None
        show(record, as_json, history=store.history(record.id))
        sys.exit(int(exitcodes.for_status(record.state)))
    progress = batch_progress(store, found.id)
    assert progress is not None
    print_batch(progress, as_json)
    sys.exit(int(exitcodes.for_batch_status(progress.counts)))


def queue_health(settings: Settings, as_json: bool) -> int:
    """Print each pause in force (or "no pause") and what needs attention; the exit code."""
    from dataclasses import asdict

    from worker.cli.brake import breaker_lines, read_open_breakers
    from worker.cli.display import print_pauses

    pauses = read_pauses(settings)
    open_breakers = read_open_breakers(settings)
    counts: dict[str, int] | None
    held: dict[str, int] | None = None
    try:
        store = Store.open_read_only(settings.database_url)
        counts = store.count_by_state()
        if open_breakers:
            held = {}
            for record in store.held():
                held[str(record.held_scope)] = held.get(str(record.held_scope), 0) + 1
    except Exception:  # the pause is what this answers; counts are a courtesy
        counts = None
    attention = None if counts is None else {s.value: counts.get(s.value, 0)
                                             for s in sorted(ATTENTION_STATES)}
    if as_json:
        emit_json({
            "paused": bool(pauses),
            "pauses": [{**asdict(p), "message": p.message} for p in pauses],
            "needs_attention": attention,
            "breaker": {"enabled": settings.breaker_enabled,
                        "open": [{**asdict(b), "held": (held or {}).get(b.scope, 0)}
                                 for b in open_breakers]},
        })
    else:
        print_pauses(pauses)
        for line in breaker_lines(settings, open_breakers, held):
            click.echo(line)
        if attention and any(attention.values()):
            listed = ", ".join(f"{n} {state}" for state, n in attention.items() if n)
            click.echo(f"needing attention: {listed} (seat-revoker failed)")
    return EXIT_PAUSED if pauses or open_breakers else EXIT_OK


STATE_CHOICES = sorted([s.value for s in State] + ["in_flight", "terminal", "success",
                                                   "attention"])


@click.command()
@click.option("--seat", "seat", help="Seat id or its start (also the stale seat asked for).")
@click.option("--email", help="Part of the email, case-insensitive (@acme.com: a domain).")
@click.option("--state", "states", multiple=True, type=click.Choice(STATE_CHOICES),
              help="Repeatable; also in_flight, terminal, success, attention.")
@click.option("--batch", "batch_id", help="Rows of this batch (id or id prefix).")
@click.option("--source", type=click.Choice(["cli", "batch", "webhook", "rest", "scim"]),
              help="Where the request came from.")
@click.option("--search", "-q", "text",
              help="Id or seat-id prefix, part of an email, external id or key.")
@click.option("--since", type=click.DateTime(), help="Created at or after (UTC).")
@click.option("--until", type=click.DateTime(), help="Created before (UTC).")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON Lines.")
def requests(seat: str | None, email: str | None, states: tuple[str, ...],
             batch_id: str | None, source: str | None, text: str | None, since: Any,
             until: Any, limit: int, as_json: bool) -> None:
    """Find requests, newest first: by seat, email, state, batch, source or time."""
    from worker.store.queries import RequestFilter, list_requests

    store = Store.open_read_only(load_settings().database_url)
    where = RequestFilter(
        states=states, batch_id=find_batch(store, batch_id) if batch_id else None,
        seat_prefix=seat, email_contains=email, text=text, source=source,
        created_from=utc(since), created_to=utc(until),
    )
    page = list_requests(store, where, limit=min(limit, 500))
    items = list(page.items)
    while len(items) < limit and page.next_cursor:
        page = list_requests(store, where, limit=min(limit - len(items), 500),
                             cursor=page.next_cursor)
        items += page.items
    if as_json:
        emit_json_lines(record.to_dict() for record in items)
        return
    from worker.cli.display import print_request_table

    print_request_table(items, title=f"requests (of {page.total} matching)",
                        columns=("last_http_status", "detail"))


@click.command()
@click.option("--limit", type=click.IntRange(1, 500), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON Lines.")
def batches(limit: int, as_json: bool) -> None:
    """List batches, newest first, with their progress."""
    from worker.cli.display import print_batch_table
    from worker.store.batches import list_batches

    store = Store.open_read_only(load_settings().database_url)
    summaries, total = list_batches(store, limit=limit)
    if as_json:
        emit_json_lines(summary.listing() for summary in summaries)
        return
    print_batch_table(summaries, total)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print as JSON Lines.")
def scheduled(as_json: bool) -> None:
    """List scheduled requests (waiting for their effective time)."""
    store = Store.open_read_only(load_settings().database_url)
    print_requests(store.find(states=[State.SCHEDULED], limit=10_000), as_json,
                   title="scheduled", columns=("effective_at",))


@click.command()
@click.option("--since", type=click.DateTime(), help="Only those ended since (UTC).")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON Lines.")
def failed(since: Any, as_json: bool) -> None:
    """List requests an operator must act on: failed (with Polar's error and HTTP status)
    and needs_review (nothing deleted; what to check is in the detail)."""
    store = Store.open_read_only(load_settings().database_url)
    records = store.find(states=ATTENTION_STATES, updated_since=utc(since), limit=10_000)
    print_requests(records, as_json, title="failed or needs review",
                   columns=("last_http_status", "detail"))


@click.command()
@click.argument("batch_id", required=False)
@click.option("--person", help="A person request id, a SCIM user id, an email or an "
                               "external id: every person request for it, with its seats.")
@click.option("--format", "fmt", type=click.Choice(["csv", "json"]), default="csv",
              show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="Write to a file instead of standard output.")
def report(batch_id: str | None, person: str | None, fmt: str, output: Path | None) -> None:
    """One row per batch line: outcome, seat snapshot fields, attempts and error. With
    --person: one row per seat the person was found holding — when it was revoked, by
    which request, on whose instruction, and the verification reads.

    CSV cells a spreadsheet would run as a formula (``=…``, ``+…``, ``-…``, ``@…``) are
    prefixed with ``'``, as in the API's report."""
    from worker.store.batches import report_csv, report_rows

    if (batch_id is None) == (person is None):
        fail("give a batch id or --person")
    store = Store.open_read_only(load_settings().database_url)
    if person is not None:
        text, count = person_report_text(store, person, fmt)
        if output:
            output.write_text(text, encoding="utf-8")
            click.echo(f"{count} rows written to {output}", err=True)
        else:
            click.echo(text, nl=False)
        return
    assert batch_id is not None
    batch_id = find_batch(store, batch_id)
    rows = report_rows(store, batch_id)
    text = json.dumps(rows) + "\n" if fmt == "json" else "".join(report_csv(rows))
    if output:
        output.write_text(text, encoding="utf-8")
        click.echo(f"{len(rows)} rows written to {output}", err=True)
    else:
        click.echo(text, nl=False)


def person_report_text(store: Store, person: str, fmt: str) -> tuple[str, int]:
    """The person report of a request id, a SCIM user id, an email or an external id."""
    from worker.store import personreport
    from worker.store.scim import scim_user

    record = store.get(person)
    user = scim_user(store, person) if record is None else None
    if record is not None and record.kind == "person":
        parents = [record]
    elif user is not None:  # a SCIM user: every offboarding its deactivations made
        parents = store.person_requests(key_prefix=f"scim:{user.tenant_id}:{user.id}:")
    elif "@" in person:
        parents = store.person_requests(email=person)
    else:
        parents = store.person_requests(external_id=person)
    if not parents:
        fail(f"no person request for {person!r}", EXIT_FAILED)
    reports = [personreport.person_report(store, parent) for parent in parents]
    if fmt == "json":
        return json.dumps(reports, indent=2) + "\n", len(reports)
    rows = personreport.report_rows(reports)
    return "".join(personreport.report_csv(rows)), len(rows)
