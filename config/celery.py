"""Celery configuration, derived from ``Settings``.

Delivery is at-least-once with idempotent tasks: late acks, requeue when a worker process
dies, prefetch of one message per process, JSON only.
"""

from __future__ import annotations

from typing import Any

from config.settings import Settings

REVOKE_TASK = "seat_revoker.revoke_seat"
# Longer than any task time limit or retry countdown, so Redis never hands a message that
# is still being worked on to a second worker.
VISIBILITY_TIMEOUT = 2 * 3600
TASK_SOFT_TIME_LIMIT = 300
TASK_TIME_LIMIT = 360


def celery_config(settings: Settings) -> dict[str, Any]:
    transport = {
        "visibility_timeout": VISIBILITY_TIMEOUT,
        "global_keyprefix": f"{settings.namespace}:",
    }
    # Workers consume the urgent lane first: kombu's Redis transport BRPOPs the queues in
    # the order given (``priority``; its default ``round_robin`` would rotate them), so a
    # bulk message is taken only while no urgent one waits. Urgent traffic is single
    # requests, so bulk work is delayed by them, never starved for good.
    broker_transport = {**transport, "queue_order_strategy": "priority"}
    return {
        "broker_url": settings.redis_url,
        "result_backend": settings.redis_url,
        "broker_transport_options": broker_transport,
        "result_backend_transport_options": transport,
        "broker_connection_retry_on_startup": True,
        # Redis errors on a live connection — above all "OOM command not allowed" from a
        # full Redis with noeviction, which even refuses acks — restart the consumer (with
        # backoff) instead of ending the worker as an "unrecoverable error".
        "broker_channel_error_retry": True,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "result_expires": 24 * 3600,
        "task_default_queue": settings.queue_name,
        "task_create_missing_queues": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_acks_on_failure_or_timeout": True,
        "worker_prefetch_multiplier": 1,
        # Shutdown (Celery 5.5+): SIGTERM is a warm shutdown — no new tasks, running ones
        # finish (bounded only by the task time limits below); Celery ignores a repeated
        # SIGTERM, so ``worker.jobs.tasks`` turns a second SIGTERM into SIGQUIT. SIGQUIT (or a
        # second Ctrl+C) is a cold shutdown preceded by this soft shutdown: running tasks
        # get this long to finish, then they are cancelled and, being acks_late and not yet
        # acknowledged, their messages go back to the queue for another worker.
        "worker_soft_shutdown_timeout": 10.0,
        # Go through the soft shutdown even when no task is running (the node may still hold
        # messages waiting for a retry countdown, which a cold shutdown gives back).
        "worker_enable_soft_shutdown_on_idle": True,
        "task_soft_time_limit": TASK_SOFT_TIME_LIMIT,
        "task_time_limit": TASK_TIME_LIMIT,
        "task_track_started": True,
        "task_send_sent_event": True,
        "worker_send_task_events": True,
        "worker_hijack_root_logger": False,
        "worker_redirect_stdouts": False,
        "enable_utc": True,
        "timezone": "UTC",
    }
