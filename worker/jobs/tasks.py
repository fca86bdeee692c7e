"""Celery wiring and the thin ``revoke_seat`` task: load, act, store (``worker.jobs.revocation``).

Shutdown (Celery 5.x semantics, see ``config/celery.py``): the first SIGTERM starts a warm
shutdown (no new tasks; running ones finish). A second SIGTERM escalates to what SIGQUIT
does: a soft shutdown — running tasks get ``worker_soft_shutdown_timeout`` to finish, then
they are cancelled and their messages requeued for another worker — followed by a cold
shutdown. Celery itself ignores a repeated SIGTERM, so a hung call would hold the node.
"""

from __future__ import annotations

import os
import random
import signal
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
    worker_shutting_down,
)
from redis.exceptions import RedisError

from config.celery import REVOKE_TASK, celery_config
from config.settings import Settings
from worker.connections import redis_client
from worker.jobs.nodes import NodeRegistry, run_heartbeat
from worker.jobs.outcome import RetryLater
from worker.jobs.revocation import run_revocation
from worker.jobs.runtime import get_runtime
from worker.store.binding import StoreMismatch
from worker.store.engine import StoreError
from worker.telemetry.logs import (
    bind_task_context,
    clear_task_context,
    configure_logging,
    get_logger,
)

log = get_logger("seat_revoker.tasks")

# Outcomes a task run reports to Celery as a failure (events, Flower, the result backend):
# an operator must act on them. The store holds the outcome before the task raises.
FAILURE_OUTCOMES = frozenset({"failed", "needs_review", "unknown"})


class RevocationFailed(Exception):
    """Raised by ``revoke_seat`` after storing an outcome an operator must act on, so
    Celery's own tooling (task events, Flower, ``celery inspect``) shows the task as
    FAILURE instead of SUCCESS. Expected (the task's ``throws``): logged without a
    traceback, and the message is acknowledged like any finished run — never retried by
    Celery; ``seat-revoker retry`` sends the request again."""


def raise_if_failed(result: dict[str, Any]) -> dict[str, Any]:
    """``result`` unchanged for an outcome that needs nobody; ``RevocationFailed`` naming
    the request and its outcome otherwise."""
    outcome = str(result.get("outcome"))
    if outcome in FAILURE_OUTCOMES:
        raise RevocationFailed(f"request {result.get('request_id')} ended {outcome} (seat "
                               f"{result.get('seat_id') or 'unknown'}); the record store "
                               "has the detail: seat-revoker status "
                               f"{str(result.get('request_id'))[:8]}")
    return result


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
    and the requests it holds, ``worker.jobs.nodes``) and, unless opted out, the scheduler loop
    (one pass at a time across the fleet). Both stop with the node."""
    import threading

    from worker.jobs.reconciler import run_scheduler

    stop = threading.Event()

    @worker_ready.connect(weak=False)
    def _start(sender: Any = None, **_: Any) -> None:
        node = node_id(getattr(sender, "hostname", None) or "unknown")
        registry = NodeRegistry(redis_client(settings.redis_url), settings.redis_key("nodes"))
        threading.Thread(target=run_heartbeat, args=(registry, node, stop),
                         name="node-heartbeat", daemon=True).start()
        if scheduler:
            threading.Thread(target=_scheduler_thread, args=(run_scheduler, settings, stop),
                             name="scheduler", daemon=True).start()
        log.info("node.started", node=node, scheduler=scheduler)

    @worker_shutdown.connect(weak=False)
    def _stop(**_: Any) -> None:
        stop.set()


def _scheduler_thread(run: Any, settings: Settings, stop: Any) -> None:
    try:
        run(settings, stop)
    except StoreError as exc:  # one line, not a thread traceback
        log.error("scheduler.not_started", error=str(exc))


_sigterms = 0


@worker_shutting_down.connect
def _second_sigterm_soft_shutdown(sig: str | None = None, **_: Any) -> None:
    """Celery ignores a SIGTERM during its warm shutdown: make the second one do what
    SIGQUIT does (soft shutdown, then cold: running tasks are requeued)."""
    global _sigterms
    if sig != "SIGTERM":
        return
    _sigterms += 1
    if _sigterms >= 2:
        os.kill(os.getpid(), signal.SIGQUIT)


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
        _registry = NodeRegistry(redis_client(settings.redis_url), settings.redis_key("nodes"))
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
    try:
        get_runtime()
    except StoreError as exc:  # the tasks say it again (and wait) until it is fixed
        log.error("runtime.store_refused", error=str(exc))


@task_prerun.connect
def _bind_context(task_id: str | None = None, **_: Any) -> None:
    clear_task_context()
    bind_task_context(task_id=task_id)


@task_postrun.connect
def _clear_context(**_: Any) -> None:
    clear_task_context()


@app.task(bind=True, name=REVOKE_TASK, max_retries=None, throws=(RevocationFailed,))
def revoke_seat(self: Task, request_id: str) -> dict[str, Any]:
    """Revoke the seat of one stored request. Arguments carry the request id only.

    Returns the outcome dict; an outcome that needs an operator (failed, needs_review, an
    unknown request) is stored first, then raised as ``RevocationFailed``.

    A store that cannot be used right now (read-only, locked, unreachable: the engine
    reconnects on the next try) or that is not the namespace's store keeps the message: the
    task is retried with a growing countdown, never dropped."""
    try:
        runtime = get_runtime()
        runtime.verify_store()
        result = run_revocation(runtime, request_id)
    except StoreMismatch as exc:
        log.error("store.mismatch", error=str(exc))
        raise self.retry(countdown=30 + random.random() * 5) from None
    except StoreError as exc:
        countdown = min(2.0 ** min(self.request.retries, 5), 30.0) + random.random()
        log.error("store.unavailable", error=str(exc), retry_in_s=round(countdown, 1))
        raise self.retry(countdown=countdown) from None
    if isinstance(result, RetryLater):  # the one place a run's "not yet" becomes a retry
        raise self.retry(countdown=max(result.countdown, 0.05))
    return raise_if_failed(result)
