"""Human-readable output for the CLI (rich).

Nothing read from the store, Redis or Polar is ever parsed as Rich markup: values become
``rich.text.Text`` (styled where we style them), so a reason, a batch name or a Polar error
holding ``[/x]`` prints as written instead of raising ``MarkupError``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from worker.decisions.outcomes import State
from worker.jobs.fleetpause import PauseInfo
from worker.store.batches import BatchSummary
from worker.store.models import RevocationRequest

STATE_STYLE = {
    State.REVOKED: "green",
    State.ALREADY_REVOKED: "cyan",
    State.OCCUPANT_MISMATCH: "yellow",
    State.NO_ACTIVE_SEAT: "cyan",
    State.FAILED: "bold red",
    State.NEEDS_REVIEW: "bold yellow",
    State.CANCELLED: "dim",
    State.HELD: "bold magenta",  # waits for an operator at the circuit breaker
    State.AWAITING_APPROVAL: "magenta",
    State.RESTORED: "green",
    State.CHANGED_HANDS: "bold yellow",
}

console = Console()


def plain(value: object) -> Text:
    """Stored or remote text as it is: never parsed as Rich markup (a reason, a batch
    name or a Polar error may hold ``[/x]``, which markup would choke on)."""
    return Text("" if value is None else str(value))


def styled_state(state: str) -> Text:
    try:
        style = STATE_STYLE.get(State(state), "blue")
    except ValueError:  # not a state this version knows: shown as it is
        style = "blue"
    return Text(state, style=style)


def verification_text(record: RevocationRequest) -> Text | None:
    """Whether the seat list confirmed the end state: ``None`` when it was not checked."""
    if record.end_state_verified is None:
        return None
    when = f" at {record.verified_at.isoformat()}" if record.verified_at else ""
    if record.end_state_verified:
        return Text(f"yes{when}: the person holds no active seat there")
    return Text.assemble(("no", "bold red"),
                         f"{when}: the seat list still shows them holding one")


def _optional(value: object) -> Text | None:
    return None if value in (None, "", {}) else plain(value)


def record_rows(record: RevocationRequest) -> list[tuple[str, Text | None]]:
    """The ``status`` fields of one request, in order (``None``: left out)."""
    person = ", ".join(
        v for v in (record.occupant_email, record.occupant_member_id,
                    record.occupant_customer_id, record.occupant_external_id) if v
    )
    return [
        ("request", plain(record.id)),
        ("state", styled_state(record.state)),
        ("outcome detail", _optional(record.outcome_detail)),
        ("kind", plain("person: every seat in " + _scope(record)
                       + " (seat-revoker report --person ID)")
         if record.kind == "person" else None),
        ("seats found", _optional(", ".join(
            str(seat.get("seat_id")) for seat in (record.discovered or {}).get("seats", [])))
         if record.kind == "person" else None),
        ("of person request", _optional(record.parent_id)),
        ("seat", _optional(record.seat_id)),
        ("requested seat", plain(f"{record.requested_seat_id} (stale: the person's seat in "
                                 "the same subscription/order was revoked instead)")
         if record.requested_seat_id else None),
        ("guarded", Text.assemble(("false", "bold yellow"), " (no occupant check)")
         if record.guarded is False else None),
        ("end state verified", verification_text(record)),
        ("priority", _optional(record.priority)),
        ("mode", _optional(record.mode)),
        ("subscription", _optional(record.subscription_id)),
        ("order", _optional(record.order_id)),
        ("person", _optional(person)),
        ("seen on seat", _optional(mapping_text(record.occupant_seen))),
        ("attempts", _optional(record.attempts)),
        ("last status", _optional(record.last_http_status)),
        ("last error", _optional(record.last_error)),
        ("key", _optional(record.idempotency_key)),
        ("reason", _optional(record.reason)),
        ("requested by", _optional(record.requested_by)),
        ("created", plain(record.created_at.isoformat())),
        ("finished", plain(record.finished_at.isoformat()) if record.finished_at else None),
    ]


def mapping_text(value: object) -> str:
    """A stored dict (history detail, who was seen on a seat) as ``key=value, …``; other
    values as they are. Never a Python repr."""
    if isinstance(value, dict):
        return ", ".join(f"{key}={mapping_text(item)}" for key, item in value.items()
                         if item not in (None, "", {}, []))
    if isinstance(value, list):
        return "[" + ", ".join(mapping_text(item) for item in value) + "]"
    return "" if value is None else str(value)
def _scope(record: RevocationRequest) -> str:
    if record.scope_customer_id:
        return f"customer {record.scope_customer_id}"
    if record.scope_external_customer_id:
        return f"customer external_id={record.scope_external_customer_id}"
    return "all customers"


def history_line(event: Any) -> Text:
    stamp = f"{event.at:%Y-%m-%d %H:%M:%S.%f}"[:-3]
    detail = f"  {mapping_text(event.detail)}" if event.detail else ""
    return plain(f"  {stamp}  {event.state}  (attempt {event.attempt}){detail}")


def print_record(record: RevocationRequest, history: list[Any] | None = None) -> None:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for name, value in record_rows(record):
        if value is not None and value.plain:
            table.add_row(Text(name), value)
    console.print(table)
    if history:
        console.print(Text("history", style="bold"))
        for event in history:
            console.print(history_line(event), highlight=False)


def batch_heading(progress: BatchSummary) -> Text:
    state = "done" if progress.done else "in progress"
    return Text.assemble(
        (f"batch {progress.batch_id}", "bold"), " ", plain(progress.name or ""),
        f" — {state}, {progress.finished}/{progress.total} finished in "
        f"{progress.elapsed_s:.1f}s",
    )


def print_batch(progress: BatchSummary, as_json: bool) -> None:
    """A batch's progress: a JSON summary, or a short table."""
    if as_json:
        import json

        print(json.dumps(progress.summary()))
        return
    console.print(batch_heading(progress))
    table = Table(show_header=True)
    table.add_column("outcome")
    table.add_column("count", justify="right")
    for name, count in progress.counts.items():
        table.add_row(styled_state(name), plain(count))
    console.print(table)


def print_batch_table(summaries: Sequence[BatchSummary], total: int) -> None:
    """``seat-revoker batches``: one row per batch."""
    table = Table(title=plain(f"batches: {len(summaries)} of {total}"))
    for name in ("batch", "name", "created", "finished", "outcomes"):
        table.add_column(name, no_wrap=name == "batch")
    for summary in summaries:
        batch = summary.batch
        outcomes = Text(" ").join(
            Text.assemble(styled_state(state), f"={n}")
            for state, n in sorted(summary.counts.items()))
        table.add_row(plain(batch.id[:8]), plain(batch.name or ""),
                      plain(batch.created_at.isoformat(timespec="seconds")),
                      plain(f"{summary.finished}/{summary.total}"
                            + (" done" if summary.done else "")), outcomes)
    console.print(table)


def pause_lines(pauses: Sequence[PauseInfo]) -> list[Text]:
    """The queue's health for ``seat-revoker status``: each pause in force, or "no pause"."""
    if not pauses:
        return [Text.assemble(("no pause", "green"), ": the queue runs")]
    lines = [Text.assemble(("queue paused", "bold red"),
                           f" ({len(pauses)} pause(s) in force)")]
    for info in pauses:
        status = f", HTTP {info.status}" if info.status is not None else ""
        lines.append(Text.assemble("  ", (info.fault, "bold"),
                                   f"{status} since {info.since}, last probe {info.last_probe}"))
        lines.append(plain(f"    {info.message}"))
        lines.append(plain(f"    scope: {info.scope}"))
    lines.append(Text("Requests wait (none is marked failed); a probe goes to Polar every "
                      "interval and the queue resumes when one succeeds. After fixing the "
                      "cause: seat-revoker resume --all"))
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
    table = Table(title=plain(f"{title}: {len(records)}"),
                  caption=Text("ids are shortened; every command takes the prefix")
                  if records else None)
    for name in ("request", "seat", "state", "person", *columns, "updated"):
        table.add_column(name, no_wrap=name in ("request", "seat"))
    for record in records:
        extra = []
        for name in columns:
            value = detail_text(record) if name == "detail" else getattr(record, name)
            extra.append(plain(value.isoformat() if hasattr(value, "isoformat")
                               else value or ""))
        table.add_row(plain(record.id[:8]), plain((record.seat_id or "")[:8]),
                      styled_state(record.state),
                      plain(record.occupant_email or record.occupant_external_id or ""),
                      *extra, plain(record.updated_at.isoformat(timespec="seconds")))
    console.print(table)
