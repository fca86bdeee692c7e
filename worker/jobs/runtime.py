"""What a worker process holds for its whole life: settings, store, Polar client, Redis.

Built lazily on first use in each process (after Celery's prefork), so every worker process
has its own pooled HTTP client and database connections.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field

from redis import Redis
from redis.exceptions import RedisError

from config.settings import Settings
from worker.connections import polar_client, rate_limiter, redis_client
from worker.decisions.outcomes import RetryPolicy
from worker.intake.portal_tokens import discard_portal_token
from worker.jobs.fleetpause import FleetPause
from worker.jobs.seatlists import SeatLists
from worker.polar.auth import token_bucket
from worker.polar.client import PolarClient
from worker.polar.transport import Throttle
from worker.store.binding import StoreMismatch, bind_store
from worker.store.engine import StoreUnavailable
from worker.store.records import Store
from worker.telemetry.logs import get_logger, register_secret
from worker.telemetry.metrics import MetricsRecorder

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
    # Whether this process checked that the namespace is bound to its store.
    store_verified: bool = field(default=False)

    @classmethod
    def build(cls, settings: Settings, *, throttle: Throttle | None = None) -> Runtime:
        token = settings.access_token
        register_secret(token.get_secret_value())
        redis = redis_client(settings.redis_url)
        metrics = MetricsRecorder(redis, settings.redis_key("metrics"))
        if throttle is None:
            throttle = rate_limiter(settings, redis, on_wait=metrics.ratelimit_wait)
        polar = polar_client(settings, throttle=throttle, observer=metrics)
        pause = fleet_pause(settings, redis)
        scope = pause_scope(settings)
        for stale in pause.forget_others(scope):
            log.warning("pause.cleared", scope=stale,
                        reason="workers now run with another token or API version")
        runtime = cls(
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
        try:
            runtime.verify_store()
        except (RedisError, StoreUnavailable) as exc:  # checked again before each task
            log.warning("store.binding_unchecked", error=str(exc) or type(exc).__name__)
        except StoreMismatch:
            runtime.close()
            raise
        return runtime

    def verify_store(self) -> None:
        """Check once per process that the namespace's producers use this worker's store:
        ``StoreMismatch`` names both stores otherwise."""
        if not self.store_verified:
            bind_store(self.store, self.redis, self.settings, role="worker")
            self.store_verified = True

    def forget_portal_token(self, ref: str | None) -> None:
        """Delete a finished request's customer session token from Redis (it would
        otherwise stay there until its expiry)."""
        if not ref:
            return
        try:
            discard_portal_token(self.redis, self.settings.redis_key("portal-token"), ref)
        except RedisError as exc:  # it still expires on its own
            log.warning("portal_token.not_deleted", error=type(exc).__name__)

    def unknown_request_wait(self, request_id: str) -> float | None:
        """A task names a request the store does not have. Seconds to wait before trying
        again while ``UNKNOWN_REQUEST_SECONDS`` have not passed since it was first seen
        (its producer's commit may still be landing); ``None`` once they have: then it is
        logged as ``request.unknown`` (an error) and counted, and the task ends."""
        key = self.settings.redis_key("unknown", request_id)
        now = time.time()
        patience = self.settings.unknown_request_seconds
        self.redis.set(key, repr(now), nx=True, ex=int(patience) + 3600)
        raw = self.redis.get(key)
        first = float(raw) if raw is not None else now
        waited = max(now - first, 0.0)
        if waited < patience:
            wait = min(max(1.0, waited), 30.0, max(patience - waited, 0.1))
            log.warning("request.not_found_yet", request_id=request_id,
                        waited_s=round(waited, 1), retry_in_s=round(wait, 1))
            return wait
        self.redis.delete(key)
        self.metrics.unknown_request()
        log.error("request.unknown", request_id=request_id, waited_s=round(waited, 1),
                  database=self.store.url,
                  hint="a producer recorded this request in another store: give producers "
                       "and workers the same DATABASE_URL (seat-revoker refuses to start on "
                       "a mismatch it can see); the message is dropped")
        return None

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
