"""An ASGI app served by uvicorn in a background thread (tests, demo, in-process sandbox)."""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType
from typing import Any, Self

import uvicorn


def bind(host: str, port: int) -> socket.socket:
    """A bound TCP socket (port 0 picks a free one) for uvicorn to serve on."""
    # proto=IPPROTO_TCP lets asyncio set TCP_NODELAY on accepted connections; without it
    # Nagle + delayed ACK add ~40 ms to every response.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    return sock


def quiet_server(app: Any, **options: Any) -> uvicorn.Server:
    config = uvicorn.Config(app, log_level="warning", access_log=False,
                            timeout_graceful_shutdown=1, **options)
    return uvicorn.Server(config)


class BackgroundServer:
    """``app`` on ``host:port`` in a daemon thread; ``start()`` returns once it accepts."""

    def __init__(self, app: Any, *, host: str = "127.0.0.1", port: int = 0,
                 name: str = "asgi", **options: Any) -> None:
        self.app = app
        self.host, self.port = host, port
        self._name = name
        self._options = options
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> Self:
        sock = bind(self.host, self.port)
        self.port = sock.getsockname()[1]
        self._server = server = quiet_server(self.app, **self._options)
        self._thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]},
                                        name=f"{self._name}-{self.port}", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self._name} did not start on {self.url}")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Ask uvicorn to exit and wait for the thread."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
