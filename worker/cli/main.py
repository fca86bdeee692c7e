"""The ``seat-revoker`` command: the group, its error handling, and where each command lives."""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from config.settings import ConfigError
from worker.cli import brake, observe, operate, serve, submit
from worker.cli.common import EXIT_FAILED, fail
from worker.telemetry.logs import configure_logging
from worker.version import package_version


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
             "3 --wait timed out, 4 no worker consuming the queue, 5 queue paused or breaker "
             "open, "
             "6 no such request or batch. See README.md.")
@click.version_option(package_version(), "--version", "-V", prog_name="seat-revoker",
                      message="%(prog)s %(version)s")
@click.option("--verbose", "-v", is_flag=True, help="Log progress events to stderr.")
def main(verbose: bool) -> None:
    """Revoke Polar customer seats when people leave, exactly once, with proof."""
    level = "INFO" if verbose else os.environ.get("CLI_LOG_LEVEL", "WARNING")
    fmt = os.environ.get("LOG_FORMAT", "auto")
    configure_logging(level, fmt if fmt in ("json", "console") else "auto")  # type: ignore[arg-type]


for command in (
    submit.revoke, submit.batch, submit.offboard,
    observe.status, observe.requests, observe.batches, observe.scheduled, observe.failed,
    observe.report,
    operate.retry, operate.cancel, operate.resume, operate.scim_tenant,
    brake.held, brake.release, brake.reject,
    serve.worker, serve.scheduler, serve.api, serve.sandbox, serve.demo,
):
    main.add_command(command)


if __name__ == "__main__":
    main()
