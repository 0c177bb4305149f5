"""The audit log as an API: events stored for each covered action, GET /api/v1/audit-events
(filters, pagination, permissions, tenant isolation), and no secret in any stored event."""

from __future__ import annotations

import datetime
import json

import pytest

from ctxcloud.auth import emit_audit
from ctxcloud.plugins.audit_log.models import AuditEvent
from ctxcloud.plugins.audit_log.store import BUDGET
from tests import stack
from tests.support.factories import bearer, login, make_api_key, make_tenant, make_user
from tests.support.fake_oidc import fake_identity_provider, provider_body

EVENTS = "/api/v1/audit-events"


def listed(client, headers, **params):
    response = client.get(EVENTS, headers=headers, query_string=params)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def types(client, headers, **params):
    return [event["type"] for event in listed(client, headers, page_size=100, **params)]


def stored_rows(app):
    with app.app_context():
        return list(AuditEvent.select().order_by(AuditEvent.id).dicts())


def assert_problem(response, status, code=None):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    if code is not None:
        assert response.get_json()["code"] == code


def test_each_covered_action_is_stored_with_actor_target_and_request(
    app, client, tenant, owner_key, platform_key
):
    owner = bearer(owner_key)
    _, password = make_user(app, tenant, "owner", "olivia")
    login(client, tenant, "olivia", password)
    client.post(
        "/api/v1/auth/token", json={"tenant": "acme", "username": "olivia", "password": "nope"}
    )
    key = client.post(
        "/api/v1/api-keys", json={"name": "ci", "scopes": ["context:read"]}, headers=owner
    ).get_json()
    client.get("/api/v1/users", headers=bearer(key["key"]))  # permission denied
    client.delete(f"/api/v1/api-keys/{key['id']}", headers=owner)
    oauth = client.post(
        "/api/v1/oauth/clients", json={"name": "bot", "scopes": ["context:read"]}, headers=owner
    ).get_json()
    client.post(f"/api/v1/oauth/clients/{oauth['client_id']}/secret", headers=owner)
    client.delete(f"/api/v1/oauth/clients/{oauth['client_id']}", headers=owner)
    changed = client.patch(
        "/api/v1/tenant/settings", json={"audit_retention_days": 30}, headers=owner
    )
    assert changed.status_code == 200, changed.get_data(as_text=True)
    project = client.post("/api/v1/projects", json={"name": "Handbook"}, headers=owner).get_json()
    deleted = client.delete(
        f"/api/v1/projects/{project['id']}", headers={**owner, "X-Request-ID": "req-del-1"}
    )
    assert deleted.status_code == 204

    seen = types(client, owner)
    for expected in (
        "tenant_created",
        "login_succeeded",
        "login_failed",
        "api_key_created",
        "permission_denied",
        "api_key_revoked",
        "oauth_client_created",
        "oauth_client_secret_rotated",
        "oauth_client_deleted",
        "tenant_config_changed",
        "project_deleted",
    ):
        assert expected in seen, (expected, seen)
    newest = listed(client, owner, page_size=1)[0]
    assert newest["type"] == "project_deleted"
    assert newest["tenant_id"] == tenant.id
    assert newest["actor"]["kind"] == "api_key" and newest["actor"]["id"].startswith("key_")
    assert newest["target"] == {"project_id": project["id"]}
    assert newest["details"] == {"slug": "handbook"}
    assert newest["request_id"] == "req-del-1"
    assert newest["client_address"] == "127.0.0.1"
    assert len(newest["hash"]) == 64 and len(newest["prev_hash"]) == 64
    config = listed(client, owner, type="tenant_config_changed")[0]
    assert config["details"]["changes"] == {"settings": {"audit_retention_days": 30}}
    failed = listed(client, owner, type="login_failed")[0]
    assert failed["actor"] is None and failed["details"]["reason"] == "bad_password"

    # A tenant's deletion lands on the platform chain (the tenant's own goes with it).
    other = make_tenant(app, "doomed")
    platform = bearer(platform_key)
    assert client.delete(f"/api/v1/tenants/{other.id}", headers=platform).status_code == 204
    gone = listed(client, platform, tenant="platform", type="tenant_deleting,tenant_deleted")
    assert [e["type"] for e in gone] == ["tenant_deleted", "tenant_deleting"]
    assert all(e["tenant_id"] is None and e["target"]["tenant_id"] == other.id for e in gone)
    assert listed(client, platform, tenant=other.id) == []


def test_no_secret_is_stored(app, client, tenant, owner_key):
    owner = bearer(owner_key)
    _, password = make_user(app, tenant, "owner", "olivia")
    tokens = login(client, tenant, "olivia", password)
    client.post(
        "/api/v1/auth/token",
        json={"tenant": "acme", "username": "olivia", "password": password + "x"},
    )
    key = client.post(
        "/api/v1/api-keys", json={"name": "ci", "scopes": ["context:read"]}, headers=owner
    ).get_json()
    oauth = client.post(
        "/api/v1/oauth/clients", json={"name": "bot", "scopes": ["context:read"]}, headers=owner
    ).get_json()
    rotated = client.post(
        f"/api/v1/oauth/clients/{oauth['client_id']}/secret", headers=owner
    ).get_json()
    with app.test_request_context():
        emit_audit(
            "custom_event",
            tenant_id=tenant.id,
            note="kept",
            client_secret="s3cr3t-client",
            nested={"passphrase": "s3cr3t-phrase", "api_key": "s3cr3t-key", "ok": 1},
            new_password="s3cr3t-pw",
        )
    dumped = json.dumps(stored_rows(app), default=str)
    for secret in (
        password,
        key["key"],
        key["key"][13:],
        owner_key[13:],
        oauth["client_secret"],
        rotated["client_secret"],
        tokens["access_token"].split(".")[2],
        tokens["refresh_token"].split(".")[2],
        "s3cr3t",
    ):
        assert secret not in dumped
    custom = listed(client, owner, type="custom_event")[0]
    assert custom["details"] == {"note": "kept", "nested": {"ok": 1}}


def test_filters_and_pagination_newest_first(app, client, tenant, owner_key):
    owner = bearer(owner_key)
    with app.test_request_context():
        for number in range(5):
            emit_audit("link.used", tenant_id=tenant.id, actor="user:usr_a", link_id=f"l{number}")
        emit_audit("link.revoked", tenant_id=tenant.id, actor="api_key:key_b", link_id="l0")
    response = client.get(EVENTS, headers=owner, query_string={"type": "link.used", "page_size": 2})
    assert response.status_code == 200
    assert json.loads(response.headers["X-Pagination"])["total"] == 5
    assert [e["target"]["link_id"] for e in response.get_json()] == ["l4", "l3"]
    page3 = listed(client, owner, type="link.used", page_size=2, page=3)
    assert [e["target"]["link_id"] for e in page3] == ["l0"]
    assert listed(client, owner, type="link.used", page=9) == []
    assert types(client, owner, actor="api_key:key_b") == ["link.revoked"]
    assert types(client, owner, actor="key_b") == ["link.revoked"]
    assert len(types(client, owner, actor="user:usr_a")) == 5
    assert types(client, owner, actor="user:key_b") == []
    assert len(types(client, owner, type="link.used,link.revoked")) == 6
    newest = listed(client, owner, page_size=1)[0]
    moment = datetime.datetime.fromisoformat(newest["time"].replace("Z", "+00:00"))
    after = (moment + datetime.timedelta(seconds=5)).isoformat()
    assert types(client, owner, since=after) == []
    assert "link.revoked" in types(client, owner, until=after, since="2000-01-01T00:00:00Z")
    assert types(client, owner, until="2000-01-01T00:00:00+02:00") == []


@pytest.mark.parametrize(
    "params",
    [
        {"since": "yesterday"},
        {"until": "2026-13-01T00:00:00Z"},
        {"since": "2026-12-01T00:00:00"},
        {"since": "2026-12-02T00:00:00Z", "until": "2026-12-01T00:00:00Z"},
        {"type": "Login Failed"},
        {"type": "a" * 65},
        {"type": ","},
        {"type": ",".join(["x"] * 21)},
        {"actor": "user:"},
        {"actor": "<script>"},
        {"tenant": "../etc"},
        {"since": "\x00"},
    ],
)
def test_bad_filters_are_400_problems(client, owner_key, params):
    assert_problem(client.get(EVENTS, headers=bearer(owner_key), query_string=params), 400)


def test_append_only_no_write_method(client, owner_key, platform_key):
    for headers in (bearer(owner_key), bearer(platform_key)):
        for method in ("post", "put", "patch", "delete"):
            response = getattr(client, method)(EVENTS, headers=headers, json={})
            assert_problem(response, 405)


def test_permissions_and_tenant_isolation(app, client, tenant, other_tenant, platform_key):
    _, acme_owner = make_api_key(app, tenant, name="acme-owner")
    _, globex_owner = make_api_key(app, other_tenant, name="globex-owner")
    _, acme_admin = make_api_key(
        app, tenant, scopes=["tenant:read", "keys:manage", "users:manage"], name="no-admin"
    )
    with app.test_request_context():
        emit_audit("link.used", tenant_id=tenant.id, link_id="acme-link")
        emit_audit("link.used", tenant_id=other_tenant.id, link_id="globex-link")
        emit_audit("platform_thing")
    acme = listed(client, bearer(acme_owner), page_size=100)
    globex = listed(client, bearer(globex_owner), page_size=100)
    assert {e["tenant_id"] for e in acme} == {tenant.id}
    assert {e["tenant_id"] for e in globex} == {other_tenant.id}
    assert "globex" not in json.dumps(acme) and other_tenant.id not in json.dumps(acme)
    # Naming another tenant is as if it did not exist; naming one's own is fine.
    for name in (other_tenant.id, other_tenant.slug, "platform"):
        assert_problem(
            client.get(EVENTS, headers=bearer(acme_owner), query_string={"tenant": name}), 404
        )
    assert listed(client, bearer(acme_owner), tenant="acme", page_size=100) == acme
    # Without tenant:admin: 403, and the denial is itself recorded.
    assert_problem(client.get(EVENTS, headers=bearer(acme_admin)), 403, "forbidden")
    assert "permission_denied" in types(client, bearer(acme_owner))
    assert_problem(client.get(EVENTS), 401)

    platform = bearer(platform_key)
    every = listed(client, platform, page_size=100)
    assert {tenant.id, other_tenant.id, None} <= {e["tenant_id"] for e in every}
    only = listed(client, platform, tenant="globex", page_size=100)
    assert only and {e["tenant_id"] for e in only} == {other_tenant.id}
    assert listed(client, platform, tenant=other_tenant.id, page_size=100) == only
    platform_only = listed(client, platform, tenant="platform", page_size=100)
    assert "platform_thing" in [e["type"] for e in platform_only]
    assert {e["tenant_id"] for e in platform_only} == {None}
    assert listed(client, platform, tenant="no-such-tenant") == []


def test_denials_are_bounded_per_chain_and_say_how_many_were_left_out(app_config):
    app_config["AUDIT_DENIALS_PER_MINUTE"] = 2
    with stack.migrated_app(app_config) as app:
        client = app.test_client()
        tenant = make_tenant(app, "acme")
        _, reader = make_api_key(app, tenant, scopes=["context:read"])
        _, owner = make_api_key(app, tenant)
        for _ in range(5):
            assert client.get("/api/v1/users", headers=bearer(reader)).status_code == 403
        denials = listed(client, bearer(owner), type="permission_denied")
        assert len(denials) == 2
        assert app.extensions["ctxcloud"].stash[BUDGET].suppressed[tenant.id] == 3
        # The next stored denial, in a later minute, says how many were left out.
        app.extensions["ctxcloud"].stash[BUDGET].window -= 1
        assert client.get("/api/v1/users", headers=bearer(reader)).status_code == 403
        newest = listed(client, bearer(owner), type="permission_denied")[0]
        assert newest["details"] == {"action": "users:manage", "suppressed": 3}


def test_identity_provider_changes_are_stored(client, owner_key):
    owner = bearer(owner_key)
    url = "/api/v1/tenant/identity-providers/keycloak"
    with fake_identity_provider() as idp:
        assert client.put(url, json=provider_body(idp), headers=owner).status_code == 201
        assert client.delete(url, headers=owner).status_code == 204
    events = listed(client, owner, type="identity_provider_created,identity_provider_deleted")
    assert [e["type"] for e in events] == ["identity_provider_deleted", "identity_provider_created"]
    assert events[0]["target"]["provider_id"] == events[1]["target"]["provider_id"]
    assert events[1]["details"]["name"] == "keycloak"
