"""whoami describes any valid credential; the identity routes are declared and documented."""

from __future__ import annotations

from ctxcloud.auth import AUTHENTICATED, route_policy
from tests.api.test_core import assert_problem
from tests.support.factories import bearer, login, make_api_key, make_tenant, make_user

WHOAMI = "/api/v1/auth/whoami"


def test_a_scoped_restricted_key(app, client, tenant):
    key, secret = make_api_key(app, tenant, scopes=["context:read"], project_ids=["prj_b", "prj_a"])
    assert client.get(WHOAMI, headers=bearer(secret)).get_json() == {
        "type": "api_key",
        "id": key.id,
        "tenant": {"id": tenant.id, "slug": "acme", "name": "ACME", "status": "active"},
        "role": None,
        "permissions": ["context:read"],
        "project_ids": ["prj_a", "prj_b"],
        "issuer": None,
    }


def test_a_user(app, client, tenant):
    user, password = make_user(app, tenant, "member", "mia")
    token = login(client, tenant, "mia", password)["access_token"]
    assert client.get(WHOAMI, headers=bearer(token)).get_json() == {
        "type": "user",
        "id": user.id,
        "tenant": {"id": tenant.id, "slug": "acme", "name": "ACME", "status": "active"},
        "role": "member",
        "permissions": ["context:read", "context:write", "projects:read"],
        "project_ids": None,
        "issuer": None,
    }


def test_no_permission_is_needed_but_a_credential_is(app, client, tenant):
    _, secret = make_api_key(app, tenant, scopes=["projects:read"])
    assert client.get(WHOAMI, headers=bearer(secret)).status_code == 200
    response = client.get(WHOAMI)
    assert_problem(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_suspended_tenants_credential_is_refused(app, client):
    suspended = make_tenant(app, "paused", status="suspended")
    _, secret = make_api_key(app, suspended)
    assert_problem(client.get(WHOAMI, headers=bearer(secret)), 403, "tenant_suspended")


def test_identity_routes_declare_their_policy(app):
    expected = {
        ("/api/v1/auth/whoami", "GET"): AUTHENTICATED,
        ("/api/v1/auth/revoke", "POST"): AUTHENTICATED,
        ("/api/v1/auth/token", "POST"): "public",
        ("/api/v1/auth/refresh", "POST"): "public",
        ("/api/v1/tenants", "GET"): "platform:admin",
        ("/api/v1/tenants", "POST"): "platform:admin",
        ("/api/v1/tenants/<tenant_id>", "DELETE"): "platform:admin",
        ("/api/v1/tenant", "GET"): "tenant:read",
        ("/api/v1/users", "POST"): "users:manage",
        ("/api/v1/users/<user_id>", "PATCH"): "users:manage",
        ("/api/v1/api-keys", "POST"): "keys:manage",
        ("/api/v1/api-keys/<key_id>", "DELETE"): "keys:manage",
    }
    rules = {rule.rule: rule for rule in app.url_map.iter_rules()}
    for (path, method), policy in expected.items():
        assert route_policy(app.view_functions[rules[path].endpoint], method) == policy, path


def test_identity_routes_are_documented(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    paths = spec["paths"]
    whoami = paths["/api/v1/auth/whoami"]["get"]
    assert whoami["security"] and "401" in whoami["responses"]
    assert "x-permission" not in whoami
    assert paths["/api/v1/auth/token"]["post"]["security"] == []
    assert paths["/api/v1/auth/refresh"]["post"]["security"] == [{"bearerAuth": []}]
    create_key = paths["/api/v1/api-keys"]["post"]
    assert create_key["x-permission"] == "keys:manage"
    for status in ("201", "401", "403", "422", "429"):
        assert status in create_key["responses"], status
    assert "X-Pagination" in paths["/api/v1/users"]["get"]["responses"]["200"]["headers"]
    assert "404" in paths["/api/v1/tenants/{tenant_id}"]["delete"]["responses"]
    schemas = spec["components"]["schemas"]
    for name, field in [
        ("ApiKeyCreate", "scopes"),
        ("UserCreate", "password"),
        ("Login", "tenant"),
    ]:
        prop = schemas[name]["properties"][field]
        assert prop.get("description") and "example" in prop, (name, field)
    assert "password" not in schemas["User"]["properties"]
