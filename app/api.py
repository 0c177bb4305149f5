"""The one flask-smorest Api: problem+json errors, security schemes and per-route conventions.

What every route shares is documented here, from what the route declares, instead of by
hand on each route: its permission (from @requires), its 401/403/429 problems, the
RateLimit-* headers of every rate-limited operation, and examples for every error.

All of it goes through flask-smorest's and apispec's public API (`create_api`: spec_kwargs,
components, apispec plugins), and the document is served by a route of ctxcloud's, built
once per app.
"""

from __future__ import annotations

import http
import threading
from collections.abc import Callable
from typing import Any

import flask
import flask_smorest
import marshmallow as ma
from apispec import BasePlugin
from apispec.core import Components
from flask_smorest import pagination

from ctxcloud import docs_assets
from ctxcloud.auth import public
from ctxcloud.errors import PROBLEM_MIMETYPE, ProblemResponse, ProblemSchema, problem_type
from ctxcloud.json_input import is_json_media_type
from ctxcloud.ratelimit import UNLIMITED_BLUEPRINTS
from ctxcloud.roles import ROLE_PERMISSIONS
from ctxcloud.settings import ConfigError

# The core's error responses, referenced by name from operations (e.g. by @requires); a
# plugin adds its own through the problem_responses hook.
CORE_RESPONSES = [
    ProblemResponse(
        "BadRequest",
        400,
        "bad_request",
        "The request is malformed.",
        description=(
            "Bad Request: the request is malformed (`bad_request`), or breaks a rule the operation "
            "names (such as `invalid_path`, or `invalid_json` for a JSON header); nothing was "
            "changed"
        ),
    ),
    ProblemResponse(
        "InvalidJson",
        400,
        "invalid_json",
        "The body is not valid JSON: Expecting ',' delimiter (line 3, column 5).",
        description=(
            "Bad Request: the body is not strict JSON (`invalid_json`: `rule` names the rule it "
            "broke, `line` and `column` where; a required body that is absent or empty is rule "
            "`empty`), or the request holds a value the service refuses (`bad_request`, or the "
            "operation's own codes such as `invalid_path`); nothing was changed"
        ),
    ),
    ProblemResponse(
        "Unauthorized",
        401,
        "unauthorized",
        "Missing or invalid credential.",
        description=(
            "Unauthorized: a missing or invalid credential (`unauthorized`), or a genuine token "
            "past "
            "its expiry (`token_expired`: refresh it, or log in again for a refresh token); `WWW-"
            "Authenticate` carries the Bearer challenge"
        ),
    ),
    ProblemResponse(
        "Forbidden",
        403,
        "forbidden",
        "This credential lacks the permission 'context:write'.",
    ),
    ProblemResponse(
        "QuotaExceeded",
        403,
        "quota_exceeded",
        "The tenant's max_projects quota (20) is reached.",
        description=(
            "Forbidden: the credential lacks the permission (`forbidden`), or the tenant's quota is"
            " "
            "reached (`quota_exceeded`, with `quota`, `limit` and `used`); nothing was changed"
        ),
    ),
    ProblemResponse(
        "NotFound",
        404,
        "not_found",
        "No such resource.",
    ),
    ProblemResponse(
        "Conflict",
        409,
        "conflict",
        "The resource changed.",
    ),
    ProblemResponse(
        "PreconditionFailed",
        412,
        "precondition_failed",
        "The entry changed since that ETag.",
    ),
    ProblemResponse(
        "PayloadTooLarge",
        413,
        "payload_too_large",
        "The request body is larger than the limit of 16777216 bytes.",
        description=(
            "Content Too Large: the body is past the service's limit for JSON bodies "
            "(`payload_too_large`; `MAX_JSON_BYTES`, 16 MiB by default), whether or not Content-"
            "Length was sent; nothing was changed"
        ),
    ),
    ProblemResponse(
        "NotJson",
        415,
        "unsupported_media_type",
        (
            "This operation takes a JSON body: send it with Content-Type: application/json (the "
            "request has 'text/plain')."
        ),
        description=(
            "Unsupported Media Type: the body was not sent as `application/json` (or "
            "`application/*+json`) (`unsupported_media_type`); nothing was changed"
        ),
    ),
    ProblemResponse(
        "RequestTimeout",
        408,
        "request_timeout",
        "The request body did not arrive in time.",
        description=(
            "Request Timeout: the request head or body arrived too slowly (`request_timeout`; "
            "docs/availability.md); nothing was stored and the connection closed: retry"
        ),
    ),
    ProblemResponse(
        "UriTooLong",
        414,
        "uri_too_long",
        "The request line is too long.",
        description=(
            "URI Too Long: the request line is past the server's limit (`uri_too_long`, 4094 bytes "
            "by"
            " default)"
        ),
    ),
    ProblemResponse(
        "HeaderFieldsTooLarge",
        431,
        "request_header_fields_too_large",
        "The request's header fields are too large.",
        description=(
            "Request Header Fields Too Large: more header fields, or a longer header line, than the"
            " "
            "server accepts (`request_header_fields_too_large`; 100 fields of 8190 bytes by "
            "default)"
        ),
    ),
    ProblemResponse(
        "ValidationError",
        422,
        "validation_error",
        "The request is not valid.",
    ),
    ProblemResponse(
        "RateLimited",
        429,
        "rate_limited",
        "Rate limit exceeded: 600 per 1 minute.",
    ),
    ProblemResponse(
        "IntegrityError",
        500,
        "integrity_error",
        "The stored entry failed its integrity check.",
    ),
    ProblemResponse(
        "Unavailable",
        503,
        "unavailable",
        "A dependency is unavailable.",
        description=(
            "Service Unavailable: a dependency (database, cache or storage) is down or too slow "
            "(`unavailable`); retry after `Retry-After` seconds"
        ),
    ),
]

API_DESCRIPTION = """\
Versioned project context for many tenants. Walkthrough: `docs/api.md`.

- **Authentication**: `Authorization: Bearer <credential>`, where the credential is a JWT access
  token (`POST /api/v1/auth/token`) or an API key (`ctx_...`; `X-API-Key` works too). The tenant
  always comes from the credential. Each operation names the permission it needs.
- **Errors** are `application/problem+json` (RFC 9457) with a stable `code` and a `request_id`.
- **JSON input** is strict (RFC 8259, UTF-8): at most 64 levels deep, numbers of at most 100
  digits, no NaN or Infinity (nor numbers past the double range), no key twice in one object.
  Breaking a rule is a 400 `invalid_json` naming the `rule` (and `line`, `column`); a body not
  sent as `application/json` is a 415, one past 16 MiB a 413 `payload_too_large`.
- **Rate limits**: every operation but health and docs counts against the caller's budget and
  answers `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset`; a spent budget is a
  429 `rate_limited` with `Retry-After`.
- **Pagination**: `?page=1&page_size=50` (at most 1000) and the `X-Pagination` header.
"""

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
    if code == "invalid_json":
        example.update(rule="syntax", line=3, column=5)
    return example


def _code_for(status: int) -> str:
    """The code an error of this status usually carries (for examples of generic responses)."""
    for response in CORE_RESPONSES:
        if response.status == status:
            return response.code
    return http.HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")


# Most items one page of any list holds (`?page_size=`); flask-smorest's own default is 100.
MAX_PAGE_SIZE = 1000

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


def _response_is(responses: dict[Any, Any], status: str, name: str) -> bool:
    """Whether the response for `status` is the named component (by name or by $ref)."""
    found = [value for key, value in responses.items() if str(key) == status]
    return bool(found) and found[0] in (name, _ref("responses", name))


def _set_response(responses: dict[Any, Any], status: str, response: Any) -> None:
    for key in [key for key in responses if str(key) == status]:
        del responses[key]
    responses[status] = response


def takes_json(operation: dict[str, Any]) -> bool:
    """Whether an operation's request body is JSON (and so read by the strict reader)."""
    content = (operation.get("requestBody") or {}).get("content") or {}
    return any(is_json_media_type(media_type) for media_type in content)


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
    if takes_json(operation):
        # The strict reader's problems (app/json_input.py), the body limit and the media type.
        if _response_is(responses, "400", "BadRequest") or not _has_response(responses, "400"):
            _set_response(responses, "400", _ref("responses", "InvalidJson"))
        if not _has_response(responses, "413"):
            responses["413"] = _ref("responses", "PayloadTooLarge")
        if not _has_response(responses, "415"):
            responses["415"] = _ref("responses", "NotJson")
    elif takes_input and not _has_response(responses, "400"):
        # A body that is not JSON at all, or a value no database stores (a NUL character).
        responses["400"] = _ref("responses", "BadRequest")
    # The server's own limits hold on every operation (app/gunicorn_worker.py).
    for status, name in (("408", "RequestTimeout"), ("414", "UriTooLong")):
        if not _has_response(responses, status):
            responses[status] = _ref("responses", name)
    if not _has_response(responses, "431"):
        responses["431"] = _ref("responses", "HeaderFieldsTooLarge")
    if operation.get("security"):
        if not _has_response(responses, "503"):
            responses["503"] = _ref("responses", "Unavailable")
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


class SchemaKeywords(BasePlugin):
    """JSON Schema keywords a marshmallow schema declares beyond its fields.

    A rule about several fields (exactly one of `content` and `content_base64`) is no field's:
    a schema class states it as ``OPENAPI_KEYWORDS = {"oneOf": [...], "example": {...}}``,
    merged into its component, so the document says what the service enforces.
    """

    def schema_helper(self, name: str, definition: dict, **kwargs: Any) -> dict | None:
        keywords = getattr(kwargs.get("schema"), "OPENAPI_KEYWORDS", None)
        return dict(keywords) if isinstance(keywords, dict) else None


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
    """flask-smorest's Api with problem+json as its error schema, documenting its routes when
    the document is first read rather than when they are registered.

    Writing a blueprint's operations into the document (flask-smorest's
    ``register_views_in_doc``: deep copies and marshmallow schema resolution) was most of the
    cost of building an app, which every worker start, CLI command and test pays, while the
    document is read only by ``/api/v1/openapi.json`` and Swagger UI. So `register_blueprint`
    registers the routes at once and queues their documentation; `defer` queues other work
    that must follow it; reading `spec` runs the queue, in order, once. The document comes
    out the same. ``wsgi.py`` reads it at start so a server still fails there on a broken one.
    The rest of what ctxcloud documents goes in through public API (`create_api`).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._spec: Any = None
        self._pending: list[Callable[[Any], None]] = []
        self._documenting = threading.Lock()
        super().__init__(*args, **kwargs)

    @property
    def spec(self) -> Any:
        """The OpenAPI document (apispec's APISpec), with every queued part written in."""
        if self._pending:
            with self._documenting:
                while self._pending:
                    self._pending.pop(0)(self._spec)
        return self._spec

    @spec.setter
    def spec(self, value: Any) -> None:
        self._spec = value

    def defer(self, step: Callable[[Any], None]) -> None:
        """Run `step(spec)` when the document is first read, after what is queued already; it
        writes into the APISpec it is given (reading `self.spec` there would wait on itself)."""
        self._pending.append(step)

    def register_blueprint(
        self, blp: flask_smorest.Blueprint, *, parameters: Any = None, **options: Any
    ) -> None:
        """flask-smorest's registration, its documentation part queued (see the class)."""
        name = options.get("name", blp.name)
        self._app.extensions["flask-smorest"]["blp_name_to_api"][name] = self
        self._app.register_blueprint(blp, **options)

        def document(spec: Any) -> None:
            blp.register_views_in_doc(self, self._app, spec, name=name, parameters=parameters)
            spec.tag({"name": name, "description": blp.description})

        self.defer(document)

    # flask-smorest documents its default error responses with this schema (and registers it
    # when the Api is made): here every error is a problem.
    ERROR_SCHEMA = ProblemSchema

    def register_problem_responses(self, responses: list[ProblemResponse]) -> None:
        """Document each declared problem response once, under its name (the core's and every
        plugin's); routes reference it with ``alt_response(status, response=name)``. Queued
        (`defer`) like the rest of the document."""
        self.defer(lambda spec: _document_problem_responses(spec, responses))


def _document_problem_responses(spec: Any, responses: list[ProblemResponse]) -> None:
    for declared in responses:
        status = declared.status
        response: dict[str, Any] = {
            "description": declared.description or http.HTTPStatus(status).phrase,
        }
        if status == 401:
            response["headers"] = {
                "WWW-Authenticate": {
                    "schema": {"type": "string"},
                    "description": "Bearer challenge",
                }
            }
        if status == 503:
            response["headers"] = {
                "Retry-After": {
                    "schema": {"type": "integer"},
                    "description": "Seconds until a retry may succeed",
                    "example": 5,
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
        example = problem_example(status, declared.code, declared.detail)
        response["content"] = _problem_content(example)
        spec.components.response(declared.name, response)


def create_api(app: flask.Flask) -> Api:
    """The app's one Api, its document completed through flask-smorest's and apispec's public
    API: apispec plugins and the description as `spec_kwargs`, then components."""
    if app.config.get("OPENAPI_URL_PREFIX"):
        raise ConfigError(
            "CTXCLOUD_OPENAPI_URL_PREFIX must stay unset: ctxcloud serves /api/v1/openapi.json "
            "and /api/v1/docs itself (flask-smorest's would build the document per request)"
        )
    api = Api(
        app,
        spec_kwargs={
            "extra_plugins": [OperationConventions(), SchemaKeywords()],
            "info": {"description": API_DESCRIPTION},
        },
    )
    api.defer(_document_components)
    app.register_blueprint(docs)
    return api


def _document_components(spec: Any) -> None:
    """What every route's documentation refers to (queued first: the routes' go after it)."""
    components = spec.components
    for name, (description, example) in RATE_LIMIT_HEADERS.items():
        components.header(
            name, {"description": description, "schema": {"type": "integer"}, "example": example}
        )
    _document_default_responses(components, Api.DEFAULT_ERROR_RESPONSE_NAME)
    _document_pagination_header(components)
    components.security_scheme(
        "bearerAuth",
        {
            "type": "http",
            "scheme": "bearer",
            "description": "`Authorization: Bearer <credential>`: a JWT access token from "
            "`POST /api/v1/auth/token` (users) or `POST /api/v1/oauth/token` (OAuth clients), "
            "an access token of the tenant's own identity provider (federation), or an API "
            "key `ctx_...` (services). Paste it here, without the word Bearer.",
        },
    )
    components.security_scheme(
        "apiKeyHeader",
        {
            "type": "apiKey",
            "in": "header",
            "name": "X-API-Key",
            "description": "`X-API-Key: ctx_...`: an API key, as an alternative to bearer.",
        },
    )


def _problem_content(example: dict[str, Any]) -> dict[str, Any]:
    return {PROBLEM_MIMETYPE: {"schema": ProblemSchema, "example": example}}


# flask-smorest registers a few components *lazily* (written into the document only once an
# operation references them) when the Api is made: a response per HTTP status, named like
# NOT_FOUND, and DEFAULT_ERROR, which @blp.arguments (422), @blp.response, @blp.paginate and
# ETags reference, all `application/json`; and the X-Pagination header, PAGINATION. Nothing
# references them yet, so ours replace them for every reference to come (apispec's
# Components keeps the lazy ones in `responses_lazy` and `headers_lazy`).
# tests/docs/test_flask_smorest_pins.py fails if flask-smorest stops working this way.


def _document_default_responses(components: Components, default_error: str) -> None:
    """flask-smorest's default responses, as problem+json with examples."""
    for status in http.HTTPStatus:
        response: dict[str, Any] = {"description": status.phrase}
        if status >= 400:
            response["content"] = _problem_content(
                problem_example(status, _code_for(status), status.description or status.phrase)
            )
        components.responses_lazy.pop(status.name, None)
        components.response(status.name, response, lazy=True)
    components.responses_lazy.pop(default_error, None)
    components.response(
        default_error,
        {
            "description": "Error (problem+json)",
            "content": _problem_content(
                problem_example(500, "internal_error", "An unexpected error occurred.")
            ),
        },
        lazy=True,
    )


def _document_pagination_header(components: Components) -> None:
    """The X-Pagination header's value is a JSON object: `content`, not flask-smorest's
    `schema` (a `schema` of type object means OpenAPI's `simple` style, `total,120,page,2`,
    which it is not); its schema, PaginationMetadata, is ours, with examples."""
    components.schemas.pop("PaginationMetadata", None)
    components.schema("PaginationMetadata", schema=PaginationMetadataSchema)
    components.headers_lazy.pop("PAGINATION", None)
    components.header(
        "PAGINATION",
        {
            "description": pagination.PAGINATION_HEADER["description"],
            "content": {"application/json": {"schema": PaginationMetadataSchema}},
        },
        lazy=True,
    )


# The document and its page are served by ctxcloud, not flask-smorest (whose
# OPENAPI_URL_PREFIX stays unset): flask-smorest builds the document again on every request,
# this builds it once per app. The blueprint and endpoints keep flask-smorest's names, which
# the rate limiter exempts (ratelimit.UNLIMITED_BLUEPRINTS).
docs = flask.Blueprint("api-docs", __name__, url_prefix="/api/v1")

SWAGGER_UI_CONFIG = {"deepLinking": True, "persistAuthorization": True}

SWAGGER_UI_PAGE = """\
<!DOCTYPE html>
<html>
  <head>
    <title>{{ title }}</title>
    <link href="{{ assets }}/swagger-ui.css" rel="stylesheet" type="text/css"/>
  </head>
  <body>
    <div id="swagger-ui-container"></div>
    <script src="{{ assets }}/swagger-ui-standalone-preset.js"></script>
    <script src="{{ assets }}/swagger-ui-bundle.js"></script>
    <script>
      window.onload = function () {
        window.ui = SwaggerUIBundle({{ config | tojson }});
      };
    </script>
  </body>
</html>
"""


@docs.route("/openapi.json")
@public
def openapi_json() -> flask.Response:
    """The OpenAPI document, built on the first request: nothing changes it after start-up."""
    app = flask.current_app
    return app.response_class(openapi_document(app), mimetype="application/json")


def openapi_document(app: flask.Flask) -> str:
    """The app's OpenAPI document as served (JSON), written on first use and kept."""
    ext = app.extensions["ctxcloud"]
    if ext.openapi_json is None:
        with app.app_context():
            ext.openapi_json = flask.json.dumps(ext.api.spec.to_dict(), indent=2, sort_keys=False)
    return ext.openapi_json


@docs.route("/docs")
@public
def openapi_swagger_ui() -> str:
    """Swagger UI on the document, its files served by the app (docs_assets): no CDN."""
    config = {
        "url": flask.url_for(".openapi_json"),
        "dom_id": "#swagger-ui-container",
        **SWAGGER_UI_CONFIG,
    }
    return flask.render_template_string(
        SWAGGER_UI_PAGE,
        title=flask.current_app.extensions["ctxcloud"].api.spec.title,
        assets=docs_assets.assets.url_prefix,
        config=config,
    )
