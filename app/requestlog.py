"""Request ids on every response and one structured log line per request."""

from __future__ import annotations

import json
import logging
import re
import secrets
import sys
import time
from typing import Any

import flask

from ctxcloud.auth import current_actor

SANE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:@+=-]{1,128}$")
access_log = logging.getLogger("ctxcloud.access")

# Attributes every LogRecord has; anything else was passed through `extra=` and is logged.
_STANDARD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


def current_request_id() -> str | None:
    """The id of the request being served, or None outside a request."""
    if not flask.has_request_context():
        return None
    return flask.g.get("request_id")


def request_started() -> float | None:
    """When (``time.perf_counter()``) the request being served arrived, or None."""
    if not flask.has_request_context():
        return None
    return flask.g.get("request_started")


def start(request: flask.Request, g: Any) -> None:
    """Stamp the request's id (the client's X-Request-ID when sane) and its arrival."""
    incoming = request.headers.get("X-Request-ID", "")
    g.request_id = incoming if SANE_REQUEST_ID.match(incoming) else secrets.token_hex(16)
    g.request_started = time.perf_counter()


def finish(request: flask.Request, g: Any, response: flask.Response) -> flask.Response:
    """X-Request-ID on the response, and the access line (at INFO)."""
    request_id = g.get("request_id")
    response.headers["X-Request-ID"] = request_id or ""
    started = g.get("request_started")
    if started is not None and access_log.isEnabledFor(logging.INFO):
        actor = current_actor(required=False)
        access_log.info(
            "request",
            extra={
                "request_id": request_id,
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                "tenant_id": getattr(actor, "tenant_id", None),
                "actor": getattr(actor, "log_name", None),
            },
        )
    return response


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the request id whenever there is a request.

    Written once per request (the access line), so it keeps its work small: the timestamp's
    seconds are formatted once per second, and one encoder serves every line."""

    _encoder = json.JSONEncoder(default=str)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._second: tuple[int, str] = (-1, "")

    def _time(self, created: float) -> str:
        second = int(created)
        cached = self._second
        if cached[0] != second:
            cached = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
            self._second = cached
        return f"{cached[1]}.{int((created - second) * 1000):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self._time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if "request_id" not in entry:
            request_id = current_request_id()
            if request_id:
                entry["request_id"] = request_id
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return self._encoder.encode(entry)


def configure_logging(config: flask.Config) -> None:
    """Route ctxcloud's loggers to stderr in the configured format, once per process."""
    root = logging.getLogger("ctxcloud")
    root.setLevel(config["LOG_LEVEL"])
    if any(getattr(h, "_ctxcloud", False) for h in root.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler._ctxcloud = True  # type: ignore[attr-defined]
    if config["LOG_FORMAT"] == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    root.addHandler(handler)
    # Tests capture records through the root logger (caplog); servers log once, here.
    root.propagate = bool(config.get("TESTING"))
