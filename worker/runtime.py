"""What a worker process holds for its whole life: settings, store, Polar client, Redis.

Built lazily on first use in each process (after Celery's prefork), so every worker process
has its own pooled HTTP client and database connections.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

from redis import Redis

from config.settings import Settings
from worker.fleetpause import FleetPause
from worker.logs import get_logger, register_secret
from worker.metrics import MetricsRecorder
from worker.outcomes import RetryPolicy
from worker.polar import PolarClient, Throttle, build_http_client, token_bucket
from worker.ratelimit import SharedRateLimiter
from worker.seatlists import SeatLists
from worker.store import Store

log = get_logger("seat_revoker.runtime")


@dataclass
class Runtime:
    settings: Settings
    store: Store
    polar: PolarClient
    redis: Redis
    policy: RetryPolicy
    seat_lists: SeatLists
    metrics: MetricsRecorder
    pause: FleetPause
    # What a fleet-wide fault pauses: this token with this API version (a fixed setting is
    # a new scope, so restarted workers resume at once).
    pause_scope: str

    @classmethod
    def build(cls, settings: Settings, *, throttle: Throttle | None = None) -> Runtime:
        token = settings.access_token
        register_secret(token.get_secret_value())
        redis = Redis.from_url(settings.redis_url)
        metrics = MetricsRecorder(redis, settings.redis_key("metrics"))
        if throttle is None:
            throttle = SharedRateLimiter(
                redis, settings.redis_key("ratelimit"), settings.rate_limit,
                on_wait=metrics.ratelimit_wait,
            )
        http = build_http_client(
            settings.api_base_url,
            connect_timeout=settings.polar_connect_timeout,
            read_timeout=settings.polar_read_timeout,
            api_version=settings.polar_api_version,
        )
        polar = PolarClient(http, token, throttle, observer=metrics)
        pause = fleet_pause(settings, redis)
        scope = pause_scope(settings)
        for stale in pause.forget_others(scope):
            log.warning("pause.cleared", scope=stale,
                        reason="workers now run with another token or API version")
        return cls(
            settings=settings,
            # `seat-revoker worker` migrates once before forking; not again per process.
            store=Store.from_url(settings.database_url, migrate_schema=False),
            polar=polar,
            redis=redis,
            policy=policy_from(settings),
            seat_lists=SeatLists(redis, settings.redis_key("seatlist"), polar),
            metrics=metrics,
            pause=pause,
            pause_scope=scope,
        )

    def close(self) -> None:
        self.polar.close()
        self.store.engine.dispose()
        self.redis.close()


def fleet_pause(settings: Settings, redis: Redis) -> FleetPause:
    return FleetPause(redis, settings.redis_key("pause"),
                      probe_seconds=settings.pause_probe_seconds)


def pause_scope(settings: Settings) -> str:
    """Token (hashed, never the token) and API version: what one fleet-wide fault stops."""
    return f"{token_bucket(settings.access_token)}:{settings.polar_api_version or 'default'}"


def policy_from(settings: Settings) -> RetryPolicy:
    return RetryPolicy(
        inline_attempts=settings.retry_inline_attempts,
        inline_max_wait=settings.retry_inline_max_wait,
        max_attempts=settings.retry_max_attempts,
        budget_seconds=settings.retry_budget_seconds,
    )


_lock = threading.Lock()
_runtime: Runtime | None = None
_pid: int | None = None


def get_runtime() -> Runtime:
    """This process's runtime, built from the environment on first use."""
    global _runtime, _pid
    with _lock:
        if _runtime is None or _pid != os.getpid():
            _runtime = Runtime.build(Settings())
            _pid = os.getpid()
        return _runtime
