"""The naive baseline: a Celery task written the way a user would without seat-revoker.

Plain httpx (one ``httpx.Client`` per worker process, reused; NAIVE_HTTP=per-call makes it
call ``httpx.delete`` each time instead, which builds a client and an SSL context per call
and costs ~50 ms of CPU on this machine), ``raise_for_status()`` so a 429 (or any error) raises
``httpx.HTTPStatusError``, Celery ``autoretry_for=(httpx.HTTPError,)`` with
``retry_backoff=True`` (exponential backoff with full jitter, Celery's default
``max_retries=3`` unless NAIVE_MAX_RETRIES says otherwise), and Celery's per-task
``rate_limit``. Everything else is Celery's defaults (early acks, prefetch multiplier 4).

Celery's ``rate_limit`` is enforced by each worker *node* (a token bucket in the node's
consumer, shared by its pool processes; ``celery/worker/consumer/consumer.py``
``bucket_for_task``), not per process and not across nodes, so the naive user splits Polar's
20/s across 2 nodes as ``rate_limit="10/s"`` each.

Started by ``bench.naive_baseline`` as ``celery -A bench.naive_app worker``; configured by
environment: REDIS_URL, NAIVE_QUEUE (also the Redis key prefix), NAIVE_POLAR_URL,
NAIVE_POLAR_TOKEN, NAIVE_RATE_LIMIT, NAIVE_MAX_RETRIES, NAIVE_HTTP (client|per-call).
"""

from __future__ import annotations

import os
from typing import Any

import httpx
from celery import Celery

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
QUEUE = os.environ.get("NAIVE_QUEUE", "naive")
POLAR_URL = os.environ.get("NAIVE_POLAR_URL", "https://sandbox-api.polar.sh")
POLAR_TOKEN = os.environ.get("NAIVE_POLAR_TOKEN", "")
RATE_LIMIT = os.environ.get("NAIVE_RATE_LIMIT", "10/s")
MAX_RETRIES = int(os.environ.get("NAIVE_MAX_RETRIES", "3"))
HTTP_MODE = os.environ.get("NAIVE_HTTP", "client")
TASK_NAME = "naive.revoke_seat"

app = Celery("naive_bench", broker=REDIS_URL, backend=REDIS_URL)
app.conf.update(
    task_default_queue=QUEUE,
    # Only so the benchmark can find (and delete) its keys; no behavioural effect.
    broker_transport_options={"global_keyprefix": f"{QUEUE}:"},
    result_backend_transport_options={"global_keyprefix": f"{QUEUE}:"},
    worker_hijack_root_logger=True,
)


_client: httpx.Client | None = None


def _delete(url: str, headers: dict[str, str]) -> httpx.Response:
    global _client
    if HTTP_MODE == "per-call":
        return httpx.delete(url, headers=headers, timeout=10.0)
    if _client is None:  # created lazily, i.e. in the pool process after fork
        _client = httpx.Client(timeout=10.0)
    return _client.delete(url, headers=headers)


@app.task(  # type: ignore[untyped-decorator]
    name=TASK_NAME,
    autoretry_for=(httpx.HTTPError,),
    retry_backoff=True,
    retry_kwargs={"max_retries": MAX_RETRIES},
    rate_limit=RATE_LIMIT,
)
def revoke_seat(seat_id: str) -> dict[str, Any]:
    response = _delete(
        f"{POLAR_URL}/v1/customer-seats/{seat_id}",
        {"Authorization": f"Bearer {POLAR_TOKEN}"},
    )
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    return {"seat_id": seat_id, "status": body.get("status")}
