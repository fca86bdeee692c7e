"""The ``seat-revoker`` command."""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import click
from pydantic import SecretStr, ValidationError

from config.settings import ConfigError, Settings
from worker.cli.display import print_batch, print_record
from worker.cli.exitcodes import Exit
from worker.decisions.outcomes import ATTENTION_STATES, State
from worker.jobs.fleetpause import FleetPause, PauseInfo
from worker.jobs.liveness import DEFAULT_GRACE, NoWorker, WorkerWatch
from worker.store.lookup import Ambiguous, NotFound
from worker.store.models import RevocationRequest
from worker.store.records import Store
from worker.telemetry.logs import configure_logging
from worker.version import package_version

# The exit statuses (one table for every command: worker/cli/exitcodes.py, README.md).
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_TIMEOUT = Exit.OK, Exit.FAILED, Exit.USAGE, Exit.TIMEOUT
EXIT_NO_WORKER, EXIT_PAUSED, EXIT_NOT_FOUND = Exit.NO_WORKER, Exit.PAUSED, Exit.NOT_FOUND
# Column sizes of the batch's name and source in the store (worker/store/models.py).
MAX_NAME, MAX_SOURCE = 200, 500


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(int(code))


def emit_json(document: Any) -> None:
    """``--json`` of a command about one thing: one JSON document on one line."""
    click.echo(json.dumps(document, default=str))


def emit_json_lines(documents: Any) -> None:
    """``--json`` of a list: JSON Lines, one document per line (nothing for none)."""
    for document in documents:
        click.echo(json.dumps(document, default=str))


def actor() -> str:
    """Who runs this command, recorded with retries and cancellations."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no name for this uid (containers)
        return "cli"


def find_request(store: Store, text: str) -> RevocationRequest:
    """The request an id, a unique id prefix or an idempotency key names; else exit."""
    from worker.store.lookup import resolve_request

    try:
        return resolve_request(store, text)
    except Ambiguous as exc:
        fail(str(exc))
    except NotFound as exc:
        fail(str(exc), EXIT_NOT_FOUND)


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        fail("invalid configuration: " + validation_text(exc))


def refusal_text(exc: ValueError) -> str:
    """A producer's refusal (``ValueError`` or ``pydantic.ValidationError``) in one line."""
    if isinstance(exc, ValidationError):
        return validation_text(exc)
    return str(exc).removeprefix("Value error, ")


def validation_text(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "input"
        message = str(error["msg"]).removeprefix("Value error, ")
        parts.append(f"{where}: {message}")
    return "; ".join(parts)


class _Main(click.Group):
    """Every command: an unusable store or setting (``ConfigError``, e.g. ``StoreError``,
    ``StoreMismatch``) or Redis refusing messages (``NotSent``) is one line, not a traceback;
    click's own usage errors end with the same ``error:`` line as ours (exit 2)."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        kwargs["standalone_mode"] = False
        try:
            code = super().main(*args, **kwargs)  # an int only from click's own exits
            if isinstance(code, int) and code:
                sys.exit(code)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            if isinstance(exc, click.UsageError) and exc.ctx is not None:
                click.echo(exc.ctx.get_usage(), err=True)
                click.echo(f"Try '{exc.ctx.command_path} -h' for help.", err=True)
            fail(exc.format_message(), exc.exit_code)
        except click.exceptions.Abort:
            fail("aborted", EXIT_FAILED)
        return None

    def invoke(self, ctx: click.Context) -> Any:
        from worker.intake.producer import NotSent

        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            fail(str(exc))
        except NotSent as exc:
            fail(str(exc), EXIT_FAILED)


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]},
             epilog="Exit status (every command): 0 ok, 1 a request failed / needs review / "
             "was cancelled (or the action was not done), 2 usage or configuration, "
             "3 --wait timed out, 4 no worker consuming the queue, 5 queue paused, "
             "6 no such request or batch. See README.md.")
@click.version_option(package_version(), "--version", "-V", prog_name="seat-revoker",
                      message="%(prog)s %(version)s")
@click.option("--verbose", "-v", is_flag=True, help="Log progress events to stderr.")
def main(verbose: bool) -> None:
    """Revoke Polar customer seats when people leave, exactly once, with proof."""
    level = "INFO" if verbose else os.environ.get("CLI_LOG_LEVEL", "WARNING")
    fmt = os.environ.get("LOG_FORMAT", "auto")
    configure_logging(level, fmt if fmt in ("json", "console") else "auto")  # type: ignore[arg-type]


@main.command()
@click.option("--concurrency", "-c", type=click.IntRange(1, 256), default=None,
              help="Worker processes (default: number of CPUs).")
@click.option("--loglevel", default=None, help="Overrides LOG_LEVEL.")
@click.option("--hostname", "-n", default=None, help="Celery node name, e.g. w1@%h.")
@click.option("--no-scheduler", is_flag=True,
              help="Do not run the scheduler/reconciler in this node (for deployments that "
              "run `seat-revoker scheduler` on its own; also WORKER_SCHEDULER=false).")
@click.option("--with-scheduler", is_flag=True, hidden=True,
              help="Accepted for compatibility: the scheduler runs by default.")
def worker(concurrency: int | None, loglevel: str | None, hostname: str | None,
           no_scheduler: bool, with_scheduler: bool) -> None:
    """Start a Celery worker node. Its main process also runs the node heartbeat and the
    scheduler (scheduled requests released, lost ones re-sent; one pass at a time across
    the fleet)."""
    settings = load_settings()
    try:
        settings.access_token  # noqa: B018 - fail now, not on the first task
        from worker.store.records import check_binding

        check_binding(Store.from_url(settings.database_url), settings, role="worker")
    except ConfigError as exc:
        fail(str(exc))
    from worker.jobs.tasks import app, start_node_services

    start_node_services(settings, scheduler=settings.worker_scheduler and not no_scheduler)
    argv = ["worker", f"--loglevel={(loglevel or settings.log_level).upper()}",
            f"--queues={','.join(settings.lane_queues)}", "--without-mingle", "--without-gossip"]
    if concurrency:
        argv.append(f"--concurrency={concurrency}")
    if hostname:
        argv.append(f"--hostname={hostname}")
    app.worker_main(argv)


@main.command()
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
    from worker.store.queries import identity_differences, key_conflicts

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
    if not State(final.state).is_terminal:
        fail(f"timed out after {timeout:g}s: request {final.id} is still {final.state}"
             f"{still_why(final)}; it goes on without you: seat-revoker status {final.id[:8]}",
             EXIT_TIMEOUT)
    sys.exit(EXIT_OK if State(final.state).is_success else EXIT_FAILED)


def still_why(record: RevocationRequest) -> str:
    """What an unfinished request is waiting on, for a timeout's message."""
    if record.state == State.SCHEDULED and record.effective_at:
        return f" (until {record.effective_at.isoformat(timespec='seconds')})"
    if record.state == State.RETRYING:
        last = f"; last error: {record.last_error}" if record.last_error else ""
        return f" (after {record.attempts} attempt(s){last})"
    return ""


@main.command()
@click.argument("request_id", metavar="[ID]", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def status(request_id: str | None, as_json: bool) -> None:
    """Show one request (by id, id prefix or idempotency key) or a batch's progress;
    without an ID, the queue's health: each pause in force, or "no pause".

    Exit status: 0; 1 for a request that is failed, needs_review or cancelled, or a batch
    with such a row; 5 (no ID) while the queue is paused; 6 for an unknown id.
    """
    from worker.cli import exitcodes
    from worker.store.batches import batch_progress
    from worker.store.lookup import resolve_any

    settings = load_settings()
    if request_id is None:
        sys.exit(queue_health(settings, as_json))
    store = Store.from_url(settings.database_url)
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


def fleet_pause(settings: Settings) -> FleetPause:
    """The queue's pause switch, as the workers build it."""
    from worker.connections import redis_client

    redis = redis_client(settings.redis_url, timeout=5, connect_timeout=5)
    return FleetPause(redis, settings.redis_key("pause"),
                      probe_seconds=settings.pause_probe_seconds)


def read_pauses(settings: Settings) -> list[PauseInfo]:
    from redis.exceptions import RedisError

    try:
        pauses = fleet_pause(settings).all()
    except RedisError as exc:
        fail(f"cannot read the queue's state from Redis ({type(exc).__name__}: {exc})",
             EXIT_FAILED)
    return pauses


def queue_health(settings: Settings, as_json: bool) -> int:
    """Print each pause in force (or "no pause") and what needs attention; the exit code."""
    from dataclasses import asdict

    from worker.cli.display import print_pauses

    pauses = read_pauses(settings)
    counts: dict[str, int] | None
    try:
        counts = Store.from_url(settings.database_url).count_by_state()
    except Exception:  # the pause is what this answers; counts are a courtesy
        counts = None
    attention = None if counts is None else {s.value: counts.get(s.value, 0)
                                             for s in sorted(ATTENTION_STATES)}
    if as_json:
        emit_json({
            "paused": bool(pauses),
            "pauses": [{**asdict(p), "message": p.message} for p in pauses],
            "needs_attention": attention,
        })
    else:
        print_pauses(pauses)
        if attention and any(attention.values()):
            listed = ", ".join(f"{n} {state}" for state, n in attention.items() if n)
            click.echo(f"needing attention: {listed} (seat-revoker failed)")
    return EXIT_PAUSED if pauses else EXIT_OK


@main.command()
@click.argument("scope", required=False)
@click.option("--all", "all_scopes", is_flag=True, help="Clear every pause in force.")
def resume(scope: str | None, all_scopes: bool) -> None:
    """Clear a queue pause after fixing its cause (token, scopes, POLAR_API_VERSION).

    SCOPE is as `seat-revoker status` prints it; without it, the only pause in force is
    cleared. If the cause is still there, the next request pauses the queue again.
    """
    settings = load_settings()
    if scope and all_scopes:
        fail("give a SCOPE or --all, not both")
    pause = fleet_pause(settings)
    pauses = read_pauses(settings)
    if scope:
        scopes = [scope]
    elif all_scopes or len(pauses) <= 1:
        scopes = [info.scope for info in pauses]
    else:
        fail(f"{len(pauses)} pauses in force; give a SCOPE (see seat-revoker status) or --all")
    if not scopes:
        click.echo("no pause in force")
        return
    cleared = [name for name in scopes if pause.resume(name)]
    if cleared:
        from worker.telemetry.logs import get_logger

        get_logger("seat_revoker.cli").warning("pause.resumed_by_operator", scopes=cleared,
                                               by=actor())
    if scope and not cleared:
        fail(f"no pause with scope {scope!r}", EXIT_FAILED)
    for name in cleared:
        click.echo(f"resumed {name}")


@main.command()
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
    from worker.intake.producer import Producer
    from worker.store.batches import batch_progress
    from worker.store.queries import key_conflicts

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

    def read() -> Any:
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


def find_batch(store: Store, text: str) -> str:
    """The id of the batch an id or unique id prefix names; else exit."""
    from worker.store.lookup import resolve_batch

    try:
        return resolve_batch(store, text).id
    except Ambiguous as exc:
        fail(str(exc))
    except NotFound as exc:
        fail(str(exc), EXIT_NOT_FOUND)


@main.command()
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
    if not State(final.state).is_terminal:
        sys.exit(EXIT_TIMEOUT)
    sys.exit(EXIT_OK if State(final.state).is_success else EXIT_FAILED)


@main.group("scim-tenant")
def scim_tenant() -> None:
    """SCIM 2.0 tenants: one identity provider connection per Polar customer."""


@scim_tenant.command("create")
@click.option("--customer-id", help="The Polar customer (id) whose people the tenant manages.")
@click.option("--customer-external-id", help="The Polar customer, by its external id.")
@click.option("--json", "as_json", is_flag=True, help="Print the tenant and token as JSON.")
def scim_tenant_create(customer_id: str | None, customer_external_id: str | None,
                       as_json: bool) -> None:
    """Create a tenant and print its bearer token. The token is shown this once and only
    its digest is stored: give it to the identity provider as its SCIM API token, with
    the base URL https://<this service>/scim/v2."""
    from worker.intake.requests import PersonInput
    from worker.store.scim import create_tenant

    if (customer_id is None) == (customer_external_id is None):
        fail("give --customer-id or --customer-external-id")
    try:  # the same checks as a person request's scope
        PersonInput(email="check@example.com", customer_id=customer_id,
                    customer_external_id=customer_external_id)
    except ValidationError as exc:
        fail(validation_text(exc))
    store = Store.from_url(load_settings().database_url)
    created = create_tenant(store, customer_id=customer_id,
                            customer_external_id=customer_external_id, created_by="cli")
    tenant = created.tenant
    if as_json:
        click.echo(json.dumps({"tenant_id": tenant.id, "customer_id": tenant.customer_id,
                               "customer_external_id": tenant.customer_external_id,
                               "token": created.token}))
        return
    click.echo(f"tenant {tenant.id} for customer "
               f"{tenant.customer_id or 'external_id=' + str(tenant.customer_external_id)}")
    click.echo(f"token (shown once, stored hashed): {created.token}")


@scim_tenant.command("list")
def scim_tenant_list() -> None:
    """The tenants (never their tokens)."""
    from worker.store.scim import list_tenants

    for tenant in list_tenants(Store.from_url(load_settings().database_url)):
        customer = tenant.customer_id or f"external_id={tenant.customer_external_id}"
        click.echo(f"{tenant.id}  customer {customer}  created {tenant.created_at:%Y-%m-%d}")


@main.command()
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
    store = Store.from_url(load_settings().database_url)
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


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", "-p", type=int, default=8000, show_default=True)
def api(host: str, port: int) -> None:
    """Serve the HTTP API: webhooks, REST, dashboard, /metrics, /docs."""
    from worker.api import serve

    serve(host=host, port=port)


@main.command()
def scheduler() -> None:
    """Run the scheduler: release due scheduled requests, re-send lost ones."""
    from worker.jobs.reconciler import run_scheduler

    settings = load_settings()
    Store.from_url(settings.database_url).engine.dispose()
    configure_logging(settings.log_level, settings.log_format)
    with contextlib.suppress(KeyboardInterrupt):
        run_scheduler(settings)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print as JSON Lines.")
def scheduled(as_json: bool) -> None:
    """List scheduled requests (waiting for their effective time)."""
    store = Store.from_url(load_settings().database_url)
    print_requests(store.find(states=[State.SCHEDULED], limit=10_000), as_json,
                   title="scheduled", columns=("effective_at",))


@main.command()
@click.argument("request_id")
def cancel(request_id: str) -> None:
    """Cancel a request that has not ended: scheduled, queued, or retrying (its next run
    sees the cancellation and stops). A running attempt cannot be cancelled."""
    from worker.intake.producer import Producer

    producer = Producer(load_settings())
    try:
        record = producer.cancel(find_request(producer.store, request_id).id, actor=actor())
    except ValueError as exc:
        fail(str(exc), EXIT_FAILED)
    finally:
        producer.close()
    click.echo(f"cancelled {record.id}")


@main.command()
@click.option("--since", type=click.DateTime(), help="Only those ended since (UTC).")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON Lines.")
def failed(since: Any, as_json: bool) -> None:
    """List requests an operator must act on: failed (with Polar's error and HTTP status)
    and needs_review (nothing deleted; what to check is in the detail)."""
    store = Store.from_url(load_settings().database_url)
    records = store.find(states=ATTENTION_STATES, updated_since=utc(since), limit=10_000)
    print_requests(records, as_json, title="failed or needs review",
                   columns=("last_http_status", "detail"))


STATE_CHOICES = sorted([s.value for s in State] + ["in_flight", "terminal", "success",
                                                   "attention"])


@main.command()
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

    store = Store.from_url(load_settings().database_url)
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


@main.command()
@click.option("--limit", type=click.IntRange(1, 500), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON Lines.")
def batches(limit: int, as_json: bool) -> None:
    """List batches, newest first, with their progress."""
    from worker.cli.display import print_batch_table
    from worker.store.queries import list_batches

    summaries, total = list_batches(Store.from_url(load_settings().database_url), limit=limit)
    if as_json:
        emit_json_lines({
            "batch_id": s.batch.id, "name": s.batch.name, "source": s.batch.source,
            "requested_by": s.batch.requested_by,
            "created_at": s.batch.created_at.isoformat(), "total": s.total,
            "finished": s.finished, "done": s.done, "succeeded": s.succeeded,
            "needs_attention": s.attention, "counts": s.counts,
        } for s in summaries)
        return
    print_batch_table(summaries, total)


@main.command()
@click.argument("request_id", required=False)
@click.option("--all-failed", is_flag=True,
              help="Retry every failed and needs_review request.")
@click.option("--since", type=click.DateTime(), help="With --all-failed: ended since (UTC).")
@click.option("--portal-token-file", type=click.Path(path_type=Path, dir_okay=False),
              help="A fresh customer/member session token for customer-portal requests "
              "(Polar's sessions expire after one hour).")
def retry(request_id: str | None, all_failed: bool, since: Any,
          portal_token_file: Path | None) -> None:
    """Send failed or needs_review requests again (same idempotency key, new attempt,
    history kept). Fix what a needs_review detail names first."""
    from worker.intake.producer import Producer

    if bool(request_id) == all_failed:
        fail("give a request ID or --all-failed (not both)")
    portal_token = read_secret_file(portal_token_file) if portal_token_file else None
    producer = Producer(load_settings())
    try:
        if request_id:
            ids = [find_request(producer.store, request_id).id]
        else:
            ids = [r.id for r in producer.store.find(
                states=ATTENTION_STATES, updated_since=utc(since), limit=100_000)]
        retried = 0
        who = actor()
        for rid in ids:
            try:
                producer.retry(rid, portal_token=portal_token, actor=who)
                retried += 1
            except ValueError as exc:
                if request_id:
                    fail(str(exc), EXIT_FAILED)
        click.echo(f"retried {retried} request(s)")
    finally:
        producer.close()


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", "-p", type=int, default=8800, show_default=True)
@click.option("--rate-limit", default=None,
              help="Fixed window per organization, e.g. 100/minute as Polar's sandbox "
              "(default: unlimited).")
@click.option("--token", "tokens", multiple=True,
              help="Accepted organization token (repeatable; default: the sandbox token).")
@click.option("--legacy-member-model", is_flag=True,
              help="Seats assigned from now on take the legacy shape (member model off: "
              "customer_id is the holder's own customer).")
@click.option("--background-usage", type=click.FloatRange(0, 1), default=0.0,
              show_default=True,
              help="Share of each rate-limit window another integration of the organization "
              "spends.")
@click.option("--seats-disabled", is_flag=True,
              help="403 FeatureNotEnabled: seat-based pricing off for the organization.")
@click.option("--scopes-missing", is_flag=True,
              help="403 insufficient_scope for the organization token.")
@click.option("--revoked-token", "revoked_tokens", multiple=True,
              help="A token answered 401 invalid_token (repeatable).")
@click.option("--version", "versions", multiple=True,
              help="Polar-Version values served (repeatable; default 2026-04 and 2026-10).")
@click.option("--latency-ms", type=click.IntRange(0), default=0, show_default=True,
              help="Added to every Polar API call.")
@click.option("--legacy-rerevoke", is_flag=True,
              help="Revoking a revoked seat bumps revoked_at again, as older Polar did.")
@click.option("--seed", "sample_seats", type=click.IntRange(0, 10_000), default=0,
              help="Create N claimed sample seats and print their ids, the token, the "
              "environment to export and the next commands.")
def sandbox(host: str, port: int, rate_limit: str | None, tokens: tuple[str, ...],
            legacy_member_model: bool, background_usage: float, seats_disabled: bool,
            scopes_missing: bool, revoked_tokens: tuple[str, ...], versions: tuple[str, ...],
            latency_ms: int, legacy_rerevoke: bool, sample_seats: int) -> None:
    """Run the local Polar stand-in: both organization modes, fixed-window rate limit (none
    unless --rate-limit), Polar-Version handling, portal sessions, identity reads and fault
    injection (control routes under /_sandbox/). Token: polar_oat_sandbox_local."""
    from worker.sandbox.app import serve

    serve(host=host, port=port, rate_limit=rate_limit, tokens=list(tokens),
          member_model_enabled=not legacy_member_model, background_usage=background_usage,
          seats_enabled=not seats_disabled, scopes_missing=scopes_missing,
          revoked_tokens=list(revoked_tokens), versions=list(versions) or None,
          latency_ms=latency_ms, legacy_rerevoke=legacy_rerevoke,
          sample_seats=sample_seats)


@main.command()
@click.option("--people", type=click.IntRange(5, 500), default=40, show_default=True)
@click.option("--concurrency", type=click.IntRange(1, 16), default=2, show_default=True)
def demo(people: int, concurrency: int) -> None:
    """Offboard sample people end to end against the local sandbox."""
    from worker.sandbox.demo import run_demo

    sys.exit(run_demo(people=people, concurrency=concurrency))


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


def utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def print_requests(records: list[RevocationRequest], as_json: bool, *, title: str,
                   columns: tuple[str, ...]) -> None:
    if as_json:
        emit_json_lines(record.to_dict() for record in records)
        return
    from worker.cli.display import print_request_table

    print_request_table(records, title=title, columns=columns)


def read_secret_file(path: Path) -> SecretStr:
    try:
        value = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        fail(f"cannot read {path}: {exc.strerror}")
    if not value:
        fail(f"{path} is empty")
    return SecretStr(value)


def wait_for(store: Store, request_id: str, timeout: float,
             watch: WorkerWatch | None = None) -> RevocationRequest:
    """The request once it ended or ``timeout`` passed; ``NoWorker`` from ``watch``."""
    deadline = time.monotonic() + timeout
    while True:
        record = store.get(request_id)
        assert record is not None
        if State(record.state).is_terminal or time.monotonic() > deadline:
            return record
        if watch is not None:
            watch.check()
        time.sleep(0.2)


def show(record: RevocationRequest, as_json: bool, history: list[Any] | None = None) -> None:
    if as_json:
        data = record.to_dict()
        if history is not None:
            data["history"] = [
                {"at": e.at.isoformat(), "state": e.state, "attempt": e.attempt,
                 "detail": e.detail}
                for e in history
            ]
        emit_json(data)
    else:
        print_record(record, history)

if __name__ == "__main__":
    main()
