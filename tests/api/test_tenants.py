"""Tenants: platform-admin CRUD, the caller's own tenant, suspension and deletion."""

from __future__ import annotations

import json
import logging
import re

import pytest

from ctxcloud.hookspecs import hookimpl
from tests.api.test_core import assert_problem
from tests.support.factories import bearer, login, make_api_key, make_tenant, make_user

TENANTS = "/api/v1/tenants"


@pytest.fixture
def admin(platform_key) -> dict:
    return bearer(platform_key)


def test_platform_admin_creates_reads_updates_and_lists_tenants(client, admin):
    created = client.post(TENANTS, json={"slug": "acme", "name": "ACME Corp"}, headers=admin)
    assert created.status_code == 201
    body = created.get_json()
    assert re.fullmatch(r"tnt_[a-z2-7]{20}", body["id"])
    assert body["slug"] == "acme" and body["name"] == "ACME Corp"
    assert body["status"] == "active"
    assert body["config"]["overrides"] == {"quotas": {}, "settings": {}}
    assert body["config"]["quotas"]["max_projects"] is None  # the service default: unlimited
    assert body["created_at"].endswith("Z") and body["updated_at"].endswith("Z")

    assert client.get(f"{TENANTS}/{body['id']}", headers=admin).get_json() == body
    changed = client.patch(f"{TENANTS}/{body['id']}", json={"name": "ACME"}, headers=admin)
    assert changed.status_code == 200 and changed.get_json()["name"] == "ACME"

    named_by_slug = client.post(TENANTS, json={"slug": "globex"}, headers=admin).get_json()
    assert named_by_slug["name"] == "globex"
    listing = client.get(f"{TENANTS}?page_size=1&page=2", headers=admin)
    assert [t["slug"] for t in listing.get_json()] == ["globex"]
    assert json.loads(listing.headers["X-Pagination"])["total"] == 2


def test_duplicate_slug_is_409(client, admin, tenant):
    assert_problem(client.post(TENANTS, json={"slug": tenant.slug}, headers=admin), 409, "conflict")


@pytest.mark.parametrize(
    "payload,field",
    [
        ({}, "slug"),
        ({"slug": ""}, "slug"),
        ({"slug": "a"}, "slug"),
        ({"slug": "Acme"}, "slug"),
        ({"slug": "-acme"}, "slug"),
        ({"slug": "acme-"}, "slug"),
        ({"slug": "ac_me"}, "slug"),
        ({"slug": "a" * 64}, "slug"),
        ({"slug": 42}, "slug"),
        ({"slug": None}, "slug"),
        ({"slug": "acme", "name": ""}, "name"),
        ({"slug": "acme", "name": "n" * 201}, "name"),
        ({"slug": "acme", "name": ["x"]}, "name"),
        ({"slug": "acme", "owner": "x"}, "owner"),
    ],
)
def test_invalid_tenant_is_422_naming_the_field(client, admin, payload, field):
    body = assert_problem(
        client.post(TENANTS, json=payload, headers=admin), 422, "validation_error"
    )
    assert field in body["errors"]


@pytest.mark.parametrize(
    "payload,field",
    [({"status": "deleted"}, "status"), ({"status": 1}, "status"), ({"slug": "x"}, "slug")],
)
def test_invalid_tenant_change_is_422(client, admin, tenant, payload, field):
    response = client.patch(f"{TENANTS}/{tenant.id}", json=payload, headers=admin)
    assert field in assert_problem(response, 422, "validation_error")["errors"]


def test_malformed_and_non_object_json(client, admin):
    malformed = client.post(
        TENANTS, data=b'{"slug": ', headers={**admin, "Content-Type": "application/json"}
    )
    assert malformed.status_code in (400, 422)
    assert malformed.mimetype == "application/problem+json"
    assert_problem(client.post(TENANTS, json=["acme"], headers=admin), 422, "validation_error")


def test_page_size_is_bounded(client, admin):
    assert client.get(f"{TENANTS}?page_size=1000", headers=admin).status_code == 200
    assert_problem(client.get(f"{TENANTS}?page_size=1001", headers=admin), 422, "validation_error")


def test_unknown_tenant_is_404(client, admin):
    for method in ("get", "patch", "delete"):
        response = getattr(client, method)(
            f"{TENANTS}/tnt_nosuchtenant0000000", json={}, headers=admin
        )
        assert_problem(response, 404, "not_found")


def test_tenant_routes_are_for_platform_admins_only(app, client, tenant, owner_key):
    owner = bearer(owner_key)
    assert_problem(client.get(TENANTS, headers=owner), 403, "forbidden")
    assert_problem(client.post(TENANTS, json={"slug": "mine"}, headers=owner), 403, "forbidden")
    for method in ("get", "patch", "delete"):
        response = getattr(client, method)(f"{TENANTS}/{tenant.id}", json={}, headers=owner)
        assert_problem(response, 403, "forbidden")
    assert_problem(client.get(TENANTS), 401, "unauthorized")


def test_own_tenant_needs_tenant_read(app, client, tenant, owner_key, platform_key):
    own = client.get("/api/v1/tenant", headers=bearer(owner_key))
    assert own.status_code == 200 and own.get_json()["id"] == tenant.id
    _, viewer_key = make_api_key(app, tenant, scopes=["projects:read"])
    assert_problem(client.get("/api/v1/tenant", headers=bearer(viewer_key)), 403, "forbidden")
    assert_problem(client.get("/api/v1/tenant", headers=bearer(platform_key)), 403, "forbidden")
    assert_problem(client.get("/api/v1/tenant"), 401, "unauthorized")


def test_suspension_refuses_every_credential_at_once_and_reactivation_restores(
    app, client, admin, tenant, owner_key
):
    _, password = make_user(app, tenant, "owner", "alice")
    tokens = login(client, tenant, "alice", password)
    key, token = bearer(owner_key), bearer(tokens["access_token"])
    assert client.get("/api/v1/tenant", headers=key).status_code == 200  # now cached
    assert client.get("/api/v1/tenant", headers=token).status_code == 200

    suspended = client.patch(f"{TENANTS}/{tenant.id}", json={"status": "suspended"}, headers=admin)
    assert suspended.get_json()["status"] == "suspended"
    for headers in (key, token):
        assert_problem(client.get("/api/v1/auth/whoami", headers=headers), 403, "tenant_suspended")
    refreshed = client.post("/api/v1/auth/refresh", headers=bearer(tokens["refresh_token"]))
    assert_problem(refreshed, 403, "tenant_suspended")
    relogin = client.post(
        "/api/v1/auth/token", json={"tenant": "acme", "username": "alice", "password": password}
    )
    assert_problem(relogin, 403, "tenant_suspended")

    client.patch(f"{TENANTS}/{tenant.id}", json={"status": "active"}, headers=admin)
    assert client.get("/api/v1/tenant", headers=key).status_code == 200


def test_suspending_one_tenant_leaves_others_alone(app, client, admin, tenant, other_tenant):
    _, other_key = make_api_key(app, other_tenant)
    client.patch(f"{TENANTS}/{tenant.id}", json={"status": "suspended"}, headers=admin)
    assert client.get("/api/v1/tenant", headers=bearer(other_key)).status_code == 200


class ObjectsOfTenants:
    """A plugin with a row per tenant and a stored object, removed through tenant_deleting."""

    def __init__(self, storage):
        self.storage = storage
        self.deleted = []

    @hookimpl
    def tenant_deleting(self, tenant):
        self.deleted.append(tenant.id)
        return ["o/aa/tenant-object"]


def test_deleting_a_tenant_removes_its_identity_and_calls_tenant_deleting(
    app, client, admin, tenant, other_tenant, owner_key
):
    storage = app.extensions["ctxcloud"].storage
    storage.put("o/aa/tenant-object", [b"ciphertext"])
    plugin = ObjectsOfTenants(storage)
    app.extensions["ctxcloud"].pm.register(plugin, name="objects-of-tenants")
    _, password = make_user(app, tenant, "owner", "alice")
    token = bearer(login(client, tenant, "alice", password)["access_token"])
    _, other_key = make_api_key(app, other_tenant)
    assert client.get("/api/v1/auth/whoami", headers=bearer(owner_key)).status_code == 200

    assert client.delete(f"{TENANTS}/{tenant.id}", headers=admin).status_code == 204

    assert plugin.deleted == [tenant.id]
    assert storage.head("o/aa/tenant-object") is None
    for headers in (bearer(owner_key), token):
        assert_problem(client.get("/api/v1/auth/whoami", headers=headers), 401, "unauthorized")
    relogin = client.post(
        "/api/v1/auth/token", json={"tenant": "acme", "username": "alice", "password": password}
    )
    assert_problem(relogin, 401, "unauthorized")
    assert_problem(client.get(f"{TENANTS}/{tenant.id}", headers=admin), 404, "not_found")
    assert client.get("/api/v1/tenant", headers=bearer(other_key)).status_code == 200
    with app.app_context():
        from ctxcloud.plugins.auth_apikey.models import ApiKey
        from ctxcloud.plugins.users.models import TokenFamily, User

        for model in (User, ApiKey, TokenFamily):
            assert not model.select().where(model.tenant_id == tenant.id).exists()
    # The slug is free again.
    assert client.post(TENANTS, json={"slug": "acme"}, headers=admin).status_code == 201


def test_tenant_events_are_audited(app, client, admin, caplog):
    with caplog.at_level(logging.INFO, logger="ctxcloud.audit"):
        tenant_id = client.post(TENANTS, json={"slug": "acme"}, headers=admin).get_json()["id"]
        client.patch(f"{TENANTS}/{tenant_id}", json={"status": "suspended"}, headers=admin)
        client.delete(f"{TENANTS}/{tenant_id}", headers=admin)
    events = [r.audit for r in caplog.records if r.name == "ctxcloud.audit"]
    assert [e["type"] for e in events] == [
        "tenant_created",
        "tenant_suspended",
        "tenant_deleting",
        "tenant_deleted",
    ]
    assert all(e["tenant_id"] == tenant_id and e["actor"].startswith("api_key:") for e in events)
    assert all(e["request_id"] for e in events)


def test_factory_fields_and_fixture_isolation(app, tenant, other_tenant):
    suspended = make_tenant(app, status="suspended")
    assert suspended.status == "suspended"
    assert tenant.id != other_tenant.id
