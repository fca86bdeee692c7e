"""The one place clients are built: Redis connections, the shared rate limiter and the
Polar client (as arq builds every Redis pool in one ``create_pool``).

A caller states only what differs for it — a Redis timeout, a longer limiter hold — so
keys, credentials, transports and Polar's timeouts are the same in every process.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from redis import Redis

from config.settings import RateLimit, Settings
from worker.polar.client import PolarClient
from worker.polar.ratelimit import SharedRateLimiter
from worker.polar.transport import Observer, Throttle, build_http_client


def redis_client(
    url: str, *, timeout: float | None = None, connect_timeout: float | None = None,
    decode_responses: bool = False,
) -> Redis:
    """A Redis client for ``url``. ``timeout`` bounds each command, ``connect_timeout``
    the connection; one left out keeps redis-py's default."""
    options: dict[str, Any] = {}
    if timeout is not None:
        options["socket_timeout"] = timeout
    if connect_timeout is not None:
        options["socket_connect_timeout"] = connect_timeout
    if decode_responses:
        options["decode_responses"] = True
    return Redis.from_url(url, **options)


def rate_limiter(
    settings: Settings, redis: Redis, *, limit: RateLimit | None = None,
    max_hold: float = 2.0, on_wait: Callable[[float], None] | None = None,
) -> SharedRateLimiter:
    """The namespace's shared Polar rate limiter (``POLAR_RATE_LIMIT`` unless ``limit``)."""
    return SharedRateLimiter(redis, settings.redis_key("ratelimit"),
                             limit or settings.rate_limit, max_hold=max_hold, on_wait=on_wait)


def polar_client(
    settings: Settings, *, throttle: Throttle | None = None, observer: Observer | None = None,
    transport: httpx.BaseTransport | None = None,
) -> PolarClient:
    """The Polar client of ``settings`` (URL, token, API version, timeouts), throttled by
    ``throttle`` and reported to ``observer``; ``transport`` replaces the network."""
    http = build_http_client(
        settings.api_base_url,
        connect_timeout=settings.polar_connect_timeout,
        read_timeout=settings.polar_read_timeout,
        api_version=settings.polar_api_version,
        transport=transport,
        throttle=throttle,
        observer=observer,
        total_timeout=settings.polar_total_timeout,
    )
    return PolarClient(http, settings.access_token)
