"""Prometheus metrics: requests by route template, storage bytes, auth failures, rate limiting.

Every label has a small, fixed set of values: the route is the URL rule's template
(``/api/v1/projects/<project>/context/entries/<path:path>``), never the raw path, so no id,
tenant slug or entry path reaches a metric, and nothing secret ever does.

Under gunicorn, set ``PROMETHEUS_MULTIPROC_DIR`` (the container image does): each worker
writes its samples there and a scrape adds them up across workers. The gunicorn config
cleans the directory at start, marks dead workers, and serves the sum on ``METRICS_PORT``
(9100) from the master process. The same numbers are served at ``GET /api/v1/-/metrics`` to
platform admins. Without the variable, metrics live in the process (a single worker, tests).
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from typing import Any

import flask
from flask.views import MethodView
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.exposition import choose_encoder

from ctxcloud.auth import requires
from ctxcloud.blueprint import Blueprint
from ctxcloud.version import VERSION

EXTENSION = "ctxcloud.metrics"
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Streaming entries take minutes: the buckets reach five minutes (gunicorn's timeout).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# The route label of requests that matched no rule (404, 405): one value, not the raw path.
UNMATCHED_ROUTE = "<unmatched>"
NO_ROUTE = "<none>"
STORAGE_DIRECTIONS = ("in", "out")
_LABEL_VALUE = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
# Request-context flags that say a helper already counted this request's 401 or 429.
_AUTH_COUNTED = "_metrics_auth_failure_counted"
_RATE_LIMIT_COUNTED = "_metrics_rate_limited_counted"
_IN_PROGRESS = "_metrics_in_progress"

blp = Blueprint(
    "metrics",
    __name__,
    url_prefix="/api/v1/-/metrics",
    description="Prometheus metrics (platform admins); production scrapes METRICS_PORT instead.",
)


@dataclass(frozen=True)
class Metrics:
    """One app's metric families, kept on ``app.extensions`` (never shared between two apps)."""

    registry: CollectorRegistry
    requests: Counter
    latency: Histogram
    in_progress: Gauge
    storage_bytes: Counter
    auth_failures: Counter
    rate_limited: Counter
    build_info: Gauge
    storage_backend: str
    # The request counter's and histogram's children by (route, method, status): looking a
    # child up through ``labels`` validates and locks each time; the set of keys is bounded
    # (route templates x known methods x statuses).
    _children: dict[tuple[str, str, int], tuple[Any, Any]] = field(default_factory=dict)

    def children(self, route: str, method: str, status: int) -> tuple[Any, Any]:
        key = (route, method, status)
        found = self._children.get(key)
        if found is None:
            labels = {"route": route, "method": method, "status": str(status)}
            found = (self.requests.labels(**labels), self.latency.labels(**labels))
            if len(self._children) < 10_000:
                self._children[key] = found
        return found


# The metrics of the app this process serves, for callers outside an app context (a worker
# builds one app; in tests the app context always names the right one).
_process_metrics: Metrics | None = None


def multiprocess_dir() -> str | None:
    """The shared directory of multiprocess mode, or None when metrics live in this process."""
    return os.environ.get(MULTIPROC_ENV) or None


def _build(storage_backend: str) -> Metrics:
    registry = CollectorRegistry(auto_describe=True)
    build_info = Gauge(
        "ctxcloud_build_info",
        "The running ctxcloud version (always 1).",
        ["version"],
        registry=registry,
        multiprocess_mode="max",
    )
    build_info.labels(version=VERSION).set(1)
    return Metrics(
        registry=registry,
        requests=Counter(
            "ctxcloud_http_requests",
            "HTTP requests answered, by route template, method and status.",
            ["route", "method", "status"],
            registry=registry,
        ),
        latency=Histogram(
            "ctxcloud_http_request_duration_seconds",
            "Seconds from the request's arrival until its response headers, by route template,"
            " method and status (uploads included; a streamed download's body is not).",
            ["route", "method", "status"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        ),
        in_progress=Gauge(
            "ctxcloud_http_requests_in_progress",
            "Requests being served now, summed over live workers.",
            registry=registry,
            multiprocess_mode="livesum",
        ),
        storage_bytes=Counter(
            "ctxcloud_storage_bytes",
            "Bytes written to (in) and read from (out) the storage backend, as stored.",
            ["direction", "backend"],
            registry=registry,
        ),
        auth_failures=Counter(
            "ctxcloud_auth_failures",
            "Requests refused for a missing or bad credential, by kind.",
            ["kind"],
            registry=registry,
        ),
        rate_limited=Counter(
            "ctxcloud_rate_limited",
            "Requests refused by a rate limit (429), by route template.",
            ["route"],
            registry=registry,
        ),
        build_info=build_info,
        storage_backend=_label_value(storage_backend, fallback="other"),
    )


def init_metrics(app: flask.Flask) -> None:
    """Count every request of `app` and serve ``/api/v1/-/metrics``; call once the Api exists."""
    global _process_metrics
    directory = multiprocess_dir()
    if directory:
        # prometheus-client writes one file per process here; it must exist before a sample.
        os.makedirs(directory, exist_ok=True)
    # `*_created` series double the output and say nothing a restart counter does not.
    disable_created_metrics()
    metrics = _build(str(app.config.get("STORAGE_BACKEND") or "local"))
    app.extensions[EXTENSION] = metrics
    _process_metrics = metrics
    app.extensions["ctxcloud"].api.register_blueprint(blp)


def _current() -> Metrics | None:
    if flask.has_app_context():
        return flask.current_app.extensions.get(EXTENSION)
    return _process_metrics


def _label_value(value: str, fallback: str = "other") -> str:
    """Keep caller-supplied label values to short snake_case words: no cardinality blow-up."""
    return value if isinstance(value, str) and _LABEL_VALUE.match(value) else fallback


def route_label() -> str:
    """The URL rule template of the current request, never its raw path."""
    if not flask.has_request_context():
        return NO_ROUTE
    return _route_of(flask.request)


def _route_of(request: flask.Request) -> str:
    rule = request.url_rule
    return rule.rule if rule is not None else UNMATCHED_ROUTE


def count_storage_bytes(direction: str, n: int) -> None:
    """Add `n` bytes written to ("in") or read from ("out") the storage backend.

    The object layer calls it with the bytes as stored (ciphertext), once per chunk or object.
    """
    if direction not in STORAGE_DIRECTIONS:
        raise ValueError(f"direction must be one of {STORAGE_DIRECTIONS}, not {direction!r}")
    metrics = _current()
    if metrics is not None and n > 0:
        metrics.storage_bytes.labels(direction=direction, backend=metrics.storage_backend).inc(n)


def count_auth_failure(kind: str) -> None:
    """Count one refused credential; `kind` is a short fixed word (``invalid_api_key``, ...).

    Any other value is counted as ``other``. A 401 answer nobody counted is counted as
    ``unauthorized`` when the response leaves, so each refusal counts exactly once.
    """
    metrics = _current()
    if metrics is None:
        return
    metrics.auth_failures.labels(kind=_label_value(kind)).inc()
    if flask.has_request_context():
        flask.g.setdefault(_AUTH_COUNTED, True)


def count_rate_limited() -> None:
    """Count one rate-limit rejection of the current request (a 429 not counted here is counted
    when the response leaves, so each rejection counts exactly once)."""
    metrics = _current()
    if metrics is None:
        return
    metrics.rate_limited.labels(route=route_label()).inc()
    if flask.has_request_context():
        flask.g.setdefault(_RATE_LIMIT_COUNTED, True)


def started(app: flask.Flask, g: Any) -> None:
    """A request is in progress (``request_cycle``, before anything else can fail)."""
    metrics = app.extensions.get(EXTENSION)
    if metrics is not None:
        metrics.in_progress.inc()
        setattr(g, _IN_PROGRESS, True)


def finished(app: flask.Flask, g: Any) -> None:
    if g.pop(_IN_PROGRESS, False):
        app.extensions[EXTENSION].in_progress.dec()


def observe(
    app: flask.Flask, request: flask.Request, g: Any, response: flask.Response
) -> flask.Response:
    """Count the answered request and its latency by route, method and status."""
    metrics: Metrics | None = app.extensions.get(EXTENSION)
    if metrics is None:
        return response
    # The request log stamps the arrival before any other step (rate limits included).
    started_at = g.get("request_started")
    elapsed = time.perf_counter() - started_at if started_at is not None else 0.0
    route = _route_of(request)
    method = request.method if request.method in KNOWN_METHODS else "other"
    status = response.status_code
    requests_child, latency_child = metrics.children(route, method, status)
    requests_child.inc()
    latency_child.observe(elapsed)
    if status == 401 and not g.get(_AUTH_COUNTED):
        metrics.auth_failures.labels(kind="unauthorized").inc()
    if status == 429 and not g.get(_RATE_LIMIT_COUNTED):
        metrics.rate_limited.labels(route=route).inc()
    return response


def exposition(registry: CollectorRegistry, accept: str | None) -> tuple[bytes, str]:
    """The metrics in the format the scraper asked for: the sum over workers in multiprocess
    mode, else this app's registry."""
    if multiprocess_dir():
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    encoder, content_type = choose_encoder(accept or "")
    return encoder(registry), content_type


EXAMPLE = """\
# HELP ctxcloud_http_requests_total HTTP requests answered, by route template, method and status.
# TYPE ctxcloud_http_requests_total counter
ctxcloud_http_requests_total{method="GET",route="/api/v1/projects/<project>",status="200"} 42.0
"""


@blp.route("")
class MetricsView(MethodView):
    @requires("platform:admin")
    @blp.response(
        200,
        {"type": "string"},
        content_type="text/plain",
        description="Prometheus text exposition format (OpenMetrics when the Accept header asks"
        " for application/openmetrics-text).",
        example=EXAMPLE,
    )
    def get(self):
        """Prometheus metrics

        Request counts and latency by route template, method and status; storage bytes in and
        out; auth failures; rate-limit rejections. In multiprocess mode (gunicorn with
        `PROMETHEUS_MULTIPROC_DIR`) the numbers are summed over every worker. Production
        scrapes the metrics port instead (see docs/operations.md).
        """
        metrics: Metrics = flask.current_app.extensions[EXTENSION]
        body, content_type = exposition(metrics.registry, flask.request.headers.get("Accept"))
        return flask.Response(body, status=200, content_type=content_type)
