"""structlog configuration: one pipeline for our events and for stdlib loggers (Celery's).

JSON lines in production (or when stderr is not a TTY), coloured console output on a TTY.
Every task binds its context once (``bind_task_context``) so each line carries the request
id, seat id, attempt and idempotency key. ``redact_secrets`` is the last line of defence
that keeps registered secrets (the Polar token) out of every rendered line.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, Literal, TextIO

import structlog

REDACTED = "***"
_secrets: set[str] = set()


def register_secret(value: str) -> None:
    """Never print ``value``: it is replaced with ``***`` wherever it appears in a log line."""
    if len(value) >= 6:
        _secrets.add(value)


def redact(value: Any, secrets: set[str] | None = None) -> Any:
    """``value`` with every secret (default: the registered ones) replaced by ``***``."""
    secrets = _secrets if secrets is None else secrets
    if isinstance(value, str):
        for secret in secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, dict):
        return {key: redact(item, secrets) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact(item, secrets) for item in value)
    return value


def redact_secrets(
    _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    if not _secrets:
        return event_dict
    for key, value in event_dict.items():
        event_dict[key] = redact(value)
    return event_dict


def configure_logging(
    level: str = "INFO",
    fmt: Literal["auto", "json", "console"] = "auto",
    stream: TextIO | None = None,
) -> None:
    """Configure structlog and the stdlib root logger once per process."""
    stream = stream or sys.stderr
    use_json = fmt == "json" or (fmt == "auto" and not stream.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.stdlib.ExtraAdder(),
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    )
    # Tracebacks become text before redaction, so a secret inside an exception is caught.
    final: list[Any] = [
        structlog.stdlib.ProcessorFormatter.remove_processors_meta,
        structlog.processors.format_exc_info,
    ]
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[*final, redact_secrets, renderer],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # httpx logs every request at INFO; our own events already say what matters.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)

    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def bind_task_context(**fields: Any) -> None:
    structlog.contextvars.bind_contextvars(**fields)


def clear_task_context() -> None:
    structlog.contextvars.clear_contextvars()


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """The logger for ``name``, typed as the wrapper class ``configure_logging`` sets
    (structlog returns a lazy proxy with its methods, and types it ``Any``)."""
    logger: structlog.stdlib.BoundLogger = structlog.stdlib.get_logger(name)
    return logger
