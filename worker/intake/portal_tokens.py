"""Customer-session tokens for portal-mode requests.

They are secrets, so they never go into the database or a task argument: the producer
keeps each in Redis under a random reference with an expiry, and the record stores only
that reference.
"""

from __future__ import annotations

import secrets

from pydantic import SecretStr
from redis import Redis

DEFAULT_TTL_SECONDS = 24 * 3600


def stash_portal_token(
    redis: Redis, key_prefix: str, token: SecretStr, ttl: int = DEFAULT_TTL_SECONDS
) -> str:
    ref = secrets.token_hex(16)
    redis.set(f"{key_prefix}:{ref}", token.get_secret_value(), ex=ttl)
    return ref


def load_portal_token(redis: Redis, key_prefix: str, ref: str) -> SecretStr | None:
    value = redis.get(f"{key_prefix}:{ref}")
    if value is None:
        return None
    return SecretStr(value.decode() if isinstance(value, bytes) else str(value))


def discard_portal_token(redis: Redis, key_prefix: str, ref: str | None) -> bool:
    """Delete a token once its request is finished (it is of no use after that); True if
    one was deleted."""
    if not ref:
        return False
    return bool(redis.delete(f"{key_prefix}:{ref}"))
