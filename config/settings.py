"""Runtime settings, read from the environment (and an optional ``.env`` file).

Every setting is documented in the README's configuration table. Secrets are held as
``SecretStr`` so they never show up in ``repr()``, logs or error messages.
"""

from __future__ import annotations

import os
import re
from collections.abc import Collection
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

POLAR_BASE_URLS = {
    "production": "https://api.polar.sh",
    "sandbox": "https://sandbox-api.polar.sh",
}
DEFAULT_RATE_LIMITS = {"production": "500/minute", "sandbox": "100/minute"}
# The ``Polar-Version`` values Polar serves (``server/polar/kit/versioning.py``); 2026-04 is
# what Polar assumes when the header is absent. Any other value is answered 404 on every
# call, which would pause the whole queue: refuse it at start-up instead.
SUPPORTED_POLAR_API_VERSIONS = ("2026-04", "2026-10")

APP_DIR_NAME = "seat-revoker"

# A request's lane: ``urgent`` (single requests: CLI revoke, Python producer, REST,
# webhooks) overtakes ``bulk`` (batch rows) in the broker and in the rate limiter.
Priority = Literal["urgent", "bulk"]
PRIORITIES: tuple[Priority, ...] = ("urgent", "bulk")


def data_dir() -> Path:
    """Where seat-revoker keeps its own files when nothing else is configured:
    ``$XDG_DATA_HOME/seat-revoker``, else ``~/.local/share/seat-revoker``. Absolute, so
    every process of one user finds the same store whatever its working directory."""
    xdg = os.environ.get("XDG_DATA_HOME", "").strip()
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share"
    return base / APP_DIR_NAME


def default_database_url() -> str:
    """The default record store: a SQLite file in ``data_dir()`` (never relative to the
    working directory: a producer started elsewhere would create a second store)."""
    return f"sqlite:///{data_dir() / 'seat-revoker.db'}"


def redacted_url(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``: safe for messages and logs.

    Works on any ``scheme://user:password@host/...`` string, parseable or not."""
    url = re.sub(r"(?i)([?&]password=)[^&#]*", r"\1***", url)
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
    except ValueError:
        netloc = ""
    if "@" in netloc:
        userinfo, _, hostinfo = netloc.rpartition("@")
        if ":" in userinfo:
            user = userinfo.split(":", 1)[0]
            return urlunsplit(parts._replace(netloc=f"{user}:***@{hostinfo}"))
        return url
    # Not parseable as a URL: mask anything that looks like user:password@.
    return re.sub(r"(://[^:/@\s]*:)[^@\s]*@", r"\1***@", url)


# Seconds per unit of a rate (``N/unit``, ``N/k units``, ``N per unit``). Polar's limits are
# per minute (per second in tests); the sandbox also takes hours and days.
RATE_UNITS = {
    "s": 1.0, "sec": 1.0, "second": 1.0,
    "m": 60.0, "min": 60.0, "minute": 60.0,
    "h": 3600.0, "hour": 3600.0,
    "d": 86400.0, "day": 86400.0,
}
WORKER_RATE_UNITS = ("s", "sec", "second", "m", "min", "minute")
_RATE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:/|per)\s*(\d+(?:\.\d+)?)?\s*([a-z]+)\s*$", re.I)


def parse_rate(
    text: str, *, units: Collection[str] = WORKER_RATE_UNITS,
    form: str = "'N/second' or 'N/minute'",
) -> tuple[float, float]:
    """``(count, period in seconds)`` of a rate such as ``100/minute``, ``2.5/s``,
    ``500 per minute``, ``5/10s`` or ``3/2 minutes``, in one of ``units``.

    The one parser of rates: ``POLAR_RATE_LIMIT`` (``RateLimit``), the sandbox's own
    limit and the benchmarks' ``--rate`` all read theirs here. ``form`` names what is
    expected in the error message."""
    match = _RATE_RE.match(text)
    unit = match.group(3).lower() if match else ""
    if unit not in units and len(unit) > 2 and unit.endswith("s"):
        unit = unit[:-1]  # plurals of whole names ("minutes"), never "ms"
    if match is None or unit not in units:
        raise ValueError(f"rate limit {text!r} is not of the form {form}")
    count, period = float(match.group(1)), float(match.group(2) or 1) * RATE_UNITS[unit]
    if period <= 0:
        raise ValueError(f"rate limit {text!r} is not of the form {form}")
    if count <= 0:
        raise ValueError(f"rate limit {text!r} must allow at least one request")
    return count, period


@dataclass(frozen=True)
class RateLimit:
    """``count`` requests per ``period`` seconds: ``POLAR_RATE_LIMIT``."""

    count: float
    period: float

    @property
    def per_second(self) -> float:
        return self.count / self.period

    @classmethod
    def parse(cls, text: str) -> RateLimit:
        """Parse ``N/second`` or ``N/minute`` (``s``, ``sec``, ``m``, ``min`` also accepted)."""
        count, period = parse_rate(text)
        return cls(count=count, period=period)

    def __str__(self) -> str:
        unit = {1.0: "second", 60.0: "minute"}.get(self.period)
        return f"{self.count:g}/{unit}" if unit else f"{self.count:g}/{self.period:g}s"


class Settings(BaseSettings):
    """All configuration of seat-revoker. Field names map to upper-case env variables."""

    model_config = SettingsConfigDict(
        env_file=".env", extra="ignore", frozen=True, hide_input_in_errors=True
    )

    polar_environment: Literal["sandbox", "production"] = "sandbox"
    polar_api_url: str | None = None
    polar_access_token: SecretStr | None = None
    polar_access_token_file: Path | None = None
    polar_api_version: str | None = None
    polar_rate_limit: str | None = None
    polar_connect_timeout: float = Field(5.0, gt=0)
    polar_read_timeout: float = Field(20.0, gt=0)
    # The whole of one Polar call, connect to last byte (the read timeout is per read).
    polar_total_timeout: float = Field(30.0, gt=0)

    redis_url: str = "redis://localhost:6379/0"
    # Default: a SQLite file in the user's data directory (``default_database_url``).
    database_url: str = Field(default_factory=default_database_url)
    # Prefix of every Redis key and of the Celery queue: lets several deployments (or test
    # runs) share one Redis without seeing each other's work.
    namespace: str = Field("seat-revoker", pattern=r"^[A-Za-z0-9_.:-]+$")

    # In-process retries (tenacity) for short transient faults.
    retry_inline_attempts: int = Field(4, ge=1)
    # A worker slot that sleeps revokes nothing: a wait longer than this gives the slot back
    # (a Celery retry with a countdown costs one more task run, tens of milliseconds). At
    # 40/s with 25 % 503s, sleeping inline up to 10 s made a 1,000-seat batch 2x slower.
    retry_inline_max_wait: float = Field(0.1, ge=0)
    # Celery-level retries for longer waits, bounded by a total budget per request.
    retry_max_attempts: int = Field(12, ge=1)
    retry_budget_seconds: float = Field(3600.0, gt=0)
    # A revoked_at earlier than this job's first DELETE (minus this allowance for a Polar
    # clock running behind ours) means someone else revoked the seat first.
    clock_skew_seconds: float = Field(0.0, ge=0)
    seat_lock_seconds: float = Field(15.0, gt=1)
    # The reconciler sends a request again when its lease runs out: a queued request whose
    # message may have been lost, a running one whose worker died, a retry that never came.
    queued_lease_seconds: float = Field(600.0, gt=0)
    # A running request's lease is renewed by its worker's heartbeat every few seconds, so
    # it only runs out when the worker is gone: then it is sent again.
    running_lease_seconds: float = Field(20.0, gt=0)
    scheduler_interval_seconds: float = Field(5.0, gt=0)
    # Every `seat-revoker worker` node runs the scheduler loop unless this is false (or the
    # node was started with --no-scheduler).
    worker_scheduler: bool = True
    # While the queue is paused (a token, scope or API version Polar refuses for every
    # request, see ``worker.jobs.fleetpause``), one request is let through this often as a probe.
    pause_probe_seconds: float = Field(30.0, gt=0)
    # Lets a request that names only a seat id, with no subscription/order this system
    # knows, be revoked without the occupant guard. Off: such a request is refused unless
    # the producer opts out of the guard for it (``guard: false``, ``--unguarded``).
    allow_unguarded: bool = False
    # A task whose request id is not in the store is retried for this long (a producer's
    # commit may still be landing, e.g. on a PostgreSQL replica) before it is reported
    # loudly as ``request.unknown`` and counted in ``seat_revoker_unknown_requests_total``.
    unknown_request_seconds: float = Field(120.0, ge=0)

    # The circuit breaker (``worker.decisions.breaker``): before any DELETE, a revocation
    # must fit in the rolling window's limits of its Polar customer and of the whole
    # organization, else it is held (state ``held``) and the scope's breaker opens.
    breaker_enabled: bool = True
    breaker_window_seconds: float = Field(3600.0, gt=0)
    # A customer may always lose this many seats per window, or this share of its active
    # seats, whichever is larger.
    breaker_customer_max: int = Field(5, ge=0)
    breaker_customer_share: float = Field(0.2, ge=0, le=1)
    breaker_org_max: int = Field(200, ge=0)
    # Four eyes on planned bulk work: a batch of more rows than this waits for a second
    # identity's approval (0: no approval needed).
    approval_min_rows: int = Field(50, ge=0)
    # Undo: a revoked seat can be re-assigned (``seat-revoker restore``) for this long.
    restore_window_days: float = Field(30.0, gt=0)
    # False: Polar assigns the restored seat ``pending`` and e-mails the person an
    # invitation to claim it; true: ``claimed`` at once (Polar's ``immediate_claim``).
    restore_immediate_claim: bool = False
    # The guard shares a seat list read between requests only while it is this young, and
    # never across a DELETE this fleet made in that subscription/order.
    guard_max_age_seconds: float = Field(1.5, ge=0)

    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: str = "INFO"

    @field_validator("polar_rate_limit")
    @classmethod
    def _check_rate_limit(cls, value: str | None) -> str | None:
        if value is not None:
            RateLimit.parse(value)
        return value

    @field_validator("polar_api_version")
    @classmethod
    def _check_api_version(cls, value: str | None) -> str | None:
        if value and not re.fullmatch(r"\d{4}-\d{2}", value):
            raise ValueError(f"POLAR_API_VERSION {value!r} is not of the form YYYY-MM")
        if value and value not in SUPPORTED_POLAR_API_VERSIONS:
            raise ValueError(
                f"POLAR_API_VERSION {value!r} is not a version Polar serves; use one of "
                f"{', '.join(SUPPORTED_POLAR_API_VERSIONS)} or leave it unset (Polar then "
                f"uses {SUPPORTED_POLAR_API_VERSIONS[0]})"
            )
        return value or None

    @model_validator(mode="after")
    def _one_token_source(self) -> Settings:
        if self.polar_access_token is not None and self.polar_access_token_file is not None:
            raise ValueError("set POLAR_ACCESS_TOKEN or POLAR_ACCESS_TOKEN_FILE, not both")
        return self

    @property
    def api_base_url(self) -> str:
        return (self.polar_api_url or POLAR_BASE_URLS[self.polar_environment]).rstrip("/")

    @property
    def rate_limit(self) -> RateLimit:
        return RateLimit.parse(
            self.polar_rate_limit or DEFAULT_RATE_LIMITS[self.polar_environment]
        )

    @cached_property
    def access_token(self) -> SecretStr:
        """The organization access token, from the variable or the file."""
        if self.polar_access_token is not None:
            token = self.polar_access_token.get_secret_value().strip()
        elif self.polar_access_token_file is not None:
            try:
                token = self.polar_access_token_file.read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ConfigError(
                    f"cannot read POLAR_ACCESS_TOKEN_FILE {self.polar_access_token_file}: "
                    f"{exc.strerror}"
                ) from None
        else:
            raise ConfigError("no Polar token: set POLAR_ACCESS_TOKEN or POLAR_ACCESS_TOKEN_FILE")
        if not token:
            raise ConfigError("the Polar access token is empty")
        return SecretStr(token)

    def redis_key(self, *parts: str) -> str:
        return ":".join((self.namespace, *parts))

    @property
    def queue_name(self) -> str:
        """The bulk lane's Celery queue (batch rows; the only queue before lanes)."""
        return self.namespace

    @property
    def urgent_queue_name(self) -> str:
        """The urgent lane's Celery queue (single requests: a termination)."""
        return f"{self.namespace}.urgent"

    @property
    def lane_queues(self) -> tuple[str, str]:
        """Every lane's queue, in the order workers consume them (urgent first)."""
        return (self.urgent_queue_name, self.queue_name)

    def lane_queue(self, priority: str) -> str:
        return self.urgent_queue_name if priority == "urgent" else self.queue_name


class ConfigError(RuntimeError):
    """A setting is missing or unusable; the message names it (never its secret value)."""


def load_settings(**overrides: object) -> Settings:
    return Settings(**overrides)  # type: ignore[arg-type]
