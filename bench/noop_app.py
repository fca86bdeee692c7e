"""A Celery app with seat-revoker's exact Celery configuration and one no-op task.

``config.celery.celery_config(Settings())``: same broker, namespace prefix, queue, late
acks, prefetch of one, result backend and task events as the real worker. Started by
``bench.overhead`` as ``celery -A bench.noop_app worker``; the difference between this
and ``seat-revoker worker`` on the same settings is the cost of the revocation itself.
"""

from __future__ import annotations

from celery import Celery

from config.celery import celery_config
from config.settings import Settings

NOOP_TASK = "bench.noop"

app = Celery("seat_revoker_noop_bench")
app.config_from_object(celery_config(Settings()))


@app.task(name=NOOP_TASK)  # type: ignore[untyped-decorator]
def noop(request_id: str) -> dict[str, str]:
    return {"request_id": request_id, "outcome": "noop"}
