"""The HTTP face of seat-revoker: webhooks, REST, dashboard, metrics (FastAPI)."""

from worker.api.app import create_app
from worker.api.server import ApiServer, serve

__all__ = ["ApiServer", "create_app", "serve"]
