"""gunicorn settings for ctxcloud: `gunicorn -c config/gunicorn.conf.py wsgi:app`.

Every value can be set from the environment; docs/configuration.md lists each variable and
docs/deployment.md explains how to size them. Command-line flags still win over this file.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from datetime import UTC, datetime

from gunicorn.glogging import Logger

from ctxcloud.gunicorn_worker import ThreadWorker
from ctxcloud.slow_clients import SlowClientLimits

# cgroup v2 CPU quota ("max 100000" or "<quota> <period>"); the v1 files are the fallback.
CGROUP_CPU_MAX = os.environ.get("GUNICORN_CGROUP_CPU_MAX", "/sys/fs/cgroup/cpu.max")
CGROUP_V1_QUOTA = "/sys/fs/cgroup/cpu/cpu.cfs_quota_us"
CGROUP_V1_PERIOD = "/sys/fs/cgroup/cpu/cpu.cfs_period_us"
MAX_DEFAULT_WORKERS = 8


def _int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        return int(value)
    except ValueError:
        raise SystemExit(f"gunicorn.conf.py: {name}={value!r} is not an integer") from None


def _seconds(name: str, default: float) -> float:
    value = os.environ.get(name, "").strip()
    if not value:
        return default
    try:
        seconds = float(value)
    except ValueError:
        raise SystemExit(f"gunicorn.conf.py: {name}={value!r} is not a number") from None
    if not seconds > 0 or math.isinf(seconds):
        raise SystemExit(f"gunicorn.conf.py: {name}={value!r} must be a positive number")
    return seconds


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii") as handle:
            return handle.read().strip()
    except (OSError, UnicodeDecodeError):
        return None


def cgroup_cpu_limit(cpu_max: str = CGROUP_CPU_MAX) -> float | None:
    """CPUs the container may use per its cgroup quota, or None when unlimited or unknown."""
    text = _read(cpu_max)
    if text is not None:
        quota, _, period = text.partition(" ")
    else:
        quota, period = _read(CGROUP_V1_QUOTA) or "max", _read(CGROUP_V1_PERIOD) or "100000"
    if quota in ("max", "-1", ""):
        return None
    try:
        limit = int(quota) / int(period or "100000")
    except (ValueError, ZeroDivisionError):
        return None
    return limit if limit > 0 else None


def available_cpus(cpu_max: str = CGROUP_CPU_MAX) -> int:
    """CPUs this process may run on: the affinity mask, capped by the cgroup quota (rounded up)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    limit = cgroup_cpu_limit(cpu_max)
    if limit is not None:
        cpus = min(cpus, math.ceil(limit))
    return max(1, cpus)


def default_workers(cpus: int) -> int:
    """One worker per CPU, at least two (a crash or a slow request never stalls the pod), at
    most eight (threads, not processes, absorb slow clients)."""
    return max(2, min(cpus, MAX_DEFAULT_WORKERS))


def _bind_host(address: str) -> str:
    """The host part of GUNICORN_BIND, for the metrics listener's default."""
    if address.startswith(("unix:", "fd://")) or ":" not in address:
        return "127.0.0.1"
    host = address.rsplit(":", 1)[0].strip("[]")
    return host or "0.0.0.0"  # noqa: S104 - ":8000" binds every address too


bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
# Threads serve streaming bodies without a process each; workers use the CPUs. ctxcloud's
# gthread worker (app/gunicorn_worker.py) gathers request heads in its event loop, so idle and
# slow clients hold no thread, and bounds every blocking read and write:
# - GUNICORN_HEADER_TIMEOUT: seconds a connection has to send a whole request head (also how
#   long a new or kept-alive connection may stay silent); past it: 408, closed.
# - GUNICORN_BODY_MIN_RATE / GUNICORN_BODY_GRACE: a body must arrive at this many bytes a
#   second on average, after this many seconds of credit; a slower one is cut with a 408
#   request_timeout problem and nothing is stored.
# - GUNICORN_SEND_TIMEOUT: seconds a response write may wait for a client that reads nothing.
# Behind the shipped proxy (docs/deployment.md) these are a second line: the proxy buffers
# requests and absorbs slow and idle clients first.
SLOW_CLIENT_LIMITS = SlowClientLimits(
    header_timeout=_seconds("GUNICORN_HEADER_TIMEOUT", 10.0),
    body_min_rate=_seconds("GUNICORN_BODY_MIN_RATE", 4096.0),
    body_grace=_seconds("GUNICORN_BODY_GRACE", 10.0),
    send_timeout=_seconds("GUNICORN_SEND_TIMEOUT", 30.0),
)
worker_class = ThreadWorker.configured(SLOW_CLIENT_LIMITS)
workers = _int("GUNICORN_WORKERS", default_workers(available_cpus()))
threads = _int("GUNICORN_THREADS", 8)
# Large entries stream for minutes: the worker timeout is the heartbeat, not a request limit
# (a gthread worker keeps beating while its threads stream), so it only catches a hung worker.
timeout = _int("GUNICORN_TIMEOUT", 300)
# On SIGTERM, in-flight requests get this long to finish before workers are killed; keep the
# orchestrator's grace period (Kubernetes terminationGracePeriodSeconds) above it.
graceful_timeout = _int("GUNICORN_GRACEFUL_TIMEOUT", 30)
keepalive = _int("GUNICORN_KEEPALIVE", 5)
# Connections a worker holds at once (idle and kept-alive ones included; they cost no thread).
worker_connections = _int("GUNICORN_WORKER_CONNECTIONS", 1000)
# gunicorn's request limits (the defaults, stated): request line bytes, header count, bytes per
# header line. Past them the answer is a 414 or 431 problem (docs/configuration.md).
limit_request_line = _int("GUNICORN_LIMIT_REQUEST_LINE", 4094)
limit_request_fields = _int("GUNICORN_LIMIT_REQUEST_FIELDS", 100)
limit_request_field_size = _int("GUNICORN_LIMIT_REQUEST_FIELD_SIZE", 8190)
# Files are written through the worker's bounded writes, not sendfile(2), which would block a
# thread on a client that stops reading.
sendfile = False
max_requests = _int("GUNICORN_MAX_REQUESTS", 0)
max_requests_jitter = _int("GUNICORN_MAX_REQUESTS_JITTER", 0)
backlog = _int("GUNICORN_BACKLOG", 2048)
# The heartbeat file: on a RAM disk where there is one, as a disk-backed /tmp can stall fchmod.
# gunicorn creates its own unique, unlinked file there (no predictable name to race on).
RAM_DISK = "/dev/shm"  # noqa: S108
worker_tmp_dir = os.environ.get("GUNICORN_WORKER_TMP_DIR") or (
    RAM_DISK if os.path.isdir(RAM_DISK) and os.access(RAM_DISK, os.W_OK) else None
)
# forwarded_allow_ips: the proxy addresses gunicorn trusts to set X-Forwarded-Proto (and the
# forwarder headers) for the WSGI environ. Keep the default (loopback) unless gunicorn sits
# behind a proxy on another address; "*" only when nothing but the proxy can reach the port
# (e.g. a Kubernetes pod behind an ingress with a NetworkPolicy). The client address the app
# logs and rate-limits on comes from CTXCLOUD_TRUSTED_PROXY_HOPS (werkzeug ProxyFix), not here.
forwarded_allow_ips = os.environ.get("GUNICORN_FORWARDED_ALLOW_IPS", "127.0.0.1")
# The app logs one JSON line per request (logger ctxcloud.access, with request_id, tenant and
# actor); gunicorn's own access log is off unless GUNICORN_ACCESSLOG names a file or "-"
# (stdout). GUNICORN_LOG_FORMAT=json (default) writes it, and gunicorn's error log, as one
# JSON object per line; "text" keeps gunicorn's classic lines (access_log_format below).
accesslog = os.environ.get("GUNICORN_ACCESSLOG") or None
access_log_format = (
    '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %(D)sus %({x-request-id}o)s'
)
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOGLEVEL", "info")
# Build the app in each worker (not in the master) so pools and clients are per process.
preload_app = False
# gunicorn's runtime control socket (gunicornc) stays off unless a path is given: one less
# listener, and no write to $HOME, which is read-only in the container.
control_socket_disable = not os.environ.get("GUNICORN_CONTROL_SOCKET")
if not control_socket_disable:
    control_socket = os.environ["GUNICORN_CONTROL_SOCKET"]

# Prometheus multiprocess mode: workers write samples under this directory; the master serves
# their sum on METRICS_PORT (0 disables that listener; /api/v1/-/metrics still answers).
PROMETHEUS_MULTIPROC_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None
METRICS_PORT = _int("METRICS_PORT", 9100)
METRICS_HOST = os.environ.get("METRICS_HOST") or _bind_host(bind)


class JsonLineFormatter(logging.Formatter):
    """gunicorn's own messages (start, workers, errors) as JSON lines, like the app's logs."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": _utc_now(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def _utc_now(timestamp: float | None = None) -> str:
    moment = datetime.fromtimestamp(timestamp, UTC) if timestamp else datetime.now(UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonLogger(Logger):
    """gunicorn's logger writing one JSON object per line: the access log (properly escaped,
    with the response's X-Request-ID) and gunicorn's error log."""

    def setup(self, cfg) -> None:
        super().setup(cfg)
        for handler in self.error_log.handlers:
            handler.setFormatter(JsonLineFormatter())

    def access(self, resp, req, environ, request_time) -> None:
        if not self.access_log_enabled:
            return
        atoms = self.atoms(resp, req, environ, request_time)
        status = str(atoms["s"])
        entry = {
            "time": _utc_now(),
            "level": "INFO",
            "logger": "gunicorn.access",
            "remote": atoms["h"],
            "method": atoms["m"],
            "path": atoms["U"],
            "protocol": atoms["H"],
            "status": int(status) if status.isdigit() else status,
            "bytes": atoms["B"] or 0,
            "duration_ms": round(request_time.total_seconds() * 1000, 3),
            "user_agent": atoms["a"],
            "request_id": atoms.get("{x-request-id}o"),
        }
        try:
            self.access_log.info(json.dumps(entry, default=str))
        except Exception:
            self.exception("failed to write the access log")


LOG_FORMAT = os.environ.get("GUNICORN_LOG_FORMAT", "json").strip().lower()
if LOG_FORMAT not in ("json", "text"):
    raise SystemExit(f"gunicorn.conf.py: GUNICORN_LOG_FORMAT={LOG_FORMAT!r} is not json or text")
if LOG_FORMAT == "json":
    logger_class = JsonLogger


def on_starting(server) -> None:
    """Start multiprocess metrics from an empty directory: stale files would add old counts."""
    if PROMETHEUS_MULTIPROC_DIR:
        if os.path.isdir(PROMETHEUS_MULTIPROC_DIR):
            for name in os.listdir(PROMETHEUS_MULTIPROC_DIR):
                path = os.path.join(PROMETHEUS_MULTIPROC_DIR, name)
                if os.path.isdir(path) and not os.path.islink(path):
                    shutil.rmtree(path)
                else:
                    os.unlink(path)
        os.makedirs(PROMETHEUS_MULTIPROC_DIR, exist_ok=True)


def when_ready(server) -> None:
    """Serve every worker's metrics, summed, on METRICS_HOST:METRICS_PORT from the master."""
    if not PROMETHEUS_MULTIPROC_DIR or METRICS_PORT <= 0:
        return
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    try:
        start_http_server(METRICS_PORT, addr=METRICS_HOST, registry=registry)
    except OSError as exc:
        server.log.warning("metrics listener on %s:%s failed: %s", METRICS_HOST, METRICS_PORT, exc)
        return
    server.log.info("serving metrics on http://%s:%s/metrics", METRICS_HOST, METRICS_PORT)


def child_exit(server, worker) -> None:
    """A dead worker's live gauges (requests in progress) must stop counting."""
    if PROMETHEUS_MULTIPROC_DIR:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def worker_int(worker) -> None:
    """SIGINT/SIGQUIT on a worker: say which one, so a forced stop is visible in the logs."""
    logging.getLogger("gunicorn.error").info("worker %s interrupted", worker.pid)
