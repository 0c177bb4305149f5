"""The core's HTTP behaviour: health, problem+json errors, request ids, logs, OpenAPI, docs."""

from __future__ import annotations

import json
import logging

import pytest
from openapi_spec_validator import validate

from ctxcloud.storage import StorageUnavailable


def assert_problem(response, status: int, code: str) -> dict:
    assert response.status_code == status
    assert response.mimetype == "application/problem+json"
    body = response.get_json(force=True)
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"] == f"urn:ctxcloud:problem:{code}"
    assert body["title"] and body["detail"]
    assert body["request_id"] == response.headers["X-Request-ID"]
    return body


def test_health_reports_every_dependency(client):
    response = client.get("/api/v1/health")
    assert response.status_code == 200
    body = response.get_json()
    assert body["status"] == "ok"
    assert body["version"]
    assert body["checks"] == {"database": "ok", "storage": "ok", "cache": "ok"}


def test_health_names_the_failing_dependency(app, client, monkeypatch):
    def down():
        raise StorageUnavailable("bucket unreachable at 10.0.0.1 with secret xyz")

    monkeypatch.setitem(app.extensions["ctxcloud"].health_checks, "storage", down)
    for path in ("/api/v1/health", "/api/v1/health/ready"):
        response = client.get(path)
        assert response.status_code == 503
        body = response.get_json()
        assert body["status"] == "unavailable"
        assert body["failing"] == ["storage"]
        assert body["checks"]["database"] == "ok"
        assert "10.0.0.1" not in response.get_data(as_text=True)
    # Liveness checks the process only.
    assert client.get("/api/v1/health/live").status_code == 200


def test_unknown_route_is_problem_json(client):
    assert_problem(client.get("/api/v1/no-such-thing"), 404, "not_found")


def test_wrong_method_is_problem_json_with_allow(client):
    response = client.delete("/api/v1/health")
    assert_problem(response, 405, "method_not_allowed")
    assert "GET" in response.headers["Allow"]


def test_unexpected_error_is_500_without_internals(app, client, caplog):
    def explode():
        raise RuntimeError("SELECT secret FROM keys at /srv/ctxcloud/app.py")

    app.add_url_rule("/api/v1/explode", view_func=explode)
    with caplog.at_level(logging.ERROR, logger="ctxcloud"):
        response = client.get("/api/v1/explode")
    body = assert_problem(response, 500, "internal_error")
    text = response.get_data(as_text=True)
    assert "SELECT" not in text and "Traceback" not in text and "/srv" not in text
    assert body["detail"] == "The server failed to answer this request."
    # The operator still gets the cause, tied to the request id.
    record = next(r for r in caplog.records if r.name == "ctxcloud.errors")
    assert record.exc_info and "SELECT secret" in str(record.exc_info[1])


def test_request_id_is_echoed_when_sane_and_generated_otherwise(client):
    assert (
        client.get("/api/v1/health/live", headers={"X-Request-ID": "abc-123"}).headers[
            "X-Request-ID"
        ]
        == "abc-123"
    )
    for bad in ("", "x" * 200, "bad id with spaces", "<script>"):
        generated = client.get("/api/v1/health/live", headers={"X-Request-ID": bad}).headers[
            "X-Request-ID"
        ]
        assert generated != bad and len(generated) == 32
    first = client.get("/api/v1/health/live").headers["X-Request-ID"]
    second = client.get("/api/v1/health/live").headers["X-Request-ID"]
    assert first != second


def test_access_log_is_structured_json(app, client, capsys):
    from ctxcloud.requestlog import JsonFormatter

    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logging.getLogger("ctxcloud.access").addHandler(handler)
    logging.getLogger("ctxcloud").setLevel(logging.INFO)
    try:
        client.get("/api/v1/health/live", headers={"X-Request-ID": "req-42"})
    finally:
        logging.getLogger("ctxcloud.access").removeHandler(handler)
    line = json.loads(JsonFormatter().format(records[-1]))
    assert line["request_id"] == "req-42"
    assert line["method"] == "GET"
    assert line["path"] == "/api/v1/health/live"
    assert line["status"] == 200
    assert line["duration_ms"] >= 0
    assert line["level"] == "INFO" and line["time"].endswith("Z")


def test_openapi_document_is_valid_and_documents_problems(client):
    response = client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    spec = response.get_json()
    validate(spec)
    assert spec["openapi"].startswith("3.")
    assert "/api/v1/health" in spec["paths"]
    assert "/api/v1/-/plugins" in spec["paths"]
    problem = spec["components"]["responses"]["Unauthorized"]["content"]
    assert "application/problem+json" in problem
    assert {"bearerAuth", "apiKeyHeader"} <= set(spec["components"]["securitySchemes"])
    plugins_op = spec["paths"]["/api/v1/-/plugins"]["get"]
    assert plugins_op["x-permission"] == "platform:admin"
    assert "401" in plugins_op["responses"] and "403" in plugins_op["responses"]
    assert spec["paths"]["/api/v1/health"]["get"]["security"] == []


def test_docs_page_is_served_from_package_files(client):
    page = client.get("/api/v1/docs")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "/api/v1/openapi.json" in html
    assert "http://" not in html and "https://" not in html  # nothing from a CDN
    for asset in ("swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js"):
        assert f"/api/v1/docs/static/{asset}" in html
        response = client.get(f"/api/v1/docs/static/{asset}")
        assert response.status_code == 200 and len(response.data) > 1000
    assert client.get("/api/v1/docs/static/../../app/factory.py").status_code == 404


def test_plugins_endpoint_needs_a_credential(client):
    response = client.get("/api/v1/-/plugins")
    assert_problem(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("path", ["/api/v1/health", "/api/v1/health/live", "/api/v1/health/ready"])
def test_health_needs_no_credential(client, path):
    assert client.get(path).status_code == 200


def test_oversized_json_body_is_refused_before_it_is_read(app, client):
    app.config["MAX_JSON_BYTES"] = app.config["MAX_CONTENT_LENGTH"] = 1024
    response = client.post(
        "/api/v1/auth/token",
        data=b'{"tenant": "' + b"x" * 4096 + b'"}',
        content_type="application/json",
    )
    assert_problem(response, 413, "payload_too_large")
