"""Settings of the HTTP API: webhook secrets and API keys (comma-separated env values).

API keys are hashed (SHA-256) as soon as they are read and only the hashes are kept; an
entry may also be given pre-hashed as ``sha256:<hex>`` so the plain key never has to sit in
the deployment's environment. Nothing here is ever logged.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

_HASH_PREFIX = "sha256:"
# ``name:key`` names who holds a key (shown on the dashboard, recorded with their actions).
_NAMED = re.compile(r"^(?P<name>[A-Za-z][A-Za-z0-9._-]{0,63}):(?P<key>.+)$")


def split_named(text: str) -> tuple[str | None, str]:
    """``ops-alice:<key>`` → (``ops-alice``, ``<key>``); ``sha256:<hex>`` and plain keys
    have no name. A name starts with a letter and holds letters, digits, ``.``, ``_``,
    ``-`` (at most 64)."""
    found = _NAMED.match(text)
    if found is None or text.startswith(_HASH_PREFIX):
        return None, text
    return found["name"], found["key"]


def hash_key(key: str) -> str:
    """Hex SHA-256 of an API key (the form keys are stored and compared in)."""
    return hashlib.sha256(key.encode()).hexdigest()


def _split(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, SecretStr):
        return _split(value.get_secret_value())
    return value


class ApiSettings(BaseSettings):
    """``WEBHOOK_SECRETS``, ``API_KEYS`` and the dashboard session knobs."""

    # hide_input_in_errors: a bad entry must not print the secrets beside it in the error.
    model_config = SettingsConfigDict(
        env_file=".env", extra="ignore", frozen=True, hide_input_in_errors=True
    )

    webhook_secrets: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    # Signs dashboard session cookies. Unset: a random secret generated once and shared by
    # every API process through Redis (never derived from the API keys or their hashes).
    session_secret: SecretStr | None = None
    session_max_age_seconds: int = 12 * 3600
    # Set on deployments behind TLS so the session cookie is never sent in clear.
    session_cookie_secure: bool = False
    # Failed logins / bad API keys per client address before it gets 429 for the rest of
    # the window.
    auth_failure_limit: int = 10
    auth_failure_window_seconds: int = 300

    @field_validator("session_secret")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("SESSION_SECRET must be at least 32 characters")
        return value

    @field_validator(
        "session_max_age_seconds", "auth_failure_limit", "auth_failure_window_seconds"
    )
    @classmethod
    def _positive(cls, value: int) -> int:
        if value <= 0:
            raise ValueError("must be positive")
        return value

    @field_validator("webhook_secrets", "api_keys", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        return _split(value)

    @field_validator("webhook_secrets")
    @classmethod
    def _whsec(cls, secrets: list[SecretStr]) -> list[SecretStr]:
        for position, secret in enumerate(secrets, 1):
            text = secret.get_secret_value()
            if not text.startswith("whsec_"):
                raise ValueError(f"WEBHOOK_SECRETS entry {position} does not start with whsec_")
            encoded = text.removeprefix("whsec_").rstrip("=")
            try:
                raw = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
            except (binascii.Error, ValueError):
                raise ValueError(
                    f"WEBHOOK_SECRETS entry {position} is not base64 after whsec_"
                ) from None
            if len(raw) < 16:
                raise ValueError(f"WEBHOOK_SECRETS entry {position} is shorter than 16 bytes")
        return secrets

    @field_validator("api_keys")
    @classmethod
    def _key_shape(cls, keys: list[SecretStr]) -> list[SecretStr]:
        for position, key in enumerate(keys, 1):
            _, text = split_named(key.get_secret_value())
            if text.startswith(_HASH_PREFIX):
                digest = text.removeprefix(_HASH_PREFIX)
                if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                    raise ValueError(f"API_KEYS entry {position}: sha256: needs 64 hex digits")
            elif len(text) < 16:
                raise ValueError(f"API_KEYS entry {position} is shorter than 16 characters")
        return keys

    @property
    def api_key_entries(self) -> tuple[tuple[str | None, str], ...]:
        """(name or ``None``, hex SHA-256) of each configured key."""
        out = []
        for key in self.api_keys:
            name, text = split_named(key.get_secret_value())
            digest = (text.removeprefix(_HASH_PREFIX) if text.startswith(_HASH_PREFIX)
                      else hash_key(text))
            out.append((name, digest))
        return tuple(out)

    @property
    def api_key_hashes(self) -> tuple[str, ...]:
        return tuple(digest for _, digest in self.api_key_entries)

    def key_name(self, key_hash: str) -> str:
        """Who holds the key with this hash: its configured name, else ``key <8 hex>``
        (never the key)."""
        for name, digest in self.api_key_entries:
            if name and hmac.compare_digest(digest, key_hash):
                return name
        return f"key {key_hash[:8]}"

    def match_api_key(self, presented: str) -> str | None:
        """The stored hash ``presented`` matches, or ``None``; every hash is compared in
        constant time so the position of a match does not leak through timing."""
        digest = hash_key(presented)
        found: str | None = None
        for stored in self.api_key_hashes:
            if hmac.compare_digest(stored, digest):
                found = stored
        return found
