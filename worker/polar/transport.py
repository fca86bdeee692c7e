"""How a Polar request travels: httpx transports wrapping the real one, and the pooled
client built on them (httpx's own split: ``_transports/base.py``).

``build_http_client`` stacks, outside in::

    ThrottledTransport   the shared rate limit: acquire a slot, report a 429's retry-after
    TimedTransport       metrics (status, latency to the last byte) and the total deadline
    HTTPTransport        the network (or a test's MockTransport)

so ``PolarClient`` only chooses credentials and maps statuses to errors. Throttling waits
happen before the clock starts, as they always did: latency is Polar's, not our queue's.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from typing import Protocol

import httpx
from httpx._utils import get_environment_proxies

from worker.polar.auth import BUCKET
from worker.polar.errors import PolarTransportError

USER_AGENT = "seat-revoker/0.1"


class Throttle(Protocol):
    """Shared rate-limit gate (see ``worker.polar.ratelimit``).

    ``acquire`` before every request; on a 429, ``penalize`` with its ``retry-after`` in the
    same thread, before the next ``acquire`` for that bucket: the limiter then knows which
    request was refused (where it stood in Polar's window) and adapts the fleet's rate.
    """

    def acquire(self, bucket: str) -> None: ...
    def penalize(self, bucket: str, seconds: float) -> None: ...


class Observer(Protocol):
    """Told about every Polar call (metrics): status ``None`` means no HTTP answer."""

    def polar_request(self, method: str, status: int | None, seconds: float) -> None: ...


def parse_retry_after(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return max(0.0, seconds) if math.isfinite(seconds) else None


class ThrottledTransport(httpx.BaseTransport):
    """Spends the request's budget (named by ``BearerAuth``) before sending it, and tells
    the throttle about a 429, in the caller's thread (the limiter's urgent lane is a
    ContextVar of that thread). ``ThrottleWait`` from ``acquire`` propagates unchanged."""

    def __init__(self, inner: httpx.BaseTransport, throttle: Throttle) -> None:
        self._inner = inner
        self._throttle = throttle

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        bucket = request.extensions.get(BUCKET)
        if bucket is None:  # no credential, no budget to spend
            return self._inner.handle_request(request)
        self._throttle.acquire(bucket)
        response = self._inner.handle_request(request)
        if response.status_code == 429:
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            self._throttle.penalize(bucket, retry_after if retry_after is not None else 1.0)
        return response

    def close(self) -> None:
        self._inner.close()


class TimedTransport(httpx.BaseTransport):
    """Reports each call to ``observer`` once its body is read (status ``None`` when no
    complete answer came), and cuts a body still arriving ``total_timeout`` seconds after
    the request was sent: httpx's read timeout is per read, so a response dripping one
    byte a second would otherwise hold the worker until the task's time limit."""

    def __init__(
        self, inner: httpx.BaseTransport, observer: Observer | None = None,
        total_timeout: float | None = None,
    ) -> None:
        self._inner = inner
        self._observer = observer
        self._total_timeout = total_timeout

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        started = time.perf_counter()
        limit = self._total_timeout
        deadline = None if limit is None else time.monotonic() + limit

        def report(status: int | None) -> None:
            if self._observer is not None:
                self._observer.polar_request(request.method, status,
                                             time.perf_counter() - started)

        try:
            response = self._inner.handle_request(request)
        except httpx.TransportError:
            report(None)
            raise
        assert isinstance(response.stream, httpx.SyncByteStream)
        return httpx.Response(
            response.status_code, headers=response.headers, extensions=response.extensions,
            stream=_TimedBody(response.stream, response.status_code, report, deadline, limit),
        )

    def close(self) -> None:
        self._inner.close()


class _TimedBody(httpx.SyncByteStream):
    """A response body that reports once: its status when read to the end, ``None`` when
    reading failed, was cut at the deadline or stopped early."""

    def __init__(
        self, inner: httpx.SyncByteStream, status: int, report: Callable[[int | None], None],
        deadline: float | None, limit: float | None,
    ) -> None:
        self._inner, self._status, self._report = inner, status, report
        self._deadline, self._limit = deadline, limit
        self._reported = False

    def __iter__(self) -> Iterator[bytes]:
        try:
            for chunk in self._inner:
                if self._deadline is not None and time.monotonic() > self._deadline:
                    raise PolarTransportError(
                        "timeout", f"the response took longer than {self._limit:g} s in all")
                yield chunk
        except BaseException:
            self._finish(None)
            raise
        self._finish(self._status)

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            self._finish(None)

    def _finish(self, status: int | None) -> None:
        if not self._reported:
            self._reported = True
            self._report(status)


def build_http_client(
    base_url: str,
    *,
    connect_timeout: float,
    read_timeout: float,
    api_version: str | None = None,
    transport: httpx.BaseTransport | None = None,
    max_connections: int = 20,
    throttle: Throttle | None = None,
    observer: Observer | None = None,
    total_timeout: float | None = None,
) -> httpx.Client:
    """The pooled client a worker process keeps for its whole life (see the module
    docstring for the transports it stacks on ``transport``, by default the network)."""

    def wrap(inner: httpx.BaseTransport) -> httpx.BaseTransport:
        timed = TimedTransport(inner, observer, total_timeout)
        return timed if throttle is None else ThrottledTransport(timed, throttle)

    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=10)
    mounts: dict[str, httpx.BaseTransport | None] = {}
    if transport is None:
        transport = httpx.HTTPTransport(limits=limits)
        # httpx honours HTTP(S)_PROXY / NO_PROXY only for transports it builds itself:
        # build the same proxy mounts, each behind the same wrappers.
        mounts = {pattern: None if url is None else
                  wrap(httpx.HTTPTransport(proxy=url, limits=limits))
                  for pattern, url in get_environment_proxies().items()}
    headers = {"User-Agent": USER_AGENT, "Accept": "application/json"}
    if api_version:
        headers["Polar-Version"] = api_version
    return httpx.Client(
        base_url=base_url,
        headers=headers,
        timeout=httpx.Timeout(read_timeout, connect=connect_timeout),
        limits=limits,
        transport=wrap(transport),
        mounts=mounts,
    )
