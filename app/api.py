"""The one flask-smorest Api: problem+json error responses and security schemes in OpenAPI."""

from __future__ import annotations

import http

import flask
import flask_smorest
from flask_smorest.utils import prepare_response

from app.errors import PROBLEM_MIMETYPE, ProblemSchema, problem_type

# Reusable error responses, referenced by name from operations (e.g. by @requires).
ERROR_RESPONSES = {
    "BadRequest": (400, "bad_request", "The request is malformed."),
    "Unauthorized": (401, "unauthorized", "Missing or invalid credential."),
    "Forbidden": (403, "forbidden", "This credential lacks the permission 'context:write'."),
    "NotFound": (404, "not_found", "No such resource."),
    "Conflict": (409, "conflict", "The resource changed."),
    "PreconditionFailed": (412, "precondition_failed", "The entry changed since that ETag."),
    "EntryTooLarge": (
        413,
        "entry_too_large",
        "The entry is larger than the limit of 1048576 bytes.",
    ),
    "RangeNotSatisfiable": (416, "range_not_satisfiable", "The range is outside the entry."),
    "ValidationError": (422, "validation_error", "The request is not valid."),
    "RateLimited": (429, "rate_limited", "Rate limit exceeded: 600 per 1 minute."),
    "IntegrityError": (500, "integrity_error", "The stored entry failed its integrity check."),
    "Unavailable": (503, "unavailable", "A dependency is unavailable."),
}


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
    return example


class Api(flask_smorest.Api):
    """flask-smorest's Api, documenting errors as problem+json instead of its own shape."""

    ERROR_SCHEMA = ProblemSchema

    def _register_responses(self) -> None:
        for status in http.HTTPStatus:
            response = {"description": status.phrase}
            if not (100 <= status < 200) and status not in (204, 304):
                response["schema"] = self.ERROR_SCHEMA
            prepare_response(response, self.spec, PROBLEM_MIMETYPE)
            self.spec.components.response(status.name, response, lazy=True)
        default = {"description": "Error (problem+json)", "schema": self.ERROR_SCHEMA}
        prepare_response(default, self.spec, PROBLEM_MIMETYPE)
        self.spec.components.response("DEFAULT_ERROR", default, lazy=True)
        for name, (status, code, detail) in ERROR_RESPONSES.items():
            response = {
                "description": http.HTTPStatus(status).phrase,
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
                    }
                }
            prepare_response(response, self.spec, PROBLEM_MIMETYPE)
            self.spec.components.response(name, response)
        self.spec.components.security_scheme(
            "bearerAuth",
            {
                "type": "http",
                "scheme": "bearer",
                "description": "A JWT access token (users) or an API key (services).",
            },
        )
        self.spec.components.security_scheme(
            "apiKeyHeader",
            {
                "type": "apiKey",
                "in": "header",
                "name": "X-API-Key",
                "description": "An API key (ctx_...).",
            },
        )

    def _openapi_json(self) -> flask.Response:
        """Serve the spec built once per app; it does not change after start-up."""
        ext = flask.current_app.extensions["ctxcloud"]
        if ext.openapi_json is None:
            ext.openapi_json = flask.json.dumps(self.spec.to_dict(), indent=2, sort_keys=False)
        return flask.current_app.response_class(ext.openapi_json, mimetype="application/json")
