"""Celery wiring and the thin ``revoke_seat`` task: load, act, store (``worker.revocation``)."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery, Task
from celery.signals import (
    setup_logging,
    task_postrun,
    task_prerun,
    task_received,
    worker_process_init,
    worker_ready,
    worker_shutdown,
)
from redis import Redis
from redis.exceptions import RedisError

from config.celery import REVOKE_TASK, celery_config
from config.settings import Settings
from worker.logs import bind_task_context, clear_task_context, configure_logging, get_logger
from worker.nodes import NodeRegistry, run_heartbeat
from worker.revocation import Deferred, run_revocation
from worker.runtime import get_runtime

log = get_logger("seat_revoker.tasks")


def create_app(settings: Settings | None = None) -> Celery:
    settings = settings or Settings()
    celery = Celery("seat_revoker")
    celery.config_from_object(celery_config(settings))
    return celery


app = create_app()


@setup_logging.connect
def _route_celery_logging(**_: Any) -> None:
    """Celery's own loggers go through the structlog pipeline."""
    settings = Settings()
    configure_logging(settings.log_level, settings.log_format)


def start_node_services(settings: Settings, *, scheduler: bool) -> None:
    """Once the pool is up, run in this node's main process: the node heartbeat (liveness
    and the requests it holds, ``worker.nodes``) and, unless opted out, the scheduler loop
    (one pass at a time across the fleet). Both stop with the node."""
    import threading

    from worker.reconciler import run_scheduler

    stop = threading.Event()

    @worker_ready.connect(weak=False)
    def _start(sender: Any = None, **_: Any) -> None:
        node = node_id(getattr(sender, "hostname", None) or "unknown")
        registry = NodeRegistry(Redis.from_url(settings.redis_url), settings.redis_key("nodes"))
        threading.Thread(target=run_heartbeat, args=(registry, node, stop),
                         name="node-heartbeat", daemon=True).start()
        if scheduler:
            threading.Thread(target=run_scheduler, args=(settings, stop), name="scheduler",
                             daemon=True).start()
        log.info("node.started", node=node, scheduler=scheduler)

    @worker_shutdown.connect(weak=False)
    def _stop(**_: Any) -> None:
        stop.set()


_registry: NodeRegistry | None = None
# The node's main process id, set at import there and inherited by the forked pool
# processes: with the Celery hostname it names this node even when several nodes on one
# machine share a hostname.
_MAIN_PID = os.getpid()


def node_id(hostname: object) -> str:
    return f"{hostname}|{_MAIN_PID}"


def _nodes() -> NodeRegistry:
    global _registry
    if _registry is None:
        settings = Settings()
        _registry = NodeRegistry(Redis.from_url(settings.redis_url), settings.redis_key("nodes"))
    return _registry


@task_received.connect
def _node_holds(request: Any = None, **_: Any) -> None:
    """The node took a message (to run now, or to hold until its countdown)."""
    if request is not None and getattr(request, "name", None) == REVOKE_TASK:
        try:
            _nodes().hold(node_id(request.hostname), str(request.id))
        except RedisError as exc:
            log.warning("node.hold_failed", error=type(exc).__name__)


@task_postrun.connect
def _node_released(task: Any = None, task_id: str | None = None, **_: Any) -> None:
    hostname = getattr(getattr(task, "request", None), "hostname", None)
    if task_id and hostname:
        try:
            _nodes().release(node_id(hostname), task_id)
        except RedisError as exc:
            log.warning("node.release_failed", error=type(exc).__name__)


@worker_process_init.connect
def _warm_runtime(**_: Any) -> None:
    """Build each pool process's clients before its first task, not during it."""
    get_runtime()


@task_prerun.connect
def _bind_context(task_id: str | None = None, **_: Any) -> None:
    clear_task_context()
    bind_task_context(task_id=task_id)


@task_postrun.connect
def _clear_context(**_: Any) -> None:
    clear_task_context()


@app.task(bind=True, name=REVOKE_TASK, max_retries=None)
def revoke_seat(self: Task, request_id: str) -> dict[str, Any]:
    """Revoke the seat of one stored request. Arguments carry the request id only."""
    try:
        return run_revocation(get_runtime(), request_id)
    except Deferred as deferred:
        raise self.retry(countdown=max(deferred.countdown, 0.05)) from None
