"""Human-readable output for the CLI (rich)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from worker.fleetpause import PauseInfo
from worker.models import RevocationRequest
from worker.outcomes import State

STATE_STYLE = {
    State.REVOKED: "green",
    State.ALREADY_REVOKED: "cyan",
    State.OCCUPANT_MISMATCH: "yellow",
    State.NO_ACTIVE_SEAT: "cyan",
    State.FAILED: "bold red",
    State.NEEDS_REVIEW: "bold yellow",
    State.CANCELLED: "dim",
}

console = Console()


def styled_state(state: str) -> str:
    style = STATE_STYLE.get(State(state), "blue")
    return f"[{style}]{state}[/{style}]"


def verification_text(record: RevocationRequest) -> str | None:
    """Whether the seat list confirmed the end state: ``None`` when it was not checked."""
    if record.end_state_verified is None:
        return None
    when = f" at {record.verified_at.isoformat()}" if record.verified_at else ""
    if record.end_state_verified:
        return f"yes{when}: the person holds no active seat there"
    return f"[bold red]no[/bold red]{when}: the seat list still shows them holding one"


def record_rows(record: RevocationRequest) -> list[tuple[str, Any]]:
    """The ``status`` fields of one request, in order (empty values are left out)."""
    return [
        ("request", record.id),
        ("state", styled_state(record.state)),
        ("outcome detail", escape(record.outcome_detail) if record.outcome_detail else None),
        ("seat", record.seat_id),
        ("requested seat", f"{record.requested_seat_id} (stale: the person's seat in the "
         "same subscription/order was revoked instead)" if record.requested_seat_id else None),
        ("guarded", "[bold yellow]false[/bold yellow] (no occupant check)"
         if record.guarded is False else None),
        ("end state verified", verification_text(record)),
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
        ("last error", escape(record.last_error) if record.last_error else None),
        ("key", escape(record.idempotency_key)),
        ("reason", escape(record.reason) if record.reason else None),
        ("requested by", record.requested_by),
        ("created", record.created_at.isoformat()),
        ("finished", record.finished_at.isoformat() if record.finished_at else None),
    ]


def print_record(record: RevocationRequest, history: list[Any] | None = None) -> None:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for name, value in record_rows(record):
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


def pause_lines(pauses: Sequence[PauseInfo]) -> list[str]:
    """The queue's health for ``seat-revoker status``: each pause in force, or "no pause"."""
    if not pauses:
        return ["[green]no pause[/green]: the queue runs"]
    lines = [f"[bold red]queue paused[/bold red] ({len(pauses)} pause(s) in force)"]
    for info in pauses:
        status = f", HTTP {info.status}" if info.status is not None else ""
        lines.append(f"  [bold]{escape(info.fault)}[/bold]{status} since {escape(info.since)}, "
                     f"last probe {escape(info.last_probe)}")
        lines.append(f"    {escape(info.message)}")
        lines.append(f"    scope: {escape(info.scope)}")
    lines.append("Requests wait (none is marked failed); a probe goes to Polar every "
                 "interval and the queue resumes when one succeeds. After fixing the "
                 "cause: seat-revoker resume --all")
    return lines


def print_pauses(pauses: Sequence[PauseInfo]) -> None:
    for line in pause_lines(pauses):
        console.print(line, highlight=False)


def detail_text(record: RevocationRequest) -> str:
    """Why the request ended as it did, then Polar's error (the ``detail`` table column)."""
    return " — ".join(text for text in (record.outcome_detail, record.last_error) if text)


def print_request_table(
    records: list[RevocationRequest], *, title: str, columns: tuple[str, ...]
) -> None:
    """One row per request; ``columns`` are record attributes, or ``detail``."""
    table = Table(title=f"{title}: {len(records)}")
    for name in ("request", "seat", "state", "person", *columns, "updated"):
        table.add_column(name)
    for record in records:
        extra = []
        for name in columns:
            value = detail_text(record) if name == "detail" else getattr(record, name)
            text = value.isoformat() if hasattr(value, "isoformat") else str(value or "")
            extra.append(escape(text))
        table.add_row(record.id, record.seat_id or "", styled_state(record.state),
                      record.occupant_email or record.occupant_external_id or "", *extra,
                      record.updated_at.isoformat(timespec="seconds"))
    console.print(table)
