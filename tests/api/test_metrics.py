"""Prometheus metrics: counts move, labels stay bounded and reveal nothing, admins only.

Multiprocess mode under gunicorn is covered by tests/deploy/test_gunicorn_conf.py.
"""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ctxcloud import create_app, errors
from ctxcloud.metrics import (
    EXTENSION,
    UNMATCHED_ROUTE,
    count_auth_failure,
    count_rate_limited,
    count_storage_bytes,
)
from tests.api.test_core import assert_problem
from tests.support.context import create_project, entry_url, put_entry
from tests.support.factories import bearer, make_platform_key

METRICS = "/api/v1/-/metrics"
REQUESTS = "ctxcloud_http_requests_total"
LATENCY = "ctxcloud_http_request_duration_seconds_count"


def sample(app, name: str, **labels) -> float:
    """A sample's value in the app's registry (0 when it was never touched)."""
    value = app.extensions[EXTENSION].registry.get_sample_value(name, labels)
    return value or 0.0


def requests_of(app, route: str, method: str = "GET", status: int = 200) -> float:
    return sample(app, REQUESTS, route=route, method=method, status=str(status))


def scrape(client, key: str) -> str:
    response = client.get(METRICS, headers=bearer(key))
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_data(as_text=True)


def label_values(text: str) -> set[str]:
    return {
        value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        for value in s.labels.values()
    }


def test_request_count_and_latency_move(app, client):
    route = "/api/v1/health/live"
    before = requests_of(app, route)
    for _ in range(3):
        assert client.get(route).status_code == 200
    assert requests_of(app, route) == before + 3
    assert sample(app, LATENCY, route=route, method="GET", status="200") == before + 3
    assert sample(app, "ctxcloud_http_requests_in_progress") == 0


def test_routes_are_labelled_by_template_never_by_raw_path(app, client, tenant, owner_key):
    auth = bearer(owner_key)
    project = create_project(client, auth, name="Secret Project", slug="secret-project")
    put_entry(client, auth, "secret-project", "plans/merger-with-globex.md", b"hush", expect=201)
    assert client.get(entry_url("secret-project", "plans/merger-with-globex.md"), headers=auth)
    client.get(f"/api/v1/projects/{project['id']}", headers=auth)
    client.get("/api/v1/projects/no-such-project-9f8e7d", headers=auth)
    client.get("/api/v1/definitely/not/a/route/12345")

    assert requests_of(app, "/api/v1/projects", "POST", 201) == 1
    entry_route = next(
        rule.rule for rule in app.url_map.iter_rules() if "/context/entries/<" in rule.rule
    )
    assert requests_of(app, entry_route, "PUT", 201) == 1
    assert requests_of(app, entry_route, "GET", 200) == 1
    assert requests_of(app, "/api/v1/projects/<project>", "GET", 200) == 1
    assert requests_of(app, "/api/v1/projects/<project>", "GET", 404) == 1
    assert requests_of(app, UNMATCHED_ROUTE, "GET", 404) == 1

    text = client.get(METRICS, headers=bearer(owner_key)).get_data(as_text=True)  # 403
    assert "ctxcloud_" not in text
    body = scrape(client, make_platform_key(app)[1])
    values = label_values(body)
    routes = {rule.rule for rule in app.url_map.iter_rules()} | {UNMATCHED_ROUTE}
    assert {v for v in values if v.startswith("/")} <= routes
    for secret in (
        project["id"],
        "secret-project",
        "merger-with-globex",
        "no-such-project-9f8e7d",
        "12345",
        tenant.slug,
        tenant.id,
        owner_key,
    ):
        assert secret not in body, secret


def test_methods_outside_http_are_one_label(app, client):
    client.open("/api/v1/health/live", method="BREW")
    # 405: no rule matched this method, so the route is the unmatched label too.
    assert sample(app, REQUESTS, route=UNMATCHED_ROUTE, method="other", status="405") == 1


def test_metrics_endpoint_requires_platform_admin(client, owner_key, platform_key):
    assert_problem(client.get(METRICS), 401, "unauthorized")
    assert_problem(client.get(METRICS, headers=bearer(owner_key)), 403, "forbidden")
    response = client.get(METRICS, headers=bearer(platform_key))
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    names = {family.name for family in text_string_to_metric_families(response.get_data(True))}
    for name in (
        "ctxcloud_http_requests",
        "ctxcloud_http_request_duration_seconds",
        "ctxcloud_build_info",
        "ctxcloud_auth_failures",
    ):
        assert name in names


def test_metrics_endpoint_speaks_openmetrics_when_asked(client, platform_key):
    response = client.get(
        METRICS, headers={**bearer(platform_key), "Accept": "application/openmetrics-text"}
    )
    assert response.status_code == 200
    assert response.mimetype == "application/openmetrics-text"
    assert response.get_data(as_text=True).rstrip().endswith("# EOF")


def test_openapi_documents_the_metrics_endpoint_as_text(client):
    operation = client.get("/api/v1/openapi.json").get_json()["paths"][METRICS]["get"]
    assert operation["x-permission"] == "platform:admin"
    assert operation["security"]
    assert operation["responses"]["200"]["content"]["text/plain"]["schema"] == {"type": "string"}
    assert "401" in operation["responses"] and "403" in operation["responses"]


def test_unauthorized_answers_count_as_auth_failures(app, client):
    client.get("/api/v1/projects")
    client.get("/api/v1/projects", headers=bearer("ctx_not-a-real-key"))
    assert sample(app, "ctxcloud_auth_failures_total", kind="unauthorized") == 2


def test_a_counted_auth_failure_is_not_counted_twice(app, client):
    def refuse():
        count_auth_failure("expired_token")
        count_auth_failure("Expired Token!")  # not a label value: counted as "other"
        raise errors.Unauthorized()

    app.add_url_rule("/api/v1/test-refuse", view_func=refuse)
    assert client.get("/api/v1/test-refuse").status_code == 401
    assert sample(app, "ctxcloud_auth_failures_total", kind="expired_token") == 1
    assert sample(app, "ctxcloud_auth_failures_total", kind="other") == 1
    assert sample(app, "ctxcloud_auth_failures_total", kind="unauthorized") == 0


def test_rate_limit_rejections_are_counted_by_route(request, app_config):
    app_config["RATE_LIMIT_DEFAULT"] = "3/minute"  # before the app is built
    app = request.getfixturevalue("app")
    client = app.test_client()
    key = request.getfixturevalue("owner_key")
    statuses = [client.get("/api/v1/projects", headers=bearer(key)).status_code for _ in range(5)]
    assert statuses.count(429) == 2
    assert sample(app, "ctxcloud_rate_limited_total", route="/api/v1/projects") == 2
    assert requests_of(app, "/api/v1/projects", "GET", 429) == 2


def test_a_counted_rate_limit_rejection_is_not_counted_twice(app, client):
    def spent(thing):
        count_rate_limited()
        raise errors.RateLimited("Too many attempts.")

    app.add_url_rule("/api/v1/test-spent/<thing>", view_func=spent)
    assert client.get("/api/v1/test-spent/abc").status_code == 429
    route = "/api/v1/test-spent/<thing>"
    assert sample(app, "ctxcloud_rate_limited_total", route=route) == 1


def test_storage_bytes_by_direction(app):
    with app.app_context():
        count_storage_bytes("in", 1000)
        count_storage_bytes("in", 24)
        count_storage_bytes("out", 512)
        count_storage_bytes("out", 0)
        with pytest.raises(ValueError, match="direction"):
            count_storage_bytes("sideways", 1)
    backend = app.config["STORAGE_BACKEND"]
    assert sample(app, "ctxcloud_storage_bytes_total", direction="in", backend=backend) == 1024
    assert sample(app, "ctxcloud_storage_bytes_total", direction="out", backend=backend) == 512


def test_two_apps_keep_their_own_counts(app, client, app_config):
    other = create_app(app_config)
    try:
        client.get("/api/v1/health/live")
        assert requests_of(app, "/api/v1/health/live") == 1
        assert requests_of(other, "/api/v1/health/live") == 0
    finally:
        from tests import stack

        stack.close(other)
