"""Table-driven tests of ``config.settings``: defaults, parsing and token handling."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from config.settings import SUPPORTED_POLAR_API_VERSIONS, ConfigError, RateLimit, Settings

TOKEN = "polar_oat_Zx9SecretTokenValue42"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove every variable a Settings field could read, whatever its case."""
    names = {name.upper() for name in Settings.model_fields}
    for var in list(os.environ):
        if var.upper() in names:
            monkeypatch.delenv(var)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)  # the default store's location


def load() -> Settings:
    return Settings(_env_file=None)  # type: ignore[call-arg]


def test_defaults() -> None:
    settings = load()
    assert settings.polar_environment == "sandbox"
    assert settings.api_base_url == "https://sandbox-api.polar.sh"
    assert settings.rate_limit == RateLimit(count=100.0, period=60.0)
    assert settings.redis_url == "redis://localhost:6379/0"
    assert settings.database_url == (
        f"sqlite:///{Path.home() / '.local/share/seat-revoker/seat-revoker.db'}")
    assert settings.namespace == "seat-revoker"
    assert settings.polar_api_version is None
    assert settings.polar_access_token is None
    assert settings.polar_access_token_file is None
    assert settings.pause_probe_seconds == 30.0
    assert settings.allow_unguarded is False
    assert settings.unknown_request_seconds == 120.0


def test_production_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLAR_ENVIRONMENT", "production")
    settings = load()
    assert settings.api_base_url == "https://api.polar.sh"
    assert settings.rate_limit == RateLimit(count=500.0, period=60.0)
    assert str(settings.rate_limit) == "500/minute"


@pytest.mark.parametrize(
    ("environment", "url", "expected"),
    [
        pytest.param(
            "sandbox",
            "http://127.0.0.1:8000/",
            "http://127.0.0.1:8000",
            id="an override loses its trailing slash",
        ),
        pytest.param(
            "production",
            "https://proxy.example.com/polar//",
            "https://proxy.example.com/polar",
            id="an override loses every trailing slash and beats production",
        ),
        pytest.param(
            "sandbox",
            "http://mock:9000",
            "http://mock:9000",
            id="an override without a slash is used as given",
        ),
    ],
)
def test_api_url_override(
    monkeypatch: pytest.MonkeyPatch, environment: str, url: str, expected: str
) -> None:
    monkeypatch.setenv("POLAR_ENVIRONMENT", environment)
    monkeypatch.setenv("POLAR_API_URL", url)
    assert load().api_base_url == expected


def test_other_overrides_are_read_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_URL", "redis://example:6380/3")
    monkeypatch.setenv("DATABASE_URL", "postgresql://db/seats")
    monkeypatch.setenv("POLAR_RATE_LIMIT", "5/second")
    settings = load()
    assert settings.redis_url == "redis://example:6380/3"
    assert settings.database_url == "postgresql://db/seats"
    assert settings.rate_limit.per_second == 5.0


def test_unknown_environment_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLAR_ENVIRONMENT", "staging")
    with pytest.raises(ValidationError, match="polar_environment"):
        load()


@pytest.mark.parametrize(
    ("text", "count", "period"),
    [
        pytest.param("100/minute", 100.0, 60.0, id="100 per minute"),
        pytest.param("500/min", 500.0, 60.0, id="min abbreviates minute"),
        pytest.param("60/m", 60.0, 60.0, id="m abbreviates minute"),
        pytest.param("10/second", 10.0, 1.0, id="10 per second"),
        pytest.param("10/sec", 10.0, 1.0, id="sec abbreviates second"),
        pytest.param("2.5/s", 2.5, 1.0, id="a fractional count per second"),
        pytest.param(" 7 / MINUTE ", 7.0, 60.0, id="spaces and upper case are accepted"),
    ],
)
def test_rate_limit_parse_valid(text: str, count: float, period: float) -> None:
    limit = RateLimit.parse(text)
    assert (limit.count, limit.period) == (count, period)
    assert limit.per_second == pytest.approx(count / period)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        pytest.param("100", "is not of the form 'N/second' or 'N/minute'", id="no unit"),
        pytest.param("100/hour", "is not of the form", id="an hourly unit"),
        pytest.param("/minute", "is not of the form", id="no count"),
        pytest.param("-5/minute", "is not of the form", id="a negative count"),
        pytest.param("ten/minute", "is not of the form", id="a count in words"),
        pytest.param("", "is not of the form", id="an empty string"),
        pytest.param("0/minute", "must allow at least one request", id="a zero count"),
        pytest.param("0.0/s", "must allow at least one request", id="a zero decimal count"),
    ],
)
def test_rate_limit_parse_invalid(text: str, problem: str) -> None:
    with pytest.raises(ValueError) as info:
        RateLimit.parse(text)
    assert problem in str(info.value)
    assert repr(text) in str(info.value)


def test_invalid_rate_limit_in_env_fails_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLAR_RATE_LIMIT", "100/hour")
    with pytest.raises(ValidationError) as info:
        load()
    assert "polar_rate_limit" in str(info.value)
    assert "'100/hour' is not of the form" in str(info.value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("2026-04", "2026-04", id="Polar's default version is accepted"),
        pytest.param("2026-10", "2026-10", id="the newer served version is accepted"),
        pytest.param("", None, id="an empty version means none"),
    ],
)
def test_api_version_valid(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: str | None
) -> None:
    monkeypatch.setenv("POLAR_API_VERSION", value)
    assert load().polar_api_version == expected


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("2026-4", id="a one-digit month is rejected"),
        pytest.param("2026/04", id="a slash is rejected"),
        pytest.param("v2026-04", id="a v prefix is rejected"),
        pytest.param("2026-04-01", id="a full date is rejected"),
        pytest.param("latest", id="a word is rejected"),
    ],
)
def test_api_version_invalid(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("POLAR_API_VERSION", value)
    with pytest.raises(ValidationError) as info:
        load()
    assert f"POLAR_API_VERSION {value!r} is not of the form YYYY-MM" in str(info.value)


def test_served_versions_are_polars() -> None:
    assert SUPPORTED_POLAR_API_VERSIONS == ("2026-04", "2026-10")


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("2025-12", id="an older version Polar no longer serves"),
        pytest.param("2026-05", id="a month between served versions"),
        pytest.param("2099-01", id="a future version"),
    ],
)
def test_unsupported_api_version_names_the_allowed_ones(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("POLAR_API_VERSION", value)
    with pytest.raises(ValidationError) as info:
        load()
    message = str(info.value)
    assert f"POLAR_API_VERSION {value!r} is not a version Polar serves" in message
    assert "2026-04, 2026-10" in message
    assert "polar_api_version" in message


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("0.5", 0.5, id="a fraction of a second"),
        pytest.param("120", 120.0, id="minutes"),
    ],
)
def test_pause_probe_seconds(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: float
) -> None:
    monkeypatch.setenv("PAUSE_PROBE_SECONDS", value)
    assert load().pause_probe_seconds == expected


@pytest.mark.parametrize("value", [pytest.param("0", id="zero"), pytest.param("-1", id="negative")])
def test_pause_probe_seconds_must_be_positive(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("PAUSE_PROBE_SECONDS", value)
    with pytest.raises(ValidationError, match="pause_probe_seconds"):
        load()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("true", True, id="true"),
        pytest.param("1", True, id="1"),
        pytest.param("false", False, id="false"),
        pytest.param("0", False, id="0"),
    ],
)
def test_allow_unguarded_from_env(
    monkeypatch: pytest.MonkeyPatch, value: str, expected: bool
) -> None:
    monkeypatch.setenv("ALLOW_UNGUARDED", value)
    assert load().allow_unguarded is expected


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(TOKEN, id="a plain token"),
        pytest.param(f"  {TOKEN}\n", id="a token with surrounding whitespace is stripped"),
    ],
)
def test_token_from_env(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("POLAR_ACCESS_TOKEN", raw)
    assert load().access_token.get_secret_value() == TOKEN


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(TOKEN, id="a file with the bare token"),
        pytest.param(f"{TOKEN}\n", id="a file with a trailing newline"),
    ],
)
def test_token_from_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, content: str) -> None:
    path = tmp_path / "token"
    path.write_text(content, encoding="utf-8")
    monkeypatch.setenv("POLAR_ACCESS_TOKEN_FILE", str(path))
    settings = load()
    assert settings.polar_access_token_file == path
    assert settings.access_token.get_secret_value() == TOKEN


def test_token_from_env_and_file_is_an_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "token"
    path.write_text(TOKEN, encoding="utf-8")
    monkeypatch.setenv("POLAR_ACCESS_TOKEN", TOKEN)
    monkeypatch.setenv("POLAR_ACCESS_TOKEN_FILE", str(path))
    with pytest.raises(ValidationError) as info:
        load()
    message = str(info.value)
    assert "set POLAR_ACCESS_TOKEN or POLAR_ACCESS_TOKEN_FILE, not both" in message
    assert TOKEN not in message
    assert TOKEN not in repr(info.value)


def test_missing_token_names_both_variables() -> None:
    settings = load()
    with pytest.raises(ConfigError) as info:
        _ = settings.access_token
    assert "POLAR_ACCESS_TOKEN" in str(info.value)
    assert "POLAR_ACCESS_TOKEN_FILE" in str(info.value)


@pytest.mark.parametrize(
    ("setup", "problem"),
    [
        pytest.param("missing-file", "cannot read POLAR_ACCESS_TOKEN_FILE", id="an absent file"),
        pytest.param("empty-file", "the Polar access token is empty", id="an empty file"),
        pytest.param("blank-env", "the Polar access token is empty", id="a blank variable"),
    ],
)
def test_unusable_token_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, setup: str, problem: str
) -> None:
    path = tmp_path / "token"
    if setup == "missing-file":
        monkeypatch.setenv("POLAR_ACCESS_TOKEN_FILE", str(path))
    elif setup == "empty-file":
        path.write_text("\n", encoding="utf-8")
        monkeypatch.setenv("POLAR_ACCESS_TOKEN_FILE", str(path))
    else:
        monkeypatch.setenv("POLAR_ACCESS_TOKEN", "   ")
    settings = load()
    with pytest.raises(ConfigError) as info:
        _ = settings.access_token
    assert problem in str(info.value)
    if setup == "missing-file":
        assert str(path) in str(info.value)


@pytest.mark.parametrize(
    "source",
    [pytest.param("env", id="a token from the variable"), pytest.param("file", id="from a file")],
)
def test_token_never_appears_in_repr(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, source: str
) -> None:
    if source == "env":
        monkeypatch.setenv("POLAR_ACCESS_TOKEN", TOKEN)
    else:
        path = tmp_path / "token"
        path.write_text(TOKEN, encoding="utf-8")
        monkeypatch.setenv("POLAR_ACCESS_TOKEN_FILE", str(path))
    settings = load()
    assert settings.access_token.get_secret_value() == TOKEN  # also fills the cache
    for text in (
        repr(settings),
        str(settings),
        repr(settings.access_token),
        str(settings.access_token),
        settings.model_dump_json(),
    ):
        assert TOKEN not in text


def test_token_never_appears_in_other_validation_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POLAR_ACCESS_TOKEN", TOKEN)
    monkeypatch.setenv("POLAR_RATE_LIMIT", "lots")
    monkeypatch.setenv("POLAR_API_VERSION", "latest")
    with pytest.raises(ValidationError) as info:
        load()
    assert info.value.error_count() == 2
    assert TOKEN not in str(info.value)


@pytest.mark.parametrize(
    ("parts", "key"),
    [
        pytest.param(("ratelimit",), "seat-revoker:ratelimit", id="one part"),
        pytest.param(("lock", "seat-1"), "seat-revoker:lock:seat-1", id="two parts"),
    ],
)
def test_redis_key_uses_the_namespace(parts: tuple[str, ...], key: str) -> None:
    settings = load()
    assert settings.redis_key(*parts) == key
    assert settings.queue_name == "seat-revoker"
