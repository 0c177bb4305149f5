# syntax=docker/dockerfile:1
# ctxcloud container image: `docker build -t ctxcloud .` (BuildKit, the default builder).
#
# Two stages: the builder turns the project and every dependency into wheels, pinned by
# constraints.txt exactly as the README installs (`pip install -c constraints.txt .`); the
# runtime installs those wheels only: no compiler, no build headers, no pip cache, no sources.

# Override with a digest-pinned reference (python:3.11-slim@sha256:...) for reproducible builds.
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS builder

# Compilers are for any dependency without a wheel for this platform; they stay in this stage.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
# DL3008 (pin apt versions) is ignored on purpose: the Debian point release under the base
# image moves, and an exact pin breaks the build when it does; nothing from apt ships.

WORKDIR /src
COPY setup.cfg pyproject.toml README.md constraints.txt ./
COPY app ./app
COPY plugins ./plugins
COPY config ./config

# One wheel per distribution: ctxcloud itself and its pinned dependency tree.
RUN --mount=type=cache,target=/root/.cache/pip \
    pip wheel --wheel-dir /wheels -c constraints.txt . \
    && cp constraints.txt /wheels/constraints.txt


FROM ${PYTHON_IMAGE} AS runtime

LABEL org.opencontainers.image.title="ctxcloud" \
      org.opencontainers.image.description="Multi-tenant service that stores and serves versioned project context" \
      org.opencontainers.image.source="https://example.invalid/ctxcloud" \
      org.opencontainers.image.licenses="Proprietary"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    GUNICORN_BIND=0.0.0.0:8000 \
    CTXCLOUD_ENV=production \
    CTXCLOUD_DATA_DIR=/var/lib/ctxcloud \
    PROMETHEUS_MULTIPROC_DIR=/tmp/ctxcloud-metrics \
    METRICS_PORT=9100

# A fixed, unprivileged uid/gid (10001): volumes and Kubernetes securityContext can name it.
RUN groupadd --system --gid 10001 ctxcloud \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin ctxcloud \
    && install -d -o 10001 -g 10001 -m 0700 /var/lib/ctxcloud

# The wheels come in through a bind mount, so no layer keeps a copy of them; only the
# installed packages (and their .pyc, for a fast start) stay.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels \
        -c /wheels/constraints.txt /wheels/ctxcloud-*.whl

WORKDIR /app
# Only what runs: the WSGI entry point and the config directory (gunicorn.conf.py). The code
# is root-owned, so the service cannot rewrite itself.
COPY wsgi.py ./
COPY config ./config

USER 10001:10001
VOLUME ["/var/lib/ctxcloud"]
EXPOSE 8000 9100

# Liveness only (the process answers); readiness, with the dependencies, is /health/ready.
# No curl in the slim image: Python's urllib does it, on the port GUNICORN_BIND names.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('GUNICORN_BIND', ':8000').rsplit(':', 1)[-1]; sys.exit(0 if urllib.request.urlopen(f'http://127.0.0.1:{port}/api/v1/health/live', timeout=4).status == 200 else 1)"]

# gunicorn stops gracefully on SIGTERM (GUNICORN_GRACEFUL_TIMEOUT seconds for open requests).
STOPSIGNAL SIGTERM
CMD ["gunicorn", "-c", "config/gunicorn.conf.py", "wsgi:app"]
