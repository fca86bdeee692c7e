"""Commands that ask for revocations: ``revoke`` (one seat), ``batch`` (a file),
``offboard`` (every seat of a person)."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from worker.cli.common import (
    EXIT_FAILED,
    EXIT_NO_WORKER,
    EXIT_OK,
    EXIT_TIMEOUT,
    MAX_NAME,
    MAX_SOURCE,
    emit_json,
    fail,
    fail_held,
    held_at_breaker,
    load_settings,
    read_secret_file,
    refusal_text,
    show,
    still_why,
    utc,
    validation_text,
    wait_for,
)
from worker.cli.display import print_batch
from worker.cli.exitcodes import Exit
from worker.decisions.outcomes import State
from worker.jobs.liveness import DEFAULT_GRACE, NoWorker, WorkerWatch
from worker.store.records import Store


@click.command()
@click.argument("seat_id")
@click.option("--subscription-id", help="Subscription the seat belongs to (enables the guard).")
@click.option("--order-id", help="Order the seat belongs to (enables the guard).")
@click.option("--email", help="Email of the person being offboarded.")
@click.option("--member-id", help="Polar member id of the person.")
@click.option("--customer-id", help="Polar customer id of the person.")
@click.option("--external-id", help="The member's external id (your HR id).")
@click.option("--portal-token-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Customer session token file: revoke through the customer portal.")
@click.option("--unguarded", is_flag=True,
              help="Revoke SEAT_ID without checking who holds it (when its subscription/"
                   "order is unknown). The seat may have been reassigned: prefer giving "
                   "--subscription-id/--order-id and the person.")
@click.option("--key", help="Idempotency key (default: derived from seat and person).")
@click.option("--effective-at", type=click.DateTime(["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S",
                                                      "%Y-%m-%d %H:%M:%S", "%Y-%m-%d"]),
              help="Revoke at this time (UTC unless an offset is given), e.g. the last day.")
@click.option("--reason", help="Why, kept with the record.")
@click.option("--priority", type=click.Choice(["urgent", "bulk"]), default="urgent",
              show_default=True,
              help="Lane: urgent overtakes bulk work (batches) in the queue and the rate "
                   "limiter.")
@click.option("--wait", is_flag=True, help="Block until the request has its outcome.")
@click.option("--timeout", type=float, default=600.0, show_default=True,
              help="Seconds --wait waits before giving up (exit 3).")
@click.option("--worker-grace", type=float, default=DEFAULT_GRACE, show_default=True,
              help="--wait: seconds without any live worker before giving up (exit 4).")
@click.option("--json", "as_json", is_flag=True, help="Print the record as one JSON document.")
def revoke(seat_id: str, portal_token_file: Path | None, unguarded: bool, wait: bool,
           timeout: float, worker_grace: float, as_json: bool,
           effective_at: datetime | None, **fields: Any) -> None:
    """Revoke one seat: enqueue it and print the request id.

    With --wait, exits 0 for revoked, already_revoked, occupant_mismatch and
    no_active_seat, 1 for failed, needs_review or cancelled, 3 on timeout, 4 when no
    worker consumes the queue.
    """
    from worker.intake.producer import Producer, RevocationInput

    settings = load_settings()
    portal_token = read_secret_file(portal_token_file) if portal_token_file else None
    if unguarded:
        fields["guard"] = False
    try:
        request = RevocationInput(
            seat_id=seat_id,
            mode="customer_portal" if portal_token else "organization",
            requested_by="cli",
            effective_at=utc(effective_at),
            **fields,
        )
    except ValidationError as exc:
        fail(validation_text(exc))
    from worker.intake.conflicts import identity_differences, key_conflicts

    producer = Producer(settings)
    try:
        conflicts = key_conflicts(producer.store, [request])
        if conflicts:
            fail(conflicts[0].describe() + "; nothing was enqueued")
        result = producer.submit(request, portal_token=portal_token)
    except ValueError as exc:  # refused by the producer (e.g. an unguarded seat id)
        fail(refusal_text(exc))
    finally:
        producer.close()
    record = result.record
    if not result.created and identity_differences(request, record):  # a concurrent producer
        fail(f"idempotency key {record.idempotency_key!r} was just taken by request "
             f"{record.id} about something else; nothing was enqueued")
    if result.resent:
        click.echo(f"duplicate of request {record.id} (key {record.idempotency_key}), "
                   "which had not been sent yet: sent now", err=True)
    elif not result.created:
        click.echo(f"duplicate of request {record.id} (key {record.idempotency_key}): "
                   "nothing new enqueued", err=True)
    if not wait:
        if as_json:
            emit_json(record.to_dict())
        else:
            click.echo(record.id)
        return
    store = Store.from_url(settings.database_url)
    try:
        final = wait_for(store, record.id, timeout, WorkerWatch.of(settings, worker_grace))
    except NoWorker as exc:
        current = store.get(record.id)
        fail(f"{exc}. Request {record.id} is {current.state if current else 'unknown'}",
             EXIT_NO_WORKER)
    show(final, as_json)
    if held_at_breaker(store, final):
        fail_held(final)
    if not State(final.state).is_terminal:
        fail(f"timed out after {timeout:g}s: request {final.id} is still {final.state}"
             f"{still_why(final)}; it goes on without you: seat-revoker status {final.id[:8]}",
             EXIT_TIMEOUT)
    sys.exit(EXIT_OK if State(final.state).is_success else EXIT_FAILED)


@click.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl", "json"]), default=None,
              help="File format (default: from the extension, else sniffed).")
@click.option("--name", help="A name for the batch, shown in status and reports.")
@click.option("--dry-run", is_flag=True, help="Validate and check against Polar; change nothing.")
@click.option("--wait", is_flag=True, help="Show progress until every row has its outcome.")
@click.option("--timeout", type=float, default=3600.0, show_default=True,
              help="Seconds --wait waits before giving up (exit 3).")
@click.option("--worker-grace", type=float, default=DEFAULT_GRACE, show_default=True,
              help="--wait: seconds without any live worker before giving up (exit 4).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON summary at the end.")
def batch(file: Path, fmt: str | None, name: str | None, dry_run: bool, wait: bool,
          timeout: float, worker_grace: float, as_json: bool) -> None:
    """Offboard everyone in a CSV or JSON Lines FILE (validated whole before anything runs).

    Columns: seat_id, subscription_id, order_id, email, member_id, customer_id,
    external_id, reason, key, effective_at, guard, priority. A row needs a seat_id, or a
    subscription_id/order_id plus one field naming the person; guard=false revokes a bare
    seat id without the occupant check; priority is bulk unless a row says urgent.

    With --wait, exits 1 when any row ended failed, needs_review or cancelled, 3 on
    timeout, 4 when no worker consumes the queue, else 0.
    """
    from worker.cli import exitcodes
    from worker.cli.progress import follow
    from worker.intake.batchfile import MAX_REPORTED_ERRORS, BatchFileError, clip, parse_batch
    from worker.intake.conflicts import key_conflicts
    from worker.intake.producer import Producer
    from worker.store.batches import BatchSummary, batch_progress

    settings = load_settings()
    if name is not None and len(name) > MAX_NAME:
        fail(f"--name: at most {MAX_NAME} characters (this one has {len(name)})")
    try:
        parsed = parse_batch(file.read_bytes(), fmt=fmt, filename=file.name,  # type: ignore[arg-type]
                             requested_by="cli")
    except BatchFileError as exc:
        fail(f"{file}: {exc}\nnothing was enqueued")
    conflicts = key_conflicts(Store.from_url(settings.database_url), parsed.requests)
    if conflicts:
        shown = "\n".join(f"  line {parsed.rows[c.index].line}: {clip(c.describe())}"
                          for c in conflicts[:MAX_REPORTED_ERRORS])
        more = len(conflicts) - MAX_REPORTED_ERRORS
        fail(f"{file}: {len(conflicts)} row(s) reuse the idempotency key of a different "
             f"request:\n{shown}" + (f"\n  … and {more} more" if more > 0 else "")
             + "\nnothing was enqueued")
    if dry_run:
        from worker.intake.dryrun import dry_run as run_dry

        sys.exit(run_dry(settings, parsed, as_json=as_json))
    producer = Producer(settings)
    try:
        result = producer.submit_batch(
            parsed.requests, name=name or clip(file.name, MAX_NAME),
            source=clip(str(file), MAX_SOURCE), requested_by="cli",
            lines=[row.line for row in parsed.rows],
        )
    except ValueError as exc:  # refused by the producer (e.g. an unguarded seat id)
        fail(f"{file}: {refusal_text(exc)}\nnothing was enqueued")
    finally:
        producer.close()
    click.echo(f"batch {result.batch_id}: {result.total} rows, {result.created} enqueued, "
               f"{result.duplicates + parsed.duplicates} duplicates collapsed", err=True)
    store = Store.from_url(settings.database_url)

    watch = WorkerWatch.of(settings, worker_grace)

    def read() -> BatchSummary:
        progress = batch_progress(store, result.batch_id)
        assert progress is not None
        if wait and not progress.done:
            watch.check()
        return progress

    try:
        final = follow(read, timeout=timeout) if wait else read()
    except NoWorker as exc:
        fail(f"{exc}. Batch {result.batch_id} is not done", EXIT_NO_WORKER)
    if as_json:
        emit_json(final.summary())
    elif wait:
        print_batch(final, False)
    else:
        click.echo(result.batch_id)
    if not wait:
        return
    code = exitcodes.for_counts(final.counts)
    if code is Exit.TIMEOUT:
        fail(f"timed out after {timeout:g}s: batch {result.batch_id} has "
             f"{final.finished}/{final.total} finished; it goes on without you: "
             f"seat-revoker status {result.batch_id[:8]}", EXIT_TIMEOUT)
    if code is Exit.FAILED:
        click.echo(f"{final.total - final.succeeded} of {final.total} row(s) did not end in "
                   f"success: seat-revoker requests --batch {result.batch_id[:8]} "
                   "--state attention", err=True)
    sys.exit(int(code))


@click.command()
@click.option("--email", help="Email of the person leaving.")
@click.option("--external-id", help="The person's external id (your HR id).")
@click.option("--member-id", help="The person's Polar member id.")
@click.option("--customer-id", help="Scope: the Polar customer (id) the person belongs to.")
@click.option("--customer-external-id", help="Scope: the Polar customer, by its external id.")
@click.option("--all-customers", is_flag=True,
              help="Scope: every customer of the organization (said explicitly).")
@click.option("--key", help="Idempotency key (default: derived from person and scope).")
@click.option("--effective-at", type=click.DateTime(["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S",
                                                     "%Y-%m-%d"]),
              help="Offboard at this time (UTC unless an offset is given).")
@click.option("--reason", help="Why, kept with the record.")
@click.option("--wait", is_flag=True, help="Block until every seat found has its outcome.")
@click.option("--timeout", type=float, default=600.0, show_default=True,
              help="With --wait: give up waiting after this many seconds.")
@click.option("--json", "as_json", is_flag=True, help="Print the person report as JSON.")
def offboard(wait: bool, timeout: float, as_json: bool, effective_at: datetime | None,
             **fields: Any) -> None:
    """Offboard a person: find every seat they hold in the scope and revoke each.

    Prints the request id. With --wait, prints each seat found and its outcome; exits 0
    for revoked, already_revoked and no_active_seat, 1 for failed or needs_review, 3 on
    timeout.
    """
    from worker.intake.producer import PersonInput, Producer
    from worker.store.personreport import person_report

    settings = load_settings()
    try:
        person = PersonInput(requested_by="cli", effective_at=utc(effective_at), **fields)
    except ValidationError as exc:
        fail(validation_text(exc))
    producer = Producer(settings)
    try:
        result = producer.offboard(person)
    finally:
        producer.close()
    record = result.record
    if record.kind != "person":
        fail(f"idempotency key {record.idempotency_key!r} belongs to request {record.id}, "
             "which is not a person request; nothing was enqueued")
    if not result.created:
        click.echo(f"duplicate of request {record.id} (key {record.idempotency_key}): "
                   "nothing new enqueued", err=True)
    store = Store.from_url(settings.database_url)
    if not wait:
        click.echo(json.dumps(record.to_dict()) if as_json else record.id)
        return
    final = wait_for(store, record.id, timeout)
    rep = person_report(store, final)
    if as_json:
        click.echo(json.dumps(rep, indent=2))
    else:
        click.echo(f"{final.id}  {rep['person']}  in {rep['scope']}: {final.state}")
        for seat in rep["seats"]:
            where = seat["subscription_id"] or seat["order_id"]
            click.echo(f"  seat {seat['seat_id']} ({where}): {seat['state']}")
        if final.outcome_detail:
            click.echo(f"  {final.outcome_detail}")
    if held_at_breaker(store, final):
        fail_held(final)
    if not State(final.state).is_terminal:
        sys.exit(EXIT_TIMEOUT)
    sys.exit(EXIT_OK if State(final.state).is_success else EXIT_FAILED)
