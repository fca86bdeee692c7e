"""The version this code runs as (``seat-revoker --version``, ``build_info`` in /metrics)."""

from __future__ import annotations

import os
from importlib.metadata import PackageNotFoundError, version


def package_version() -> str:
    try:
        return version("seat-revoker")
    except PackageNotFoundError:  # run from a source tree that is not installed
        return "0+unknown"


def build_revision() -> str:
    """The commit the image was built from (``BUILD_REVISION``, set by the Dockerfile's
    build argument), or ``unknown``."""
    return os.environ.get("BUILD_REVISION", "unknown") or "unknown"
