"""Celery wiring and the thin ``revoke_seat`` task: load, act, store (``worker.revocation``)."""

from __future__ import annotations

from typing import Any

from celery import Celery, Task
from celery.signals import (
    setup_logging,
    task_postrun,
    task_prerun,
    worker_process_init,
    worker_ready,
    worker_shutdown,
)

from config.celery import REVOKE_TASK, celery_config
from config.settings import Settings
from worker.logs import bind_task_context, clear_task_context, configure_logging, get_logger
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


def start_scheduler_when_ready(settings: Settings) -> None:
    """Run the scheduler loop in a thread of this node's main process once the pool is up
    (``seat-revoker worker --with-scheduler``); it stops with the node."""
    import threading

    from worker.reconciler import run_scheduler

    stop = threading.Event()

    @worker_ready.connect(weak=False)
    def _start(**_: Any) -> None:
        threading.Thread(target=run_scheduler, args=(settings, stop), name="scheduler",
                         daemon=True).start()

    @worker_shutdown.connect(weak=False)
    def _stop(**_: Any) -> None:
        stop.set()


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
