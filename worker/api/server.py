"""Running the API: ``serve()`` for ``seat-revoker api``, ``ApiServer`` for tests and demos."""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI

from worker.api.background_server import BackgroundServer, bind
from worker.telemetry.logs import configure_logging, get_logger

log = get_logger("seat_revoker.api.server")


def listening_lines(host: str, port: int) -> list[str]:
    """What ``seat-revoker api`` prints once it listens: where to point a browser."""
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else ("[::1]" if host == "::" else host)
    base = f"http://{shown}:{port}"
    lines = [f"seat-revoker API listening on http://{host}:{port}"]
    if shown != host:
        lines.append(f"  (all interfaces; from this machine: {base})")
    lines += [f"  dashboard: {base}/dashboard", f"  API docs:  {base}/docs",
              f"  metrics:   {base}/metrics"]
    return lines


def serve(host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve the API in the foreground (settings from the environment) until interrupted;
    print the URL it listens on once the socket is bound (port 0: the one picked)."""
    from config.settings import load_settings
    from worker.api.app import create_app

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    app = create_app(settings)
    sock = bind(host, port)
    bound = sock.getsockname()[1]
    # Standard output, for the person who started it; standard error stays the log stream
    # (one JSON event per line under LOG_FORMAT=json), which carries ``api.listening``.
    for line in listening_lines(host, bound):
        print(line, flush=True)
    log.info("api.listening", url=f"http://{host}:{bound}")
    # log_config=None: uvicorn's own loggers go through the root handler (structlog, one
    # JSON line per event) instead of its plain-text handlers; the access log is ours
    # (worker.api.access), so uvicorn's is off.
    config = uvicorn.Config(app, log_level="warning", proxy_headers=False, log_config=None,
                            access_log=False)
    uvicorn.Server(config).run(sockets=[sock])


class ApiServer(BackgroundServer):
    """The API app on 127.0.0.1 in a background thread; a context manager."""

    def __init__(self, app: FastAPI, *, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(app, host=host, port=port, name="api")
