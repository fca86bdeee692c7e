"""Long-running processes: a worker node, the scheduler alone, the HTTP API, the local
sandbox and the demo."""

from __future__ import annotations

import contextlib
import sys

import click

from config.settings import ConfigError
from worker.cli.common import (
    fail,
    load_settings,
)
from worker.store.records import Store
from worker.telemetry.logs import configure_logging


@click.command()
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
        from worker.store.binding import check_binding

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


@click.command()
def scheduler() -> None:
    """Run the scheduler: release due scheduled requests, re-send lost ones."""
    from worker.jobs.reconciler import run_scheduler

    settings = load_settings()
    Store.from_url(settings.database_url).engine.dispose()
    configure_logging(settings.log_level, settings.log_format)
    with contextlib.suppress(KeyboardInterrupt):
        run_scheduler(settings)


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", "-p", type=int, default=8000, show_default=True)
def api(host: str, port: int) -> None:
    """Serve the HTTP API: webhooks, REST, dashboard, /metrics, /docs."""
    from worker.api import serve

    serve(host=host, port=port)


@click.command()
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


@click.command()
@click.option("--people", type=click.IntRange(5, 500), default=40, show_default=True)
@click.option("--concurrency", type=click.IntRange(1, 16), default=2, show_default=True)
def demo(people: int, concurrency: int) -> None:
    """Offboard sample people end to end against the local sandbox."""
    from worker.cli.display import styled_state
    from worker.sandbox.demo import run_demo

    sys.exit(run_demo(people=people, concurrency=concurrency, show_state=styled_state))
