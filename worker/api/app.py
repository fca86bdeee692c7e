"""The FastAPI application: ``create_app()`` wires settings, store, producer and routers."""

from __future__ import annotations

import platform
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from prometheus_client import CollectorRegistry, Gauge
from scim2_models import SCIMException

from config.settings import Settings, load_settings
from worker.api.access import AccessLog, ApiMetrics
from worker.api.context import ApiContext
from worker.api.errors import UnhandledErrors, not_sent, validation_failed
from worker.api.metrics import MetricsCollector
from worker.api.routers import (
    batches,
    breaker,
    dashboard,
    dashboard_breaker,
    dashboard_views,
    events,
    ops,
    people,
    revocations,
    scim,
)
from worker.api.scim_protocol import scim_error
from worker.api.security import SecurityHeaders, add_docs
from worker.api.settings import ApiSettings
from worker.decisions.outcomes import State
from worker.intake.producer import NotSent, Producer
from worker.intake.webhooks import WebhookVerifier
from worker.store.queries import oldest_change_by_state
from worker.store.records import Store
from worker.telemetry.logs import get_logger
from worker.telemetry.metrics import lane_queue_keys
from worker.version import build_revision, package_version

log = get_logger("seat_revoker.api")

DESCRIPTION = """
Offboarding webhooks in, seat revocations out.

* `POST /v1/events/offboarding`: Standard Webhooks signed events (secrets `WEBHOOK_SECRETS`).
* `/v1/revocations`, `/v1/people` (a person: every seat in a scope), `/v1/batches`: REST
  for producers and dashboards (`Authorization: Bearer <API key>`, keys from `API_KEYS`).
* `/scim/v2`: SCIM 2.0 for identity providers (one tenant per Polar customer, token from
  `seat-revoker scim-tenant create`): deactivating or deleting a user offboards the person.
* `/dashboard`: the ops page; `/metrics`, `/healthz`, `/readyz`: operations (`/readyz`
  answers 503 with the reasons while the queue is paused).
"""


def create_app(
    settings: Settings | None = None,
    *,
    store: Store | None = None,
    producer: Producer | None = None,
    api_settings: ApiSettings | None = None,
) -> FastAPI:
    """The API over ``settings`` (default: from the environment).

    ``store`` and ``producer`` may be passed to share them (tests, embedding); the store is
    migrated when the app creates it.
    """
    settings = settings or (producer.settings if producer else load_settings())
    api = api_settings or ApiSettings()
    store = store or (producer.store if producer else Store.from_url(settings.database_url))
    context = ApiContext(
        settings=settings,
        api=api,
        store=store,
        verifier=WebhookVerifier([s.get_secret_value() for s in api.webhook_secrets]),
        _producer=producer,
    )
    if not api.api_keys:
        log.warning("api.no_api_keys", hint="set API_KEYS; REST and dashboard refuse everyone")
    if not api.webhook_secrets:
        log.warning("api.no_webhook_secrets", hint="set WEBHOOK_SECRETS to accept webhooks")

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        context.close()

    app = FastAPI(
        title="seat-revoker",
        version=package_version(),
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.context = context
    registry = CollectorRegistry()
    # Outermost last: headers go on every answer, the 500 of an unhandled error included;
    # the access log and request counters see the final status of every answer.
    app.add_middleware(UnhandledErrors)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(AccessLog, metrics=ApiMetrics(registry))
    app.add_exception_handler(RequestValidationError, validation_failed)
    app.add_exception_handler(NotSent, not_sent)
    app.add_exception_handler(SCIMException, scim_error)
    add_docs(app, title="seat-revoker")
    registry.register(
        MetricsCollector(
            context.redis,
            settings.redis_key("metrics"),
            count_by_state=store.count_by_state,
            queue_keys=lane_queue_keys(settings),
            unacked_key=settings.redis_key("unacked"),
            pause_prefix=settings.redis_key("pause"),
            oldest_by_state=lambda: oldest_change_by_state(
                store, [State.QUEUED, State.RUNNING, State.RETRYING]),
            nodes_prefix=settings.redis_key("nodes"),
            scheduler_key=settings.redis_key("scheduler", "heartbeat"),
            breaker=context.breaker,
        )
    )
    build = Gauge("seat_revoker_build_info", "Version and build of the API serving "
                  "these metrics (value 1)", ["version", "revision", "python"],
                  registry=registry)
    build.labels(package_version(), build_revision(), platform.python_version()).set(1)
    app.state.metrics_registry = registry
    for module in (events, revocations, people, batches, breaker, ops, dashboard,
                   dashboard_views, dashboard_breaker, scim):
        app.include_router(module.router)
    return app
