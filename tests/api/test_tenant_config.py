"""Tenant config: platform quotas and owner settings over service defaults, validated, applied
on the next request; usage exact; the tenant-wide rate limit."""

from __future__ import annotations

import json

import pytest

from tests.api.test_core import assert_problem
from tests.support.context import create_project, put_entry
from tests.support.factories import bearer, login, make_api_key, make_tenant, make_user

TENANTS = "/api/v1/tenants"


@pytest.fixture
def admin(platform_key):
    return bearer(platform_key)


@pytest.fixture
def auth(owner_key):
    return bearer(owner_key)


def config_url(tenant) -> str:
    return f"{TENANTS}/{tenant.id}/config"


def patch_config(client, admin, tenant, body, expect=200):
    response = client.patch(config_url(tenant), json=body, headers=admin)
    assert response.status_code == expect, response.get_data(as_text=True)
    return response.get_json()


def test_config_shows_the_service_defaults_until_overridden(app, client, admin, tenant):
    app.config.update(MAX_PROJECTS=7, MAX_ENTRY_BYTES=1000, RATE_LIMIT_DEFAULT="50/minute")
    body = client.get(config_url(tenant), headers=admin).get_json()
    assert body["quotas"]["max_projects"] == 7
    assert body["quotas"]["max_entry_bytes"] == 1000
    assert body["quotas"]["rate_limit"] == "50/minute"
    assert body["quotas"]["max_storage_bytes"] is None
    assert body["settings"]["default_content_type"] == "application/octet-stream"
    assert body["overrides"] == {"quotas": {}, "settings": {}}

    body = patch_config(client, admin, tenant, {"quotas": {"max_projects": 3}})
    assert body["quotas"]["max_projects"] == 3
    assert body["overrides"] == {"quotas": {"max_projects": 3}, "settings": {}}
    app.config["MAX_ENTRY_BYTES"] = 2000  # a default change reaches every tenant not overriding it
    assert client.get(config_url(tenant), headers=admin).get_json()["quotas"][
        "max_entry_bytes"
    ] == (2000)
    # null returns to the default
    body = patch_config(client, admin, tenant, {"quotas": {"max_projects": None}})
    assert body["quotas"]["max_projects"] == 7
    assert body["overrides"]["quotas"] == {}


def test_a_change_keeps_what_it_does_not_name(client, admin, tenant):
    patch_config(client, admin, tenant, {"quotas": {"max_users": 5, "max_api_keys": 6}})
    body = patch_config(
        client, admin, tenant, {"quotas": {"max_users": 4}, "settings": {"revisions_kept": 9}}
    )
    assert body["overrides"] == {
        "quotas": {"max_users": 4, "max_api_keys": 6},
        "settings": {"revisions_kept": 9},
    }


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"quotas": {"max_projects": -1}}, "max_projects"),
        ({"quotas": {"max_projects": True}}, "max_projects"),
        ({"quotas": {"max_projects": "10"}}, "max_projects"),
        ({"quotas": {"max_projects": 1.5}}, "max_projects"),
        ({"quotas": {"max_storage_bytes": 2**63}}, "max_storage_bytes"),
        ({"quotas": {"rate_limit": "lots"}}, "rate_limit"),
        ({"quotas": {"tenant_rate_limit": "10/fortnight"}}, "tenant_rate_limit"),
        ({"quotas": {"revisions_kept": 0}}, "revisions_kept"),
        ({"quotas": {"max_widgets": 1}}, "max_widgets"),
        ({"settings": {"default_content_type": "not a type"}}, "default_content_type"),
        ({"settings": {"default_content_type": "text/plain\r\nX: y"}}, "default_content_type"),
        ({"settings": {"allowed_content_types": []}}, "allowed_content_types"),
        ({"settings": {"allowed_content_types": ["text"]}}, "allowed_content_types"),
        ({"settings": {"allowed_content_types": "text/*"}}, "allowed_content_types"),
        ({"settings": {"colour": "blue"}}, "colour"),
        ({"limits": {}}, "limits"),
    ],
)
def test_bad_values_are_422_naming_the_field_and_change_nothing(client, admin, tenant, body, field):
    patch_config(client, admin, tenant, {"quotas": {"max_projects": 2}})
    response = client.patch(config_url(tenant), json=body, headers=admin)
    problem = assert_problem(response, 422, "validation_error")
    assert field in str(problem["errors"])
    after = client.get(config_url(tenant), headers=admin).get_json()
    assert after["overrides"] == {"quotas": {"max_projects": 2}, "settings": {}}


def test_tenants_are_created_with_a_config(client, admin):
    created = client.post(
        TENANTS,
        json={"slug": "acme", "config": {"quotas": {"max_projects": 1}}},
        headers=admin,
    )
    assert created.status_code == 201
    assert created.get_json()["config"]["quotas"]["max_projects"] == 1
    bad = client.post(
        TENANTS, json={"slug": "acme2", "config": {"quotas": {"max_projects": -5}}}, headers=admin
    )
    assert_problem(bad, 422, "validation_error")
    assert client.get(TENANTS, headers=admin).get_json()[-1]["slug"] == "acme"


def test_only_platform_operators_see_or_change_quotas(client, tenant, other_tenant, auth, admin):
    for method, url in [
        ("get", config_url(tenant)),
        ("patch", config_url(tenant)),
        ("get", f"{TENANTS}/{tenant.id}/usage"),
    ]:
        response = getattr(client, method)(url, json={}, headers=auth)
        assert_problem(response, 403, "forbidden")
    assert_problem(
        client.get(f"{TENANTS}/tnt_doesnotexist/config", headers=admin), 404, "not_found"
    )
    assert_problem(client.get(f"{TENANTS}/tnt_doesnotexist/usage", headers=admin), 404, "not_found")
    # A tenant owner cannot reach quotas through the settings either.
    response = client.patch("/api/v1/tenant/settings", json={"max_projects": 10**6}, headers=auth)
    assert_problem(response, 422, "validation_error")


def test_the_owner_changes_settings_within_the_platforms_bound(app, client, admin, tenant, auth):
    patch_config(client, admin, tenant, {"quotas": {"revisions_kept": 50}})
    response = client.patch(
        "/api/v1/tenant/settings",
        json={"revisions_kept": 10, "default_content_type": "text/markdown"},
        headers=auth,
    )
    assert response.status_code == 200
    body = response.get_json()
    assert body["settings"]["revisions_kept"] == 10
    assert body["settings"]["default_content_type"] == "text/markdown"

    over = client.patch("/api/v1/tenant/settings", json={"revisions_kept": 51}, headers=auth)
    problem = assert_problem(over, 422, "validation_error")
    assert problem["errors"] == {
        "settings": {"revisions_kept": ["At most 50, the platform's bound."]}
    }
    # Lowering the bound later caps the setting without refusing the platform's change.
    body = patch_config(client, admin, tenant, {"quotas": {"revisions_kept": 5}})
    assert body["settings"]["revisions_kept"] == 5
    assert body["overrides"]["settings"]["revisions_kept"] == 10


def test_settings_need_tenant_admin(app, client, tenant):
    _, password = make_user(app, tenant, "admin", "ada")
    token = login(client, tenant, "ada", password)["access_token"]
    response = client.patch(
        "/api/v1/tenant/settings", json={"revisions_kept": 3}, headers=bearer(token)
    )
    assert_problem(response, 403, "forbidden")


def test_the_default_type_must_be_allowed(client, auth):
    response = client.patch(
        "/api/v1/tenant/settings", json={"allowed_content_types": ["text/*"]}, headers=auth
    )
    problem = assert_problem(response, 422, "validation_error")
    assert "default_content_type" in problem["errors"]["settings"]
    response = client.patch(
        "/api/v1/tenant/settings",
        json={"allowed_content_types": ["text/*"], "default_content_type": "text/plain"},
        headers=auth,
    )
    assert response.status_code == 200


def test_a_change_applies_on_the_next_request(client, admin, tenant, auth):
    create_project(client, auth, slug="p")
    put_entry(client, auth, "p", "a.md", b"x" * 10, expect=201)
    patch_config(client, admin, tenant, {"quotas": {"max_entry_bytes": 9}})
    assert_problem(put_entry(client, auth, "p", "a.md", b"x" * 10), 413, "entry_too_large")
    patch_config(client, admin, tenant, {"quotas": {"max_entry_bytes": None}})
    put_entry(client, auth, "p", "a.md", b"x" * 10, expect=200)


def test_own_tenant_shows_config_and_usage(client, auth, tenant):
    create_project(client, auth, slug="p")
    put_entry(client, auth, "p", "a.md", b"hello", expect=201)
    body = client.get("/api/v1/tenant", headers=auth).get_json()
    assert body["id"] == tenant.id
    assert body["config"]["quotas"]["max_projects"] is None
    usage = body["usage"]
    assert {k: usage[k] for k in ("projects", "entries", "storage_bytes", "api_keys")} == {
        "projects": 1,
        "entries": 1,
        "storage_bytes": 5,
        "api_keys": 1,
    }
    assert usage["requests"]["count"] >= 3


def usage_of(client, admin, tenant) -> dict:
    response = client.get(f"{TENANTS}/{tenant.id}/usage", headers=admin)
    assert response.status_code == 200
    return response.get_json()


def test_usage_is_exact_through_every_kind_of_change(
    app, client, admin, tenant, other_tenant, auth
):
    assert usage_of(client, admin, tenant) | {"requests": None} == {
        "projects": 0,
        "entries": 0,
        "storage_bytes": 0,
        "users": 0,
        "api_keys": 1,
        "oauth_clients": 0,  # a plugin's count, passed through
        "requests": None,
    }
    create_project(client, auth, slug="p")
    create_project(client, auth, slug="q")
    put_entry(client, auth, "p", "a.md", b"a" * 100, expect=201)
    put_entry(client, auth, "p", "a.md", b"a" * 30, expect=200)  # history keeps both versions
    put_entry(client, auth, "q", "b.md", b"b" * 7, expect=201)
    client.delete(
        "/api/v1/projects/p/context/entries/a.md", headers=auth
    )  # a deletion frees nothing
    make_user(app, tenant, "viewer")
    key, _ = make_api_key(app, tenant)
    make_api_key(app, other_tenant)  # another tenant's never count
    usage = usage_of(client, admin, tenant)
    assert (usage["projects"], usage["entries"], usage["storage_bytes"]) == (2, 1, 137)
    assert (usage["users"], usage["api_keys"]) == (1, 2)

    client.delete(f"/api/v1/api-keys/{key.id}", headers=auth)
    assert usage_of(client, admin, tenant)["api_keys"] == 1
    assert client.delete("/api/v1/projects/p", headers=auth).status_code == 204
    usage = usage_of(client, admin, tenant)
    assert (usage["projects"], usage["entries"], usage["storage_bytes"]) == (1, 1, 7)
    assert usage_of(client, admin, other_tenant)["storage_bytes"] == 0


def test_pruning_frees_the_bytes_of_the_versions_it_drops(app, client, admin, tenant, auth):
    create_project(client, auth, slug="p")
    for size in (100, 50, 20):
        put_entry(client, auth, "p", "a.md", b"x" * size)
    assert usage_of(client, admin, tenant)["storage_bytes"] == 170
    result = app.test_cli_runner().invoke(args=["context", "prune", "--keep", "1"])
    assert result.exit_code == 0, result.output
    assert usage_of(client, admin, tenant)["storage_bytes"] == 20


def test_prune_follows_each_tenants_revisions_kept(app, client, admin, tenant, other_tenant, auth):
    _, other_key = make_api_key(app, other_tenant)
    other = bearer(other_key)
    for headers in (auth, other):
        create_project(client, headers, slug="p")
        for i in range(4):
            put_entry(client, headers, "p", "a.md", f"v{i}".encode())
    client.patch("/api/v1/tenant/settings", json={"revisions_kept": 2}, headers=auth)
    result = app.test_cli_runner().invoke(args=["context", "prune"])
    assert result.exit_code == 0, result.output
    assert client.get("/api/v1/projects/p/context?revision=2", headers=auth).status_code == 404
    assert client.get("/api/v1/projects/p/context?revision=3", headers=auth).status_code == 200
    # The other tenant keeps everything.
    assert client.get("/api/v1/projects/p/context?revision=1", headers=other).status_code == 200


def test_the_tenant_wide_ceiling_binds_every_credential_together(app, client, admin, tenant):
    app.config["RATE_LIMIT_DEFAULT"] = "100/minute"
    _, first = make_api_key(app, tenant)
    _, second = make_api_key(app, tenant)
    patch_config(client, admin, tenant, {"quotas": {"tenant_rate_limit": "4/minute"}})
    statuses = [
        client.get("/api/v1/auth/whoami", headers=bearer(key)).status_code
        for key in (first, second, first, second, first, second)
    ]
    assert statuses == [200, 200, 200, 200, 429, 429]
    response = client.get("/api/v1/auth/whoami", headers=bearer(first))
    problem = assert_problem(response, 429, "rate_limited")
    assert "4 per 1 minute" in problem["detail"]
    assert int(response.headers["Retry-After"]) >= 1
    requests = usage_of(client, admin, tenant)["requests"]
    assert requests["limit"] == "4/minute" and requests["count"] == 7
    # Another tenant is untouched.
    other = make_tenant(app)
    _, other_key = make_api_key(app, other)
    assert client.get("/api/v1/auth/whoami", headers=bearer(other_key)).status_code == 200


def test_the_headers_show_the_tighter_of_the_two_budgets(app, client, admin, tenant, auth):
    app.config["RATE_LIMIT_DEFAULT"] = "100/minute"
    patch_config(client, admin, tenant, {"quotas": {"tenant_rate_limit": "10/minute"}})
    response = client.get("/api/v1/auth/whoami", headers=auth)
    assert response.headers["RateLimit-Limit"] == "10"
    assert response.headers["RateLimit-Remaining"] == "9"
    patch_config(client, admin, tenant, {"quotas": {"rate_limit": "3/minute"}})
    response = client.get("/api/v1/auth/whoami", headers=auth)
    assert response.headers["RateLimit-Limit"] == "3"


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("MAX_PROJECTS", -1),
        ("MAX_STORAGE_BYTES", "lots"),
        ("RATE_LIMIT_TENANT", "10/fortnight"),
        ("ALLOWED_CONTENT_TYPES", "text/*"),
        ("DEFAULT_CONTENT_TYPE", "nonsense"),
    ],
)
def test_a_default_no_tenant_could_have_stops_the_start(app_config, setting, value):
    from ctxcloud import create_app
    from ctxcloud.settings import ConfigError

    with pytest.raises(ConfigError, match=f"CTXCLOUD_{setting}"):
        create_app({**app_config, setting: value})


def cli(app, *args):
    return app.test_cli_runner().invoke(args=["tenants", *args])


def test_operators_read_and_change_config_and_usage_from_the_cli(app, client, tenant, auth):
    result = cli(
        app,
        "config",
        tenant.slug,
        "--quota",
        "max_projects=3",
        "--quota",
        "rate_limit=20/minute",
        "--setting",
        'allowed_content_types=["text/*"]',
        "--setting",
        "default_content_type=text/plain",
    )
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert body["overrides"] == {
        "quotas": {"max_projects": 3, "rate_limit": "20/minute"},
        "settings": {"allowed_content_types": ["text/*"], "default_content_type": "text/plain"},
    }
    assert client.get("/api/v1/auth/whoami", headers=auth).headers["RateLimit-Limit"] == "20"
    result = cli(app, "config", tenant.slug, "--quota", "max_projects=null")
    assert json.loads(result.output)["overrides"]["quotas"] == {"rate_limit": "20/minute"}

    bad = cli(app, "config", tenant.slug, "--quota", "max_projects=-1")
    assert bad.exit_code == 1 and "max_projects" in bad.output
    assert cli(app, "config", tenant.slug, "--quota", "max_projects").exit_code == 2
    assert cli(app, "config", "no-such-tenant").exit_code == 1

    create_project(client, auth, slug="p")
    put_entry(client, auth, "p", "a.md", b"12345", expect=201)
    usage = json.loads(cli(app, "usage", tenant.slug).output)
    assert (usage["projects"], usage["entries"], usage["storage_bytes"]) == (1, 1, 5)
