# syntax=docker/dockerfile:1
# ctxcloud container image: `docker build -t ctxcloud .` (BuildKit, the default builder).
#
# Two stages: the builder turns the project and every dependency into wheels, pinned by
# constraints.txt exactly as the README installs (`pip install -c constraints.txt .`); the
# runtime installs those wheels only: no compiler, no build headers, no pip cache, no sources.
#
# Storage backends packaged as distributions of their own (plugins/storage_gcs,
# plugins/storage_azure) are left out unless STORAGE_PLUGINS names them:
#   docker build --build-arg STORAGE_PLUGINS="storage_gcs storage_azure" -t ctxcloud .

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

# Plugin folders to build in, separated by spaces or commas: each a folder of plugins/ with a
# pyproject.toml of its own (storage_gcs, storage_azure). Empty (the default): ctxcloud alone,
# with no Google or Azure library. A name that is not such a folder fails the build, listing
# the folders that are.
ARG STORAGE_PLUGINS=""

# One wheel per distribution: ctxcloud itself, the chosen plugins and the dependency tree of
# them all, resolved together and pinned by constraints.txt. /wheels/requirements.txt names
# the distributions the runtime installs (ctxcloud and the plugins); the rest follows from them.
RUN --mount=type=cache,target=/root/.cache/pip \
    set -eu; \
    known=""; \
    for project in plugins/*/pyproject.toml; do \
        folder="${project%/pyproject.toml}"; known="$known ${folder#plugins/}"; \
    done; \
    mkdir -p /wheels; \
    echo ctxcloud > /wheels/requirements.txt; \
    chosen=""; \
    set -f; IFS="$IFS,"; \
    for plugin in $STORAGE_PLUGINS; do \
        case "$plugin" in \
            *[!A-Za-z0-9_-]*) valid=no ;; \
            *) case " $known " in *" $plugin "*) valid=yes ;; *) valid=no ;; esac ;; \
        esac; \
        if [ "$valid" = no ]; then \
            echo "STORAGE_PLUGINS: unknown plugin \"$plugin\" (a folder of plugins/ with a pyproject.toml of its own); choose from:$known" >&2; \
            exit 1; \
        fi; \
        case " $chosen " in *" $plugin "*) continue ;; esac; \
        chosen="$chosen $plugin"; \
        python -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["name"])' \
            "plugins/$plugin/pyproject.toml" >> /wheels/requirements.txt; \
    done; \
    unset IFS; set +f; \
    set -- ; \
    for plugin in $chosen; do set -- "$@" "./plugins/$plugin"; done; \
    echo "building ctxcloud with storage plugins:${chosen:- none}"; \
    pip wheel --wheel-dir /wheels -c constraints.txt . "$@"; \
    cp constraints.txt /wheels/constraints.txt


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
# installed packages (and their .pyc, for a fast start) stay. requirements.txt names ctxcloud
# and the plugins STORAGE_PLUGINS chose; their dependencies come from the same wheels.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links=/wheels \
        -c /wheels/constraints.txt -r /wheels/requirements.txt

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
