"""One store per namespace: producers and workers that opened different stores refuse.

Every store has a random id (table ``store_identity``). ``bind_store`` records it in Redis
under the namespace, so a producer or worker that opened another store (another
``DATABASE_URL``, or a relative SQLite path run from another directory) refuses to work
instead of recording requests no worker will ever see.
"""

from __future__ import annotations

import json
import os
import socket
from typing import Any

from redis import Redis

from config.settings import Settings, redacted_url
from worker.connections import redis_client
from worker.store.engine import StoreError
from worker.store.models import utcnow
from worker.store.records import Store


class StoreMismatch(StoreError):
    """This process opened another store than the one the namespace is bound to."""


def binding_key(settings: Settings) -> str:
    """The Redis key naming the store a namespace's producers and workers share."""
    return settings.redis_key("store")


def bind_store(store: Store, redis: Redis, settings: Settings, *, role: str) -> None:
    """Bind the namespace to this store, or check that it is bound to it.

    The first process records the store's id in Redis (``SET NX``); every producer and
    worker after it compares. Raises ``StoreMismatch`` naming both stores when they differ;
    ``RedisError`` when Redis cannot be asked (callers check again later)."""
    key = binding_key(settings)
    mine = store.store_id()
    claim = json.dumps({
        "store_id": mine, "database_url": store.url,
        "by": f"{role} on {socket.gethostname()} (pid {os.getpid()})",
        "at": utcnow().isoformat(timespec="seconds"),
    })
    for _ in range(3):  # the key may vanish in between (Redis flushed): claim it again
        redis.set(key, claim, nx=True)
        raw = redis.get(key)
        if raw is not None:
            break
    else:
        return
    try:
        theirs = json.loads(raw)
        their_id = str(theirs["store_id"])
    except (ValueError, TypeError, KeyError):
        redis.set(key, claim)  # unreadable (not ours): take it
        return
    if their_id != mine:
        raise StoreMismatch(mismatch_message(settings, key, store.url, mine, theirs))


def mismatch_message(settings: Settings, key: str, url: str, store_id: str,
                     theirs: dict[str, Any]) -> str:
    """Why a process refuses to work on its store (pure)."""
    return (
        f"this process's store is {url} (store id {store_id[:8]}), but namespace "
        f"{settings.namespace!r} on Redis {redacted_url(settings.redis_url)} belongs to the "
        f"store {redacted_url(str(theirs.get('database_url', '?')))} (store id "
        f"{str(theirs.get('store_id', '?'))[:8]}, bound by {theirs.get('by', '?')} at "
        f"{theirs.get('at', '?')}). Producers and workers must share one store: set the "
        "same DATABASE_URL for all of them (an absolute path for SQLite), or give this "
        f"deployment its own NAMESPACE. If the store was replaced on purpose, delete the "
        f"Redis key {key!r} once every old process has stopped"
    )


def check_binding(store: Store, settings: Settings, *, role: str) -> bool:
    """``bind_store`` with a short-lived Redis connection, for a process about to start:
    True once checked, False when Redis does not answer (the process checks again later);
    ``StoreMismatch`` when the namespace belongs to another store."""
    from redis.exceptions import RedisError

    redis = redis_client(settings.redis_url, connect_timeout=5, timeout=10)
    try:
        bind_store(store, redis, settings, role=role)
        return True
    except RedisError:
        return False
    finally:
        redis.close()
