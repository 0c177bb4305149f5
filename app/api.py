"""The one flask-smorest Api: problem+json errors, security schemes and per-route conventions.

What every route shares is documented here, from what the route declares, instead of by
hand on each route: its permission (from @requires), its 401/403/429 problems, the
RateLimit-* headers of every rate-limited operation, and examples for every error.
"""

from __future__ import annotations

import http
from typing import Any

import flask
import flask_smorest
import marshmallow as ma
from apispec import BasePlugin
from flask_smorest import pagination
from flask_smorest.utils import prepare_response

from app.errors import PROBLEM_MIMETYPE, ProblemSchema, problem_type
from app.ratelimit import UNLIMITED_BLUEPRINTS
from app.roles import ROLE_PERMISSIONS

# Reusable error responses, referenced by name from operations (e.g. by @requires).
ERROR_RESPONSES = {
    "BadRequest": (400, "bad_request", "The request is malformed."),
    "Unauthorized": (401, "unauthorized", "Missing or invalid credential."),
    "Forbidden": (403, "forbidden", "This credential lacks the permission 'context:write'."),
    "QuotaExceeded": (
        403,
        "quota_exceeded",
        "The tenant's max_projects quota (20) is reached.",
    ),
    "NotFound": (404, "not_found", "No such resource."),
    "Conflict": (409, "conflict", "The resource changed."),
    "PreconditionFailed": (412, "precondition_failed", "The entry changed since that ETag."),
    "EntryTooLarge": (
        413,
        "entry_too_large",
        "The entry is larger than the limit of 1048576 bytes.",
    ),
    "UnsupportedMediaType": (
        415,
        "unsupported_media_type",
        "The tenant allows no entries of type 'image/png'.",
    ),
    "RangeNotSatisfiable": (416, "range_not_satisfiable", "The range is outside the entry."),
    "ValidationError": (422, "validation_error", "The request is not valid."),
    "RateLimited": (429, "rate_limited", "Rate limit exceeded: 600 per 1 minute."),
    "IntegrityError": (500, "integrity_error", "The stored entry failed its integrity check."),
    "Unavailable": (503, "unavailable", "A dependency is unavailable."),
}


API_DESCRIPTION = """\
Versioned project context for many tenants. Walkthrough: `docs/api.md`.

- **Authentication**: `Authorization: Bearer <credential>`, where the credential is a JWT access
  token (`POST /api/v1/auth/token`) or an API key (`ctx_...`; `X-API-Key` works too). The tenant
  always comes from the credential. Each operation names the permission it needs.
- **Errors** are `application/problem+json` (RFC 9457) with a stable `code` and a `request_id`.
- **Rate limits**: every operation but health and docs counts against the caller's budget and
  answers `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset`; a spent budget is a
  429 `rate_limited` with `Retry-After`.
- **Pagination**: `?page=1&page_size=50` (at most 1000) and the `X-Pagination` header.
"""

# Responses whose status has more than one code.
RESPONSE_DESCRIPTIONS = {
    "QuotaExceeded": "Forbidden: the credential lacks the permission (`forbidden`), or the "
    "tenant's quota is reached (`quota_exceeded`, with `quota`, `limit` and `used`); nothing "
    "was changed",
}

# Sent on every rate-limited response (and on the 429 that refuses one).
RATE_LIMIT_HEADERS = {
    "RateLimit-Limit": ("Requests the caller's current window allows", 600),
    "RateLimit-Remaining": ("Requests left in the current window", 599),
    "RateLimit-Reset": ("Seconds until the current window ends", 42),
}
HTTP_METHODS = frozenset({"get", "put", "post", "patch", "delete", "head", "options"})


def problem_example(status: int, code: str, detail: str) -> dict:
    """The body an error with this status and code carries, for OpenAPI examples."""
    example = {
        "type": problem_type(code),
        "title": http.HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code,
        "request_id": "4f9c2b1e0a7d4c33b8f1d2e3a4b5c6d7",
    }
    if status == 422:
        example["errors"] = {"name": ["Missing data for required field."]}
    if code == "quota_exceeded":
        example.update(quota="max_projects", limit=20, used=20)
    return example


def _code_for(status: int) -> str:
    """The code an error of this status usually carries (for examples of generic responses)."""
    for known_status, code, _ in ERROR_RESPONSES.values():
        if known_status == status:
            return code
    return http.HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")


# Past this page every list is empty, and (page - 1) * page_size could overflow SQL's 64-bit
# OFFSET (a 500): larger page numbers are read as this one (X-Pagination keeps theirs).
LAST_READ_PAGE = 2**53


def page_and_size(pagination_parameters: Any) -> tuple[int, int]:
    """The page and page size a list's query should use for flask-smorest's parameters."""
    return min(pagination_parameters.page, LAST_READ_PAGE), pagination_parameters.page_size


def _ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def _roles_holding(permission: str) -> str:
    roles = [role for role, granted in ROLE_PERMISSIONS.items() if permission in granted]
    return f"roles {', '.join(roles)}" if roles else "platform operators"


def access_text(operation: dict[str, Any]) -> str | None:
    """One line saying who may call an operation, from what @requires/@public declared."""
    security = operation.get("security")
    permission = operation.get("x-permission")
    if security == []:
        return "**Authentication:** none."
    if permission:
        return (
            f"**Permission:** `{permission}` ({_roles_holding(permission)}; "
            "API keys need it among their scopes)."
        )
    if security:
        return "**Permission:** none; any valid credential may call it."
    return None


def _has_response(responses: dict[Any, Any], status: str) -> bool:
    return any(str(key) == status for key in responses)


class OperationConventions(BasePlugin):
    """Document on every operation what the core enforces on every route."""

    def operation_helper(
        self, path: str | None = None, operations: dict | None = None, **kwargs: Any
    ) -> None:
        rule = kwargs.get("rule")
        blueprint = rule.endpoint.partition(".")[0] if rule is not None else None
        rate_limited = blueprint not in UNLIMITED_BLUEPRINTS
        path_parameters = bool((operations or {}).get("parameters"))
        for method, operation in (operations or {}).items():
            if method in HTTP_METHODS:
                document_operation(operation, rate_limited, path_parameters)


def document_operation(
    operation: dict[str, Any], rate_limited: bool, path_parameters: bool = False
) -> None:
    """Add the access line, the auth and rate-limit problems, and the RateLimit-* headers."""
    responses = operation.setdefault("responses", {})
    lines = [operation.get("description", "").strip()]
    access = access_text(operation)
    if access:
        lines.append(access)
    takes_input = path_parameters or operation.get("parameters") or operation.get("requestBody")
    if takes_input and not _has_response(responses, "400"):
        # A body that is not JSON at all, or a value no database stores (a NUL character).
        responses["400"] = _ref("responses", "BadRequest")
    if operation.get("security"):
        if not _has_response(responses, "401"):
            responses["401"] = _ref("responses", "Unauthorized")
        if operation.get("x-permission") and not _has_response(responses, "403"):
            responses["403"] = _ref("responses", "Forbidden")
    if rate_limited:
        lines.append(
            "**Rate limit:** counts against the caller's budget and its tenant's "
            "(`RateLimit-*` headers); 429 `rate_limited` with `Retry-After` once one is spent."
        )
        if not _has_response(responses, "429"):
            responses["429"] = _ref("responses", "RateLimited")
        for response in responses.values():
            if isinstance(response, dict) and "$ref" not in response:
                headers = response.setdefault("headers", {})
                for name in RATE_LIMIT_HEADERS:
                    headers.setdefault(name, _ref("headers", name))
    operation["description"] = "\n\n".join(line for line in lines if line)


class PaginationMetadataSchema(pagination.PaginationMetadataSchema):
    """flask-smorest's X-Pagination header body, with examples."""

    total = ma.fields.Int(metadata={"description": "Total number of items.", "example": 120})
    total_pages = ma.fields.Int(metadata={"description": "Total number of pages.", "example": 3})
    first_page = ma.fields.Int(
        metadata={"description": "First available page number.", "example": 1}
    )
    last_page = ma.fields.Int(metadata={"description": "Last available page number.", "example": 3})
    page = ma.fields.Int(metadata={"description": "Current page number.", "example": 2})
    previous_page = ma.fields.Int(metadata={"description": "Previous page number.", "example": 1})
    next_page = ma.fields.Int(metadata={"description": "Next page number.", "example": 3})


class Api(flask_smorest.Api):
    """flask-smorest's Api, documenting errors as problem+json and every route's conventions."""

    ERROR_SCHEMA = ProblemSchema

    def _init_spec(self, **kwargs: Any) -> None:
        kwargs["extra_plugins"] = [*(kwargs.get("extra_plugins") or ()), OperationConventions()]
        kwargs.setdefault("info", {"description": API_DESCRIPTION})
        super()._init_spec(**kwargs)

    def _register_pagination_header(self) -> None:
        # The header's value is a JSON object: `content`, not `schema` (a `schema` of type
        # object means OpenAPI's `simple` style, `total,120,page,2`, which it is not).
        self.spec.components.header(
            "PAGINATION",
            {
                "description": pagination.PAGINATION_HEADER["description"],
                "content": {"application/json": {"schema": PaginationMetadataSchema}},
            },
            lazy=True,
        )

    def _register_responses(self) -> None:
        for name, (description, example) in RATE_LIMIT_HEADERS.items():
            self.spec.components.header(
                name,
                {"description": description, "schema": {"type": "integer"}, "example": example},
            )
        for status in http.HTTPStatus:
            response: dict[str, Any] = {"description": status.phrase}
            if status >= 400:
                response["schema"] = self.ERROR_SCHEMA
                response["example"] = problem_example(
                    status, _code_for(status), status.description or status.phrase
                )
            prepare_response(response, self.spec, PROBLEM_MIMETYPE)
            self.spec.components.response(status.name, response, lazy=True)
        default = {
            "description": "Error (problem+json)",
            "schema": self.ERROR_SCHEMA,
            "example": problem_example(500, "internal_error", "An unexpected error occurred."),
        }
        prepare_response(default, self.spec, PROBLEM_MIMETYPE)
        self.spec.components.response("DEFAULT_ERROR", default, lazy=True)
        for name, (status, code, detail) in ERROR_RESPONSES.items():
            response = {
                "description": RESPONSE_DESCRIPTIONS.get(name, http.HTTPStatus(status).phrase),
                "schema": self.ERROR_SCHEMA,
                "example": problem_example(status, code, detail),
            }
            if status == 401:
                response["headers"] = {
                    "WWW-Authenticate": {
                        "schema": {"type": "string"},
                        "description": "Bearer challenge",
                    }
                }
            if status == 429:
                response["headers"] = {
                    "Retry-After": {
                        "schema": {"type": "integer"},
                        "description": "Seconds until a retry may succeed",
                        "example": 42,
                    },
                    **{name: _ref("headers", name) for name in RATE_LIMIT_HEADERS},
                }
            prepare_response(response, self.spec, PROBLEM_MIMETYPE)
            self.spec.components.response(name, response)
        self.spec.components.security_scheme(
            "bearerAuth",
            {
                "type": "http",
                "scheme": "bearer",
                "description": "`Authorization: Bearer <credential>`: a JWT access token from "
                "`POST /api/v1/auth/token` (users), or an API key `ctx_...` (services). Paste "
                "either here, without the word Bearer.",
            },
        )
        self.spec.components.security_scheme(
            "apiKeyHeader",
            {
                "type": "apiKey",
                "in": "header",
                "name": "X-API-Key",
                "description": "`X-API-Key: ctx_...`: an API key, as an alternative to bearer.",
            },
        )

    def _openapi_json(self) -> flask.Response:
        """Serve the spec built once per app; it does not change after start-up."""
        ext = flask.current_app.extensions["ctxcloud"]
        if ext.openapi_json is None:
            ext.openapi_json = flask.json.dumps(self.spec.to_dict(), indent=2, sort_keys=False)
        return flask.current_app.response_class(ext.openapi_json, mimetype="application/json")
