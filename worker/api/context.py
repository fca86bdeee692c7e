"""What every route needs, built once per app: settings, store, producer, Redis, verifier."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from fastapi import Request
from redis import Redis

from config.settings import Settings
from worker.api.settings import ApiSettings
from worker.connections import redis_client
from worker.intake.producer import Producer
from worker.intake.webhooks import WebhookVerifier
from worker.jobs.breaker import Breaker
from worker.jobs.breakerdesk import BreakerDesk
from worker.jobs.fleetpause import FleetPause
from worker.store.records import Store


@dataclass
class ApiContext:
    settings: Settings
    api: ApiSettings
    store: Store
    verifier: WebhookVerifier
    _producer: Producer | None = None
    _redis: Redis | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def producer(self) -> Producer:
        """Created on first use: its broker connection is only needed to enqueue."""
        with self._lock:
            if self._producer is None:
                self._producer = Producer(self.settings, store=self.store)
            return self._producer

    @property
    def redis(self) -> Redis:
        with self._lock:
            if self._redis is None:
                self._redis = redis_client(self.settings.redis_url, timeout=2, connect_timeout=2)
            return self._redis

    @property
    def pause(self) -> FleetPause:
        """The queue's pause switch, as the workers build it (reads and resumes only)."""
        return FleetPause(
            self.redis,
            self.settings.redis_key("pause"),
            probe_seconds=self.settings.pause_probe_seconds,
        )

    @property
    def breaker(self) -> Breaker:
        return Breaker.from_settings(self.settings, self.redis)

    @property
    def desk(self) -> BreakerDesk:
        """Release and reject at the breaker (the same desk as the CLI's)."""
        return BreakerDesk(self.producer, self.breaker)

    def close(self) -> None:
        if self._redis is not None:
            self._redis.close()


def get_context(request: Request) -> ApiContext:
    context: ApiContext = request.app.state.context
    return context
