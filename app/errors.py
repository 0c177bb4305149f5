"""One error shape: typed exceptions in services, turned into RFC 9457 problem+json in one place."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, ClassVar

import flask
import marshmallow as ma
from werkzeug.exceptions import HTTPException

from ctxcloud.slow_clients import RequestTimeout

PROBLEM_MIMETYPE = "application/problem+json"
log = logging.getLogger("ctxcloud.errors")


class ProblemError(Exception):
    """An error the client may see: status, stable code, human detail and optional extras."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"

    def __init__(
        self,
        detail: str | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail or self.default_detail())
        self.detail = detail or self.default_detail()
        self.headers = dict(headers or {})
        self.extra = extra

    @classmethod
    def default_detail(cls) -> str:
        return HTTPStatus(cls.status).description or HTTPStatus(cls.status).phrase

    @property
    def title(self) -> str:
        return HTTPStatus(self.status).phrase


@dataclass(frozen=True)
class ProblemResponse:
    """An error response documented once in OpenAPI and referenced from routes by `name`
    (``@blp.alt_response(413, response="EntryTooLarge")``). The core declares the generic
    ones; a plugin declares its own through the ``problem_responses`` hook."""

    name: str
    status: int
    code: str
    # An example detail, as the service would say it.
    detail: str
    # The response's description (default: the status phrase), e.g. when it has two codes.
    description: str | None = None


def problem_type(code: str) -> str:
    """A stable, non-dereferenceable URI per code (RFC 9457 `type`)."""
    return f"urn:ctxcloud:problem:{code}"


class BadRequest(ProblemError):
    status, code = 400, "bad_request"


class InvalidJson(ProblemError, ValueError):
    """A JSON text that breaks a rule of the strict reader (app/json_input.py): `rule`, and
    `line` and `column` where known. A ValueError too, as json's own errors are, so
    `request.get_json(silent=True)` still answers None."""

    status, code = 400, "invalid_json"


class Unauthorized(ProblemError):
    status, code = 401, "unauthorized"

    def __init__(self, detail: str | None = None, **kwargs: Any) -> None:
        super().__init__(detail or "Missing or invalid credential.", **kwargs)
        self.headers.setdefault("WWW-Authenticate", 'Bearer realm="ctxcloud"')


class Forbidden(ProblemError):
    status, code = 403, "forbidden"


class NotFound(ProblemError):
    status, code = 404, "not_found"


class Conflict(ProblemError):
    status, code = 409, "conflict"


class RequestTimedOut(ProblemError):
    """The client sent its request too slowly (app/slow_clients.py); the connection closes."""

    status, code = 408, "request_timeout"

    def __init__(self, detail: str | None = None, **kwargs: Any) -> None:
        super().__init__(detail, **kwargs)
        self.headers.setdefault("Connection", "close")


class PreconditionFailed(ProblemError):
    status, code = 412, "precondition_failed"


class PayloadTooLarge(ProblemError):
    status, code = 413, "payload_too_large"


class UnsupportedMediaType(ProblemError):
    status, code = 415, "unsupported_media_type"


class ValidationFailed(ProblemError):
    status, code = 422, "validation_error"

    def __init__(self, errors: Mapping[str, Any], detail: str | None = None) -> None:
        super().__init__(detail or "The request is not valid.", errors=dict(errors))


class RateLimited(ProblemError):
    status, code = 429, "rate_limited"


class IntegrityFailure(ProblemError):
    status, code = 500, "integrity_error"


class Unavailable(ProblemError):
    status, code = 503, "unavailable"


# Codes for HTTP errors raised by Flask/werkzeug itself (routing, method, body size...).
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    408: "request_timeout",
    409: "conflict",
    411: "length_required",
    412: "precondition_failed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    416: "range_not_satisfiable",
    422: "validation_error",
    428: "precondition_required",
    429: "rate_limited",
    500: "internal_error",
    501: "not_implemented",
    503: "unavailable",
}


def problem_response(
    status: int,
    code: str,
    detail: str,
    *,
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> flask.Response:
    """Build the one problem+json response every error path uses."""
    from ctxcloud.requestlog import current_request_id

    body: dict[str, Any] = {
        "type": problem_type(code),
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code,
    }
    body.update(extra or {})
    body["request_id"] = current_request_id()
    response = flask.current_app.response_class(
        flask.json.dumps(body), status=status, mimetype=PROBLEM_MIMETYPE
    )
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def _from_problem(exc: ProblemError) -> flask.Response:
    return problem_response(exc.status, exc.code, exc.detail, headers=exc.headers, extra=exc.extra)


def _from_http_exception(exc: HTTPException) -> flask.Response:
    status = exc.code or 500
    data = getattr(exc, "data", None) or {}
    extra: dict[str, Any] = {}
    errors = data.get("errors") or data.get("messages")
    if errors is not None:
        extra["errors"] = _flatten_webargs_errors(errors)
    headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
    headers.update(data.get("headers") or {})
    detail = data.get("message") or (
        "The request is not valid." if status == 422 else exc.description or exc.name
    )
    return problem_response(
        status, _HTTP_CODES.get(status, f"http_{status}"), detail, headers=headers, extra=extra
    )


def _flatten_webargs_errors(errors: Any) -> Any:
    """webargs nests errors by location ({"json": {...}}); clients want {field: [messages]}."""
    if isinstance(errors, Mapping) and set(errors) <= {
        "json",
        "query",
        "headers",
        "form",
        "files",
        "view_args",
        "path",
        "cookies",
    }:
        flat: dict[str, Any] = {}
        for location_errors in errors.values():
            if isinstance(location_errors, Mapping):
                flat.update(location_errors)
        return flat
    return errors


def _from_unexpected(exc: Exception) -> flask.Response:
    pm = flask.current_app.extensions["ctxcloud"].pm
    mapped = pm.hook.handle_exception(exc=exc)
    if isinstance(mapped, ProblemError):
        return _from_problem(mapped)
    log.error("unhandled exception", exc_info=exc)
    return problem_response(500, "internal_error", "The server failed to answer this request.")


def register_error_handlers(app: flask.Flask) -> None:
    """Every error path, including flask-smorest's and werkzeug's, answers problem+json."""
    app.register_error_handler(ProblemError, _from_problem)
    app.register_error_handler(HTTPException, _from_http_exception)
    app.register_error_handler(
        ma.ValidationError, lambda exc: _from_problem(ValidationFailed(exc.normalized_messages()))
    )
    app.register_error_handler(Exception, _from_unexpected)
    import peewee

    app.register_error_handler(peewee.DataError, _from_unstorable_value)
    app.register_error_handler(RequestTimeout, _from_slow_client)
    # A dependency that is down is the service's state, not the client's fault: 503, retry.
    for dependency_error in _dependency_errors():
        app.register_error_handler(dependency_error, _from_dependency_down)


def _dependency_errors() -> tuple[type[BaseException], ...]:
    import peewee
    import redis
    from playhouse.pool import MaxConnectionsExceeded

    from ctxcloud.storage import StorageUnavailable

    return (
        StorageUnavailable,
        peewee.OperationalError,
        peewee.InterfaceError,
        MaxConnectionsExceeded,
        redis.ConnectionError,
        redis.TimeoutError,
    )


def _from_slow_client(exc: RequestTimeout) -> flask.Response:
    """The body did not keep the minimum rate: nothing was stored, and the connection closes
    (what is left of the body is never read)."""
    log.info("request body too slow", extra={"phase": exc.phase})
    return _from_problem(
        RequestTimedOut(
            f"The request {exc.phase} did not arrive in time: send it at the rate the service "
            "requires, or through a proxy that buffers it."
        )
    )


def _from_unstorable_value(exc: Exception) -> flask.Response:
    """A value the database refuses (SQL's data exceptions: a NUL character in text on
    PostgreSQL, a number out of range) came from the request: 400, never a 500."""
    log.warning("value the database cannot store", extra={"error": type(exc).__name__})
    return _from_problem(
        BadRequest("The request holds a value that cannot be stored (e.g. a NUL character).")
    )


def _from_dependency_down(exc: Exception) -> flask.Response:
    log.warning("dependency unavailable", extra={"error": type(exc).__name__})
    return _from_problem(
        Unavailable(
            "A dependency of the service is unavailable; retry later.", headers={"Retry-After": "5"}
        )
    )


class ProblemSchema(ma.Schema):
    """RFC 9457 problem details, as every error response carries them."""

    type = ma.fields.String(
        metadata={
            "description": "URI naming the problem kind",
            "example": "urn:ctxcloud:problem:not_found",
        }
    )
    title = ma.fields.String(metadata={"description": "HTTP status phrase", "example": "Not Found"})
    status = ma.fields.Integer(metadata={"description": "HTTP status code", "example": 404})
    detail = ma.fields.String(
        metadata={"description": "Human-readable explanation", "example": "No such project."}
    )
    code = ma.fields.String(
        metadata={"description": "Stable machine-readable error code", "example": "not_found"}
    )
    request_id = ma.fields.String(
        metadata={"description": "The request's X-Request-ID", "example": "4f9c2b1e0a7d4c33"}
    )
    errors = ma.fields.Dict(
        keys=ma.fields.String(),
        values=ma.fields.Raw(),
        metadata={
            "description": "Validation errors by field (422 only)",
            "example": {"name": ["Missing data for required field."]},
        },
    )
    # Extension members (RFC 9457) of particular problems; absent from the others.
    quota = ma.fields.String(
        metadata={"description": "quota_exceeded: the quota reached", "example": "max_projects"}
    )
    limit = ma.fields.Integer(
        metadata={"description": "quota_exceeded: the quota's value", "example": 20}
    )
    used = ma.fields.Integer(
        metadata={"description": "quota_exceeded: what the tenant uses of it", "example": 20}
    )
    allowed = ma.fields.List(
        ma.fields.String(),
        metadata={
            "description": "unsupported_media_type: the content types the tenant allows",
            "example": ["text/*", "application/json"],
        },
    )
    rule = ma.fields.String(
        metadata={
            "description": "invalid_json: the rule the body broke (syntax, empty, encoding, "
            "depth, number_digits, non_finite_number, duplicate_key)",
            "example": "syntax",
        }
    )
    line = ma.fields.Integer(
        metadata={"description": "invalid_json: the line where it broke (from 1)", "example": 3}
    )
    column = ma.fields.Integer(
        metadata={"description": "invalid_json: the column where it broke (from 1)", "example": 5}
    )
    revision = ma.fields.Integer(
        metadata={
            "description": "history_pruned, revision_ahead: the project's head revision",
            "example": 52,
        }
    )
    history_starts_at = ma.fields.Integer(
        metadata={
            "description": "history_pruned: the oldest revision still readable",
            "example": 40,
        }
    )
