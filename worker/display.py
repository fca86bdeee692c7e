"""Human-readable output for the CLI (rich)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from worker.models import RevocationRequest
from worker.outcomes import State

STATE_STYLE = {
    State.REVOKED: "green",
    State.ALREADY_REVOKED: "cyan",
    State.OCCUPANT_MISMATCH: "yellow",
    State.NO_ACTIVE_SEAT: "cyan",
    State.FAILED: "bold red",
    State.CANCELLED: "dim",
}

console = Console()


def styled_state(state: str) -> str:
    style = STATE_STYLE.get(State(state), "blue")
    return f"[{style}]{state}[/{style}]"


def print_record(record: RevocationRequest, history: list[Any] | None = None) -> None:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    rows: list[tuple[str, Any]] = [
        ("request", record.id),
        ("state", styled_state(record.state)),
        ("seat", record.seat_id),
        ("mode", record.mode),
        ("subscription", record.subscription_id),
        ("order", record.order_id),
        ("person", ", ".join(
            v for v in (record.occupant_email, record.occupant_member_id,
                        record.occupant_customer_id, record.occupant_external_id) if v
        )),
        ("seen on seat", record.occupant_seen),
        ("attempts", record.attempts),
        ("last status", record.last_http_status),
        ("last error", record.last_error),
        ("key", record.idempotency_key),
        ("reason", record.reason),
        ("requested by", record.requested_by),
        ("created", record.created_at.isoformat()),
        ("finished", record.finished_at.isoformat() if record.finished_at else None),
    ]
    for name, value in rows:
        if value not in (None, "", {}):
            table.add_row(name, str(value) if not isinstance(value, str) else value)
    console.print(table)
    if history:
        console.print("[bold]history[/bold]")
        for event in history:
            detail = f"  {event.detail}" if event.detail else ""
            console.print(f"  {event.at:%Y-%m-%d %H:%M:%S.%f}"[:-3] + f"  {event.state}"
                          f"  (attempt {event.attempt}){detail}")


def print_batch(progress: Any, as_json: bool) -> None:
    """A batch's progress: a JSON summary, or a short table."""
    if as_json:
        import json

        print(json.dumps(progress.summary()))
        return
    state = "done" if progress.done else "in progress"
    console.print(f"[bold]batch {progress.batch_id}[/bold] {progress.name or ''} — {state}, "
                  f"{progress.finished}/{progress.total} finished in {progress.elapsed_s:.1f}s")
    table = Table(show_header=True)
    table.add_column("outcome")
    table.add_column("count", justify="right")
    for name, count in progress.counts.items():
        table.add_row(styled_state(name), str(count))
    console.print(table)


def print_request_table(
    records: list[RevocationRequest], *, title: str, columns: tuple[str, ...]
) -> None:
    table = Table(title=f"{title}: {len(records)}")
    for name in ("request", "seat", "state", "person", *columns, "updated"):
        table.add_column(name)
    for record in records:
        extra = []
        for name in columns:
            value = getattr(record, name)
            extra.append(value.isoformat() if hasattr(value, "isoformat") else str(value or ""))
        table.add_row(record.id, record.seat_id or "", styled_state(record.state),
                      record.occupant_email or record.occupant_external_id or "", *extra,
                      record.updated_at.isoformat(timespec="seconds"))
    console.print(table)
