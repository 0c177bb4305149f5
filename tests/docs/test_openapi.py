"""The OpenAPI document is complete enough to use without reading the code, and truthful.

Every operation says what it does, who may call it, how it fails and how it is rate limited;
every schema field has a description and an example; every example is valid for its schema.
"""

from __future__ import annotations

import importlib
import json
import sys
from http import HTTPStatus
from typing import Any

import pytest
from openapi_schema_validator import OAS31Validator, oas31_format_checker

from ctxcloud import ConfigError, create_app
from tests.docs.openapi import (
    NO_EXAMPLE,
    composed_example,
    operations,
    refers_to_component,
    resolve,
)

PROBLEM = "application/problem+json"
RATE_LIMIT_HEADERS = {"RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"}
GENERATED_LINES = ("**Permission:**", "**Authentication:**", "**Rate limit:**")


@pytest.fixture
def spec(client) -> dict:
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    return response.get_json()


def schema_errors(spec: dict, schema: dict, instance: Any) -> list[str]:
    """Why `instance` is not valid for `schema` (whose $refs point into the spec)."""
    root = {**schema, "components": spec["components"]}
    validator = OAS31Validator(root, format_checker=oas31_format_checker)
    return [error.message for error in validator.iter_errors(instance)]


def test_every_operation_says_what_it_does_and_who_may_call_it(spec):
    problems = []
    for method, path, op in operations(spec):
        where = f"{method} {path}"
        own_text = op.get("description", "").split("\n\n")[0]
        if not op.get("summary"):
            problems.append(f"{where}: no summary")
        if not own_text or own_text.startswith(GENERATED_LINES):
            problems.append(f"{where}: no description of its own (a docstring body)")
        if "security" not in op:
            problems.append(f"{where}: declares neither a permission nor that it is public")
        access = [line for line in op["description"].split("\n\n") if line.startswith("**Perm")]
        if op.get("x-permission") and f"`{op['x-permission']}`" not in "".join(access):
            problems.append(f"{where}: its description does not name its permission")
        if op.get("security") == [] and "**Authentication:** none." not in op["description"]:
            problems.append(f"{where}: its description does not say it needs no credential")
    assert not problems, "\n".join(problems)


def test_authenticated_operations_document_401_and_403(spec):
    schemes = spec["components"]["securitySchemes"]
    for method, path, op in operations(spec):
        if not op.get("security"):
            continue
        for requirement in op["security"]:
            assert set(requirement) <= set(schemes), f"{method} {path}"
        assert "401" in op["responses"], f"{method} {path}"
        if op.get("x-permission"):
            assert "403" in op["responses"], f"{method} {path}"


def test_security_schemes_let_the_docs_page_authorize_with_a_jwt_or_an_api_key(spec):
    schemes = spec["components"]["securitySchemes"]
    assert schemes["bearerAuth"]["type"] == "http"
    assert schemes["bearerAuth"]["scheme"] == "bearer"
    assert "JWT" in schemes["bearerAuth"]["description"]
    assert "ctx_" in schemes["bearerAuth"]["description"]
    assert schemes["apiKeyHeader"] == {
        **schemes["apiKeyHeader"],
        "in": "header",
        "name": "X-API-Key",
    }


def test_rate_limited_operations_document_429_and_the_ratelimit_headers(spec):
    limited = 0
    for method, path, op in operations(spec):
        if path.startswith("/api/v1/health"):
            assert "429" not in op["responses"], f"{method} {path}: health is never limited"
            continue
        limited += 1
        too_many = resolve(spec, op["responses"].get("429"))
        assert too_many, f"{method} {path}: no 429"
        assert {"Retry-After", *RATE_LIMIT_HEADERS} <= set(too_many["headers"])
        for status, response in op["responses"].items():
            if status.startswith(("2", "3")):
                headers = set(resolve(spec, response).get("headers", {}))
                assert headers >= RATE_LIMIT_HEADERS, f"{method} {path} {status}"
    assert limited > 30


OAUTH_PROTOCOL = {"/api/v1/oauth/token", "/api/v1/oauth/introspect", "/api/v1/oauth/revoke"}


def test_error_responses_are_problems_with_examples(spec):
    problems = []
    for method, path, op in operations(spec):
        for status, ref in op["responses"].items():
            if not (status == "default" or status >= "400") or method == "HEAD":
                continue
            response = resolve(spec, ref)
            content = response.get("content", {})
            if path.startswith("/api/v1/health") and status == "503":
                continue  # the health body itself, naming the failing check
            if path in OAUTH_PROTOCOL and status in ("400", "401"):
                # RFC 6749 §5.2 errors, so that OAuth 2 client libraries understand them.
                example = content.get("application/json", {}).get("example", {})
                if set(example) != {"error", "error_description"}:
                    problems.append(f"{method} {path} {status}: not an RFC 6749 error example")
                continue
            if PROBLEM not in content:
                problems.append(f"{method} {path} {status}: not problem+json")
            elif "example" not in content[PROBLEM]:
                problems.append(f"{method} {path} {status}: no example")
            elif content[PROBLEM]["example"]["status"] != int(
                status if status != "default" else 500
            ):
                problems.append(f"{method} {path} {status}: the example has another status")
    assert not problems, "\n".join(problems)


def test_every_schema_field_has_a_description_and_an_example(spec):
    missing = []
    for name, schema in spec["components"]["schemas"].items():
        for field, prop in schema.get("properties", {}).items():
            if not prop.get("description"):
                missing.append(f"{name}.{field}: description")
            if "example" not in prop and not refers_to_component(prop):
                missing.append(f"{name}.{field}: example")
    assert not missing, "\n".join(missing)


def test_examples_are_valid_for_their_own_schemas(spec):
    invalid = []

    def check(where: str, schema: dict, example: Any) -> None:
        if example is NO_EXAMPLE:
            return
        invalid.extend(f"{where}: {error}" for error in schema_errors(spec, schema, example))

    checked = 0
    for name, schema in spec["components"]["schemas"].items():
        for field, prop in schema.get("properties", {}).items():
            if "example" in prop:
                check(f"{name}.{field}", prop, prop["example"])
                checked += 1
        check(name, schema, composed_example(spec, schema))
    for name, header in spec["components"].get("headers", {}).items():
        if "example" in header:
            check(f"header {name}", header["schema"], header["example"])
    for method, path, op in operations(spec):
        for param in op.get("parameters", []) + spec["paths"][path].get("parameters", []):
            param = resolve(spec, param)
            if "example" in param:
                check(f"{method} {path} ?{param['name']}", param["schema"], param["example"])
        bodies = [("request", op.get("requestBody", {}))]
        bodies += [(status, resolve(spec, r)) for status, r in op["responses"].items()]
        for label, body in bodies:
            for mimetype, media in body.get("content", {}).items():
                if "schema" not in media:
                    continue
                where = f"{method} {path} {label} {mimetype}"
                if "example" in media:
                    check(where, media["schema"], media["example"])
                    checked += 1
                check(where, media["schema"], composed_example(spec, media["schema"]))
    assert checked > 100
    assert not invalid, "\n".join(invalid)


def test_an_invalid_example_is_caught(spec):
    """The check above can fail: a wrong type, a bad format and a bad nested field are found."""
    assert schema_errors(spec, {"type": "integer"}, "seven")
    assert schema_errors(spec, {"type": "string", "format": "date-time"}, "yesterday")
    problem = {"$ref": "#/components/schemas/Problem"}
    assert schema_errors(spec, problem, {"title": "Not Found", "status": "404"})


def json_body_operations(spec: dict) -> list[tuple[str, str, dict]]:
    return [
        (method, path, op)
        for method, path, op in operations(spec)
        if "application/json" in (op.get("requestBody") or {}).get("content", {})
    ]


def test_json_operations_document_their_body_problems(spec):
    """A body the strict reader refuses (400 invalid_json), one past the limit (413) and one
    not sent as JSON (415): every operation taking JSON says so, with examples."""
    found = json_body_operations(spec)
    assert len(found) >= 10
    for method, path, op in found:
        where = f"{method} {path}"
        assert op["requestBody"].get("required") is True, f"{where}: body not marked required"
        bad = resolve(spec, op["responses"]["400"])
        example = bad["content"][PROBLEM]["example"]
        assert example["code"] == "invalid_json", where
        assert {"rule", "line", "column"} <= set(example), where
        assert "`invalid_json`" in bad["description"], where
        too_large = resolve(spec, op["responses"]["413"])
        assert "`payload_too_large`" in too_large["description"], where
        not_json = resolve(spec, op["responses"]["415"])
        assert "application/json" in not_json["description"], where
        assert not_json["content"][PROBLEM]["example"]["code"] == "unsupported_media_type"


def test_the_problem_schema_documents_the_invalid_json_members(spec):
    problem = {"$ref": "#/components/schemas/Problem"}
    body = {
        "type": "urn:ctxcloud:problem:invalid_json",
        "title": "Bad Request",
        "status": 400,
        "detail": "The body is not valid JSON: Expecting value (line 1, column 1).",
        "code": "invalid_json",
        "rule": "syntax",
        "line": 1,
        "column": 1,
        "request_id": "4f9c2b1e0a7d4c33",
    }
    assert schema_errors(spec, problem, body) == []


def test_commit_puts_take_exactly_one_of_content_and_content_base64(spec):
    """The service refuses both and neither (422); the schema says so, so clients know."""
    put = {"$ref": "#/components/schemas/CommitPut"}
    assert schema_errors(spec, put, {"path": "a.md", "content": "x"}) == []
    assert schema_errors(spec, put, {"path": "a.md", "content_base64": "eA=="}) == []
    assert schema_errors(spec, put, {"path": "a.md", "content": "x", "content_base64": "eA=="})
    assert schema_errors(spec, put, {"path": "a.md"})


def test_request_bodies_state_whole_numbers_as_integers(spec):
    """Every number a request body takes is a whole number (counts, revisions, quotas):
    `type: integer`, never `number`, which would let clients send 2.5."""

    def numbers(schema: Any, seen: frozenset[str] = frozenset()) -> list[str]:
        if isinstance(schema, dict):
            ref = schema.get("$ref")
            if ref:
                return [] if ref in seen else numbers(resolve(spec, schema), seen | {ref})
            kinds = schema.get("type")
            found = ["number"] if kinds == "number" or "number" in (kinds or []) else []
            return found + [n for value in schema.values() for n in numbers(value, seen)]
        if isinstance(schema, list):
            return [n for value in schema for n in numbers(value, seen)]
        return []

    for method, path, op in json_body_operations(spec):
        schema = op["requestBody"]["content"]["application/json"]["schema"]
        assert numbers(schema) == [], f"{method} {path}"


def test_the_document_is_built_once_per_app(app, client, monkeypatch):
    """The document does not change after start-up: built on the first request, then served."""
    spec = app.extensions["ctxcloud"].api.spec
    builds = []
    to_dict = spec.to_dict
    monkeypatch.setattr(spec, "to_dict", lambda: builds.append(1) or to_dict())
    first = client.get("/api/v1/openapi.json")
    second = client.get("/api/v1/openapi.json")
    assert first.status_code == second.status_code == 200
    assert first.mimetype == "application/json"
    assert first.data == second.data
    assert len(builds) == 1
    served = [rule for rule in app.url_map.iter_rules() if rule.rule == "/api/v1/openapi.json"]
    assert [rule.endpoint for rule in served] == ["api-docs.openapi_json"]


def test_the_document_is_written_when_first_read_and_a_server_writes_it_at_start(
    app_config, monkeypatch
):
    """Building an app queues the document's writing (the bulk of an app's build); the first
    read writes all of it, so it is the same document whichever comes first. wsgi.py, which
    servers load, reads it at start: a broken document fails there, not on a request."""
    application = create_app(app_config)
    api = application.extensions["ctxcloud"].api
    assert api._pending  # nothing written yet
    read_first = api.spec.to_dict()
    assert not api._pending
    served = application.test_client().get("/api/v1/openapi.json").get_json()
    assert served == json.loads(json.dumps(read_first))
    assert len(served["paths"]) > 30

    for name, value in app_config.items():
        monkeypatch.setenv(f"CTXCLOUD_{name}", str(value))
    monkeypatch.delitem(sys.modules, "wsgi", raising=False)
    wsgi = importlib.import_module("wsgi")
    assert json.loads(wsgi.app.extensions["ctxcloud"].openapi_json) == served


def test_every_error_response_flask_smorest_may_reference_is_a_problem(app):
    """flask-smorest's default responses (one per status, named like NOT_FOUND, and
    DEFAULT_ERROR) are ctxcloud's problem+json ones, referenced or not yet."""
    components = app.extensions["ctxcloud"].api.spec.components
    defaults = {**components.responses, **components.responses_lazy}
    names = [status.name for status in HTTPStatus if status >= 400] + ["DEFAULT_ERROR"]
    for name in names:
        content = defaults[name]["content"]
        assert list(content) == [PROBLEM], name
        assert content[PROBLEM]["schema"] == {"$ref": "#/components/schemas/Problem"}, name
        assert content[PROBLEM]["example"]["status"] == HTTPStatus.__members__.get(
            name, HTTPStatus.INTERNAL_SERVER_ERROR
        ), name
    assert "Error" not in components.schemas  # flask-smorest's own error schema


def test_the_pagination_header_is_a_json_value(spec):
    """X-Pagination holds a JSON object: `content`, not a `schema` (OpenAPI's `simple` style)."""
    header = spec["components"]["headers"]["PAGINATION"]
    assert "schema" not in header
    media = header["content"]["application/json"]
    assert media["schema"] == {"$ref": "#/components/schemas/PaginationMetadata"}
    properties = spec["components"]["schemas"]["PaginationMetadata"]["properties"]
    assert {"total", "total_pages", "page"} <= set(properties)
    assert all("example" in prop for prop in properties.values())
    paginated = [
        op
        for _, _, op in operations(spec)
        if "X-Pagination" in op["responses"].get("200", {}).get("headers", {})
    ]
    assert len(paginated) >= 4
    for op in paginated:
        ref = op["responses"]["200"]["headers"]["X-Pagination"]
        assert ref == {"$ref": "#/components/headers/PAGINATION"}


def test_flask_smorest_serving_the_document_refuses_to_start(app_config):
    """Its routes would clash with ctxcloud's and build the document on every request."""
    with pytest.raises(ConfigError, match="CTXCLOUD_OPENAPI_URL_PREFIX"):
        create_app({**app_config, "OPENAPI_URL_PREFIX": "/api/v1"})
