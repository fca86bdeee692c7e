"""Running the API: ``serve()`` for ``seat-revoker api``, ``ApiServer`` for tests and demos."""

from __future__ import annotations

import uvicorn
from fastapi import FastAPI

from worker.background_server import BackgroundServer
from worker.logs import configure_logging


def serve(host: str = "127.0.0.1", port: int = 8000) -> None:
    """Serve the API in the foreground (settings from the environment) until interrupted."""
    from config.settings import load_settings
    from worker.api.app import create_app

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    app = create_app(settings)
    # log_config=None: uvicorn's own loggers go through the root handler (structlog, one
    # JSON line per event) instead of its plain-text handlers.
    uvicorn.run(app, host=host, port=port, log_level="warning", proxy_headers=False,
                log_config=None)


class ApiServer(BackgroundServer):
    """The API app on 127.0.0.1 in a background thread; a context manager."""

    def __init__(self, app: FastAPI, *, host: str = "127.0.0.1", port: int = 0) -> None:
        super().__init__(app, host=host, port=port, name="api")
