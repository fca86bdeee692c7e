# syntax=docker/dockerfile:1
#
# seat-revoker image. Stages:
#   build    - builds the project's wheel and collects every dependency as a wheel
#   runtime  - python:3.11-slim + a venv installed offline from those wheels; non-root
#   api      - runtime with a HEALTHCHECK on /healthz and `api` as the default command
#   flower   - runtime + the `flower` package, for the Celery monitoring UI
#   worker   - the last stage, so a plain `docker build .` gives the worker image
#
# docker-compose.yml picks the stage of each service with `build.target`.
# BuildKit is required (RUN --mount); it is the default builder of current Docker.

ARG PYTHON_IMAGE=python:3.11-slim

# ---------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS build

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

WORKDIR /src
# Only what the wheel needs (.dockerignore is an allowlist too). README.m[d] is a glob so
# the build does not fail while the project has no README: a COPY only needs one match.
COPY pyproject.toml README.m[d] ./
COPY config ./config
COPY worker ./worker

# Every dependency is published as a binary wheel (psycopg[binary], pydantic-core, ...),
# so no compiler is needed even here; if one ever is, install it in this stage only.
RUN pip wheel --wheel-dir /wheels .

# ---------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    LOG_FORMAT=json

# A fixed uid/gid so volume ownership is predictable across rebuilds and hosts.
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid app --home-dir /app --create-home \
            --shell /usr/sbin/nologin app

# Installed offline from the build stage's wheels, mounted rather than copied so they
# leave no layer behind. The venv is root-owned: the app user can run it, not change it.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-index --find-links=/wheels seat-revoker

# The commit the image is built from, shown as `revision` in /metrics build_info:
# docker build --build-arg BUILD_REVISION=$(git rev-parse --short HEAD) .
ARG BUILD_REVISION=unknown
ENV BUILD_REVISION=${BUILD_REVISION}

# /app/var: where the default SQLite DATABASE_URL (sqlite:///./var/...) would live.
WORKDIR /app
RUN install -d -o app -g app /app/var

USER 10001:10001

# No HEALTHCHECK here: this image runs the worker, the scheduler and the sandbox too, and
# none of them serves /healthz. docker-compose.yml gives each service its own check.
ENTRYPOINT ["seat-revoker"]
CMD ["worker"]

# ---------------------------------------------------------------------------------------
FROM runtime AS api

EXPOSE 8000
# The slim image has no curl; Python's urllib raises (exit 1) on anything but 2xx.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
CMD ["api", "--host", "0.0.0.0", "--port", "8000"]

# ---------------------------------------------------------------------------------------
FROM runtime AS flower

# flower and its dependencies are pure Python: still no build tools.
USER 0
RUN /opt/venv/bin/pip install "flower>=2.0,<3"
USER 10001:10001

EXPOSE 5555
# Flower must load the project's Celery app (worker.jobs.tasks), not just a --broker URL:
# config/celery.py sets kombu's global_keyprefix to NAMESPACE + ":", and a Flower without
# it would watch unprefixed keys and see no worker and no task.
ENTRYPOINT ["celery"]
CMD ["-A", "worker.jobs.tasks", "flower", "--port=5555"]

# ---------------------------------------------------------------------------------------
FROM runtime AS worker
