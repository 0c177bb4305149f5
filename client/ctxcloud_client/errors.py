"""Exceptions named after the service's stable problem `code`s (RFC 9457 problem+json).

Every error the client raises is a `CtxcloudError`. An answer of the service becomes the class
its `code` names (`quota_exceeded` -> `QuotaExceeded`), else the class of its HTTP status, so
a code this client does not know yet is still caught by the status family it belongs to
(`except Forbidden` catches `QuotaExceeded` and any future 403 code).
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

import httpx


class CtxcloudError(Exception):
    """An error of the service (status, code, detail, request id, the body) or of the client
    itself (then `status` is None)."""

    status_code: ClassVar[int | None] = None
    default_code: ClassVar[str] = "error"

    def __init__(
        self,
        detail: str,
        *,
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
        body: Any = None,
        headers: httpx.Headers | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status if status is not None else self.status_code
        self.code = code or self.default_code
        self.request_id = request_id
        self.body = body
        self.headers = headers if headers is not None else httpx.Headers()

    def __str__(self) -> str:
        parts = [f"{self.status} {self.code}" if self.status else self.code, self.detail]
        text = ": ".join(part for part in parts if part)
        return f"{text} (request id {self.request_id})" if self.request_id else text


class ConnectionFailed(CtxcloudError):
    """The service could not be reached, or the connection broke (after any retries)."""

    default_code = "connection_failed"


class ContentMismatch(CtxcloudError):
    """Bytes received do not match the size or SHA-256 the service declared for them."""

    default_code = "content_mismatch"


class BadRequest(CtxcloudError):
    status_code, default_code = 400, "bad_request"


class InvalidJson(BadRequest):
    default_code = "invalid_json"


class InvalidPath(BadRequest):
    """An entry path the rules refuse; raised before sending for what the client can see
    (empty, `.` or `..` segments, a leading `/`, a backslash, control characters)."""

    default_code = "invalid_path"


class ChecksumMismatch(BadRequest):
    """The body's SHA-256 is not the `Content-SHA256` sent: nothing was stored."""

    default_code = "checksum_mismatch"


class Unauthorized(CtxcloudError):
    status_code, default_code = 401, "unauthorized"


class TokenExpired(Unauthorized):
    default_code = "token_expired"


class OAuthError(Unauthorized):
    """The token endpoint refused (RFC 6749 section 5.2): `error` is its code
    (`invalid_client`, `invalid_scope`, ...), `detail` its `error_description`."""

    default_code = "oauth_error"

    def __init__(self, detail: str, *, error: str, **kwargs: Any) -> None:
        kwargs.setdefault("code", error)
        super().__init__(detail, **kwargs)
        self.error = error


class Forbidden(CtxcloudError):
    status_code, default_code = 403, "forbidden"


class QuotaExceeded(Forbidden):
    default_code = "quota_exceeded"


class TenantSuspended(Forbidden):
    default_code = "tenant_suspended"


class NotFound(CtxcloudError):
    status_code, default_code = 404, "not_found"


class MethodNotAllowed(CtxcloudError):
    status_code, default_code = 405, "method_not_allowed"


class RequestTimeout(CtxcloudError):
    status_code, default_code = 408, "request_timeout"


class Conflict(CtxcloudError):
    status_code, default_code = 409, "conflict"


class PreconditionFailed(CtxcloudError):
    """An `If-Match`/`If-None-Match` condition did not hold: nothing was changed."""

    status_code, default_code = 412, "precondition_failed"


class PayloadTooLarge(CtxcloudError):
    status_code, default_code = 413, "payload_too_large"


class EntryTooLarge(PayloadTooLarge):
    default_code = "entry_too_large"


class UnsupportedMediaType(CtxcloudError):
    status_code, default_code = 415, "unsupported_media_type"


class RangeNotSatisfiable(CtxcloudError):
    status_code, default_code = 416, "range_not_satisfiable"


class ValidationError(CtxcloudError):
    """422: `errors` maps each field to its messages."""

    status_code, default_code = 422, "validation_error"

    @property
    def errors(self) -> dict[str, Any]:
        errors = self.body.get("errors") if isinstance(self.body, dict) else None
        return errors if isinstance(errors, dict) else {}


class RateLimited(CtxcloudError):
    """429 once the retries are spent; `retry_after` is the wait the service asked for."""

    status_code, default_code = 429, "rate_limited"

    @property
    def retry_after(self) -> float | None:
        from ctxcloud_client.retry import retry_after_seconds

        return retry_after_seconds(self.headers.get("Retry-After"))


class ServerError(CtxcloudError):
    status_code, default_code = 500, "internal_error"


class IntegrityError(ServerError):
    """The stored entry failed the service's integrity check: it was not served."""

    default_code = "integrity_error"


class Unavailable(ServerError):
    """503: a dependency of the service is down; retried, then raised."""

    status_code, default_code = 503, "unavailable"


def _subclasses(cls: type[CtxcloudError]) -> list[type[CtxcloudError]]:
    found = []
    for sub in cls.__subclasses__():
        found.append(sub)
        found.extend(_subclasses(sub))
    return found


_LOCAL = (CtxcloudError, ConnectionFailed, ContentMismatch, OAuthError)
BY_CODE: dict[str, type[CtxcloudError]] = {
    cls.default_code: cls for cls in _subclasses(CtxcloudError) if cls not in _LOCAL
}
# The family of each status: the classes that declare a status of their own.
BY_STATUS: dict[int, type[CtxcloudError]] = {
    cls.status_code: cls
    for cls in _subclasses(CtxcloudError)
    if cls.status_code is not None and "status_code" in vars(cls)
}


def error_class(status: int, code: str | None) -> type[CtxcloudError]:
    """The class for a `code`, else for the `status`, else the base (or ServerError, 5xx)."""
    if code and code in BY_CODE:
        return BY_CODE[code]
    if status in BY_STATUS:
        return BY_STATUS[status]
    return ServerError if status >= 500 else CtxcloudError


def parse_body(response: httpx.Response) -> Any:
    """The body as JSON when it is JSON, else its text (an error page of a proxy)."""
    try:
        return response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return response.text


def error_from_response(response: httpx.Response) -> CtxcloudError:
    """The exception for an error answer of the service (read, not yet raised)."""
    body = parse_body(response)
    problem = body if isinstance(body, dict) else {}
    code = problem.get("code") if isinstance(problem.get("code"), str) else None
    detail = problem.get("detail") or problem.get("title") or response.reason_phrase
    if not isinstance(detail, str):
        detail = str(detail)
    request_id = problem.get("request_id") or response.headers.get("X-Request-ID")
    cls = error_class(response.status_code, code)
    return cls(
        detail,
        status=response.status_code,
        code=code or BY_STATUS.get(response.status_code, cls).default_code,
        request_id=request_id if isinstance(request_id, str) else None,
        body=body,
        headers=response.headers,
    )


def oauth_error_from_response(response: httpx.Response) -> CtxcloudError:
    """A token endpoint error: RFC 6749 JSON becomes OAuthError; anything else (a 429 or 503
    problem) the usual class."""
    body = parse_body(response)
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        description = body.get("error_description")
        return OAuthError(
            description if isinstance(description, str) else body["error"],
            error=body["error"],
            status=response.status_code,
            request_id=response.headers.get("X-Request-ID"),
            body=body,
            headers=response.headers,
        )
    return error_from_response(response)
