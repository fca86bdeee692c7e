"""CLI rendering of outcomes and queue pauses (pure: records are built in memory)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from rich.console import Console
from rich.text import Text

from worker.cli import display
from worker.cli.display import STATE_STYLE, detail_text, pause_lines, record_rows, styled_state
from worker.decisions.outcomes import FLEET_FAULT_HINTS, FleetFault, State
from worker.jobs.fleetpause import PauseInfo
from worker.store.models import RevocationRequest

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def record(**fields: Any) -> RevocationRequest:
    values: dict[str, Any] = {
        "id": "req-1", "idempotency_key": "k-1", "seat_id": "seat-now", "mode": "organization",
        "state": "revoked", "attempts": 1, "created_at": NOW, "updated_at": NOW,
        "guarded": True, **fields,
    }
    return RevocationRequest(**values)


def rows(rec: RevocationRequest) -> dict[str, Any]:
    return {name: value.plain for name, value in record_rows(rec)
            if value is not None and value.plain}


def style_of(text: Text, word: str) -> str:
    """The style of the span holding ``word`` (or the text's own style)."""
    start = text.plain.index(word)
    for span in text.spans:
        if span.start <= start < span.end:
            return str(span.style)
    return str(text.style)


def pause(fault: FleetFault = FleetFault.TOKEN_INVALID, **fields: Any) -> PauseInfo:
    values: dict[str, Any] = {
        "scope": "tok:abc123:2026-04", "fault": fault.value, "hint": FLEET_FAULT_HINTS[fault],
        "status": 401, "since": "2026-11-23T12:00:00+00:00",
        "last_probe": "2026-11-23T12:00:30+00:00", **fields,
    }
    return PauseInfo(**values)


def test_every_state_has_a_style_and_needs_review_is_a_warning() -> None:
    assert set(STATE_STYLE) | {State.SCHEDULED, State.QUEUED, State.RUNNING,
                               State.RETRYING} == set(State)
    assert "yellow" in STATE_STYLE[State.NEEDS_REVIEW]
    state = styled_state("needs_review")
    assert (state.plain, str(state.style)) == ("needs_review", "bold yellow")


def test_plain_record_shows_no_guard_or_verification_lines() -> None:
    shown = rows(record())
    assert "guarded" not in shown and "requested seat" not in shown
    assert "end state verified" not in shown and "outcome detail" not in shown


def test_needs_review_record_shows_what_to_check() -> None:
    shown = rows(record(state="needs_review", outcome_detail="two seats match [jane]; check",
                        finished_at=NOW))
    assert shown["state"] == "needs_review"
    # Rich markup in stored text is kept as written, not interpreted.
    assert shown["outcome detail"] == "two seats match [jane]; check"
    names = [name for name, _ in record_rows(record())]
    assert names.index("outcome detail") == names.index("state") + 1


def test_unguarded_stale_and_verified_fields_are_shown() -> None:
    shown = rows(record(guarded=False, requested_seat_id="seat-old",
                        end_state_verified=True, verified_at=NOW))
    assert "false" in shown["guarded"]
    assert shown["requested seat"].startswith("seat-old (stale")
    assert shown["seat"] == "seat-now"
    assert shown["end state verified"].startswith("yes at 2026-11-23T12:00:00+00:00")


def test_a_failed_end_check_is_red() -> None:
    (value,) = [v for name, v in record_rows(record(end_state_verified=False,
                                                       verified_at=None))
                if name == "end state verified"]
    assert value is not None and value.plain.startswith("no:")
    assert style_of(value, "no") == "bold red"


def test_unflushed_guarded_none_is_not_shown_as_unguarded() -> None:
    assert "guarded" not in rows(record(guarded=None))


def test_no_pause_reads_no_pause() -> None:
    assert len(pause_lines([])) == 1
    assert "no pause" in pause_lines([])[0].plain


def test_each_pause_shows_fault_status_since_message_and_scope() -> None:
    first = pause()
    second = pause(FleetFault.API_VERSION, scope="tok:abc123:2025-01", status=404,
                   since="2026-11-23T12:05:00+00:00")
    text = "\n".join(line.plain for line in pause_lines([first, second]))
    assert "2 pause(s) in force" in text
    for info in (first, second):
        assert info.fault in text and info.since in text and info.scope in text
        assert info.message in text
    assert "HTTP 401" in text and "HTTP 404" in text
    assert "seat-revoker resume" in text


def test_pause_without_status_omits_it() -> None:
    text = "\n".join(line.plain for line in pause_lines([pause(status=None)]))
    assert "HTTP" not in text


@pytest.mark.parametrize("width", [80, 200])
def test_print_pauses_renders_plain_text(monkeypatch: pytest.MonkeyPatch, width: int) -> None:
    console = Console(record=True, width=width, color_system=None)
    monkeypatch.setattr(display, "console", console)
    display.print_pauses([pause()])
    out = console.export_text()
    assert "queue paused" in out and "token_invalid" in out and "[bold" not in out


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({}, ""),
        ({"outcome_detail": "two seats match"}, "two seats match"),
        ({"last_error": "404 ResourceNotFound"}, "404 ResourceNotFound"),
        ({"outcome_detail": "seat not found", "last_error": "404 ResourceNotFound"},
         "seat not found — 404 ResourceNotFound"),
    ],
)
def test_detail_column_puts_the_outcome_detail_first(
    fields: dict[str, Any], expected: str
) -> None:
    assert detail_text(record(**fields)) == expected


MARKUP = "[/x] closing tag [bold]not ours[/] and a trailing backslash \\"


def test_stored_text_with_markup_prints_as_written(monkeypatch: pytest.MonkeyPatch) -> None:
    console = Console(record=True, width=400, color_system=None)
    monkeypatch.setattr(display, "console", console)
    rec = record(state="failed", outcome_detail=MARKUP, last_error=MARKUP, reason=MARKUP,
                 occupant_email="[/x]@acme.com", requested_by="[/x]")
    event = type("Event", (), {"at": NOW, "state": "failed", "attempt": 1,
                               "detail": {"error": MARKUP}})()
    display.print_record(rec, [event])
    display.print_request_table([rec], title="[/x] failed", columns=("detail",))
    progress = type("Progress", (), {"batch_id": "b-1", "name": MARKUP, "done": True,
                                     "finished": 1, "total": 1, "elapsed_s": 1.0,
                                     "counts": {"failed": 1}})()
    display.print_batch(progress, False)
    display.print_pauses([pause(hint=MARKUP, scope="[/x]", since="[/x]")])
    out = console.export_text()
    assert out.count("[/x] closing tag [bold]not ours[/]") >= 5
    assert "[/x]@acme.com" in out and "[/x] failed" in out
