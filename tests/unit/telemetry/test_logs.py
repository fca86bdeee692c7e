"""Tests of the structlog pipeline in ``worker.telemetry.logs`` (JSON lines, context, redaction)."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest
import structlog

from worker.telemetry import logs

SECRET = "polar_oat_LogSecretToken987"


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """Configure logging into a StringIO; restore the root logger and structlog after."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    saved_secrets = set(logs._secrets)
    buffer = io.StringIO()
    logs.configure_logging(level="INFO", fmt="json", stream=buffer)
    try:
        yield buffer
    finally:
        logs.clear_task_context()
        logs._secrets.clear()
        logs._secrets.update(saved_secrets)
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        structlog.reset_defaults()


def lines(buffer: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


def test_structlog_event_is_one_json_line(stream: io.StringIO) -> None:
    logs.get_logger("seat_revoker.test").info("seat.revoke.started", mode="organization")
    (line,) = lines(stream)
    assert line["event"] == "seat.revoke.started"
    assert line["level"] == "info"
    assert line["logger"] == "seat_revoker.test"
    assert line["mode"] == "organization"
    stamp = datetime.fromisoformat(line["timestamp"].replace("Z", "+00:00"))
    assert stamp.utcoffset() is not None and stamp.utcoffset().total_seconds() == 0


@pytest.mark.parametrize(
    ("method", "level"),
    [
        pytest.param("warning", "warning", id="a warning is rendered with level warning"),
        pytest.param("error", "error", id="an error is rendered with level error"),
    ],
)
def test_levels(stream: io.StringIO, method: str, level: str) -> None:
    getattr(logs.get_logger("seat_revoker.test"), method)("seat.revoke.failed")
    assert [(line["event"], line["level"]) for line in lines(stream)] == [
        ("seat.revoke.failed", level)
    ]


def test_below_the_configured_level_is_dropped(stream: io.StringIO) -> None:
    logs.get_logger("seat_revoker.test").debug("seat.debug.detail")
    assert lines(stream) == []


def test_bound_task_context_is_on_every_line(stream: io.StringIO) -> None:
    logs.bind_task_context(request_id="req-1", seat_id="seat-1", attempt=2)
    log = logs.get_logger("seat_revoker.test")
    log.info("seat.lock.acquired")
    logging.getLogger("celery.worker").info("task received")
    first, second = lines(stream)
    for line in (first, second):
        assert (line["request_id"], line["seat_id"], line["attempt"]) == ("req-1", "seat-1", 2)
    logs.clear_task_context()
    log.info("seat.lock.released")
    assert "request_id" not in lines(stream)[-1]


def test_stdlib_logger_goes_through_the_same_pipeline(stream: io.StringIO) -> None:
    logging.getLogger("celery.x").info("Task %s received", "revoke_seat")
    (line,) = lines(stream)
    assert line["event"] == "Task revoke_seat received"
    assert line["level"] == "info"
    assert line["logger"] == "celery.x"
    assert "timestamp" in line


def test_stdlib_extra_fields_are_kept(stream: io.StringIO) -> None:
    logging.getLogger("celery.x").warning("slow", extra={"elapsed_s": 3.5})
    (line,) = lines(stream)
    assert line["elapsed_s"] == 3.5
    assert line["level"] == "warning"


def test_httpx_info_lines_are_silenced(stream: io.StringIO) -> None:
    logging.getLogger("httpx").info("HTTP Request: DELETE https://x")
    logging.getLogger("httpx").warning("httpx warning")
    assert [line["event"] for line in lines(stream)] == ["httpx warning"]


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        pytest.param(
            {"error": f"Bearer {SECRET} rejected"},
            {"error": "Bearer *** rejected"},
            id="a secret inside a string value is redacted",
        ),
        pytest.param(
            {"headers": {"Authorization": f"Bearer {SECRET}", "Accept": "json"}},
            {"headers": {"Authorization": "Bearer ***", "Accept": "json"}},
            id="a secret inside a nested dict is redacted",
        ),
        pytest.param(
            {"args": ["a", {"deep": [SECRET, f"x{SECRET}y"]}]},
            {"args": ["a", {"deep": ["***", "x***y"]}]},
            id="a secret inside nested lists and dicts is redacted",
        ),
        pytest.param(
            {"pair": (SECRET, 1)},
            {"pair": ["***", 1]},
            id="a secret inside a tuple is redacted",
        ),
        pytest.param(
            {"count": 3, "ok": True, "none": None},
            {"count": 3, "ok": True, "none": None},
            id="values without the secret are untouched",
        ),
    ],
)
def test_register_secret_redacts_event_values(
    stream: io.StringIO, fields: dict[str, Any], expected: dict[str, Any]
) -> None:
    logs.register_secret(SECRET)
    logs.get_logger("seat_revoker.test").info("polar.request.retry", **fields)
    raw = stream.getvalue()
    assert SECRET not in raw
    (line,) = lines(stream)
    for key, value in expected.items():
        assert line[key] == value


def test_register_secret_redacts_the_event_name_and_context(stream: io.StringIO) -> None:
    logs.register_secret(SECRET)
    logs.bind_task_context(idempotency_key=f"k-{SECRET}")
    logs.get_logger("seat_revoker.test").info(f"event {SECRET}")
    (line,) = lines(stream)
    assert line["event"] == "event ***"
    assert line["idempotency_key"] == "k-***"


@pytest.mark.parametrize(
    ("message", "args", "expected"),
    [
        pytest.param("token is %s", (SECRET,), "token is ***", id="a secret in stdlib format args"),
        pytest.param(f"token is {SECRET}", (), "token is ***", id="a secret in a stdlib message"),
    ],
)
def test_register_secret_redacts_stdlib_messages(
    stream: io.StringIO, message: str, args: tuple[Any, ...], expected: str
) -> None:
    logs.register_secret(SECRET)
    logging.getLogger("celery.x").error(message, *args)
    assert SECRET not in stream.getvalue()
    assert lines(stream)[0]["event"] == expected


def test_register_secret_redacts_exception_text(stream: io.StringIO) -> None:
    logs.register_secret(SECRET)
    try:
        raise RuntimeError(f"bad token {SECRET}")
    except RuntimeError:
        logs.get_logger("seat_revoker.test").exception("seat.revoke.crashed")
        logging.getLogger("celery.x").exception("task failed")
    assert SECRET not in stream.getvalue()
    first, second = lines(stream)
    assert "bad token ***" in first["exception"]
    assert "bad token ***" in second["exception"]


def test_without_registration_nothing_is_redacted(stream: io.StringIO) -> None:
    logs.get_logger("seat_revoker.test").info("x", value=SECRET)
    assert lines(stream)[0]["value"] == SECRET


@pytest.mark.parametrize(
    ("value", "registered"),
    [
        pytest.param("abcdef", True, id="a six-character secret is registered"),
        pytest.param("abcde", False, id="a five-character secret is ignored"),
        pytest.param("", False, id="an empty secret is ignored"),
    ],
)
def test_short_secrets_are_not_registered(
    stream: io.StringIO, value: str, registered: bool
) -> None:
    logs.register_secret(value)
    assert (value in logs._secrets) is registered


def test_register_secret_redacts_exception_text_in_console_mode(stream: io.StringIO) -> None:
    console = io.StringIO()
    logs.configure_logging(level="INFO", fmt="console", stream=console)
    logs.register_secret(SECRET)
    try:
        raise RuntimeError(f"bad token {SECRET}")
    except RuntimeError:
        logging.getLogger("celery.x").exception("task failed")
    assert "task failed" in console.getvalue()
    assert SECRET not in console.getvalue()
