"""/api/v1/oauth/clients and `ctxcloud oauth-clients`: a tenant's OAuth clients, managed under
keys:manage; the secret is shown once, stored as a keyed hash, rotated, and dies at once."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from ctxcloud.plugins.auth_oauth.models import OAuthClient
from tests.api.test_core import assert_problem
from tests.support.factories import bearer, make_api_key, make_tenant
from tests.support.oauth import client_token, fetch_token

CLIENTS = "/api/v1/oauth/clients"


@pytest.fixture
def tenant(app):
    return make_tenant(app, "acme")


@pytest.fixture
def admin(app, tenant):
    return bearer(make_api_key(app, tenant, name="admin")[1])


def create(client, headers, **body):
    body = {"name": "ci", "scopes": ["context:read", "projects:read"], **body}
    return client.post(CLIENTS, json=body, headers=headers)


def test_the_secret_is_shown_once_and_stored_as_a_keyed_hash(app, client, admin):
    response = create(client, admin)
    assert response.status_code == 201
    assert response.headers["Cache-Control"] == "no-store"
    made = response.get_json()
    assert made["client_id"].startswith("ctxc_") and made["client_secret"].startswith("ctxs_")
    assert made["scopes"] == ["context:read", "projects:read"] and made["project_ids"] is None
    listed = client.get(CLIENTS, headers=admin).get_json()
    assert [c["client_id"] for c in listed] == [made["client_id"]]
    one = client.get(f"{CLIENTS}/{made['client_id']}", headers=admin).get_json()
    for answer in (listed[0], one):
        assert "client_secret" not in answer and made["client_secret"] not in json.dumps(answer)
    with app.app_context():
        row = OAuthClient.get_by_id(made["client_id"])
        pepper = app.config["API_KEY_PEPPER"].encode()
        expected = hmac.new(pepper, made["client_secret"].encode(), hashlib.sha256).hexdigest()
        assert row.secret_hash == expected and made["client_secret"] not in str(row.__data__)


def test_a_client_never_holds_more_than_its_creator(app, client, tenant, admin):
    reader = bearer(make_api_key(app, tenant, name="r", scopes=["context:read", "keys:manage"])[1])
    assert_problem(create(client, reader, scopes=["context:write"]), 403, "forbidden")
    assert create(client, reader, scopes=["context:read"]).status_code == 201
    restricted = bearer(
        make_api_key(
            app, tenant, name="p", scopes=["keys:manage", "context:read"], project_ids=["prj_a"]
        )[1]
    )
    assert_problem(create(client, restricted, scopes=["context:read"]), 403, "forbidden")
    made = create(client, restricted, scopes=["context:read"], project_ids=["prj_a"])
    assert made.status_code == 201 and made.get_json()["project_ids"] == ["prj_a"]


@pytest.mark.parametrize(
    "body",
    [
        {"scopes": ["context:nope"]},
        {"scopes": []},
        {"name": ""},
        {"name": "x" * 101},
        {"scopes": "context:read"},
        {"project_ids": "prj_a"},
    ],
)
def test_bad_clients_are_refused_and_nothing_is_made(app, client, admin, body):
    response = create(client, admin, **body)
    assert response.status_code == 422, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    assert client.get(CLIENTS, headers=admin).get_json() == []


def test_platform_admin_is_no_clients_scope(app, client, admin):
    """A tenant credential lacks it (403, as for API keys); the command line, which may give
    any tenant permission, is told it belongs to platform keys only."""
    assert_problem(create(client, admin, scopes=["platform:admin"]), 403, "forbidden")
    made = oauth_cli(app, "create", "--tenant", "acme", "--name", "x", "--scopes", "platform:admin")
    assert made.exit_code != 0 and "platform keys only" in made.output


def test_managing_clients_needs_keys_manage(app, client, tenant, admin):
    member = bearer(make_api_key(app, tenant, name="m", scopes=["context:read"])[1])
    assert_problem(create(client, member), 403, "forbidden")
    assert_problem(client.get(CLIENTS, headers=member), 403, "forbidden")
    assert client.get(CLIENTS).status_code == 401


def test_another_tenants_client_is_not_found(app, client, tenant, admin):
    other = make_tenant(app, "globex")
    theirs = create(client, bearer(make_api_key(app, other, name="g")[1])).get_json()
    url = f"{CLIENTS}/{theirs['client_id']}"
    for response in (
        client.get(url, headers=admin),
        client.delete(url, headers=admin),
        client.post(f"{url}/secret", headers=admin),
    ):
        assert_problem(response, 404, "not_found")
    assert client_token(client, theirs["client_id"], theirs["client_secret"])


def test_rotating_the_secret_kills_the_old_one_at_once(app, client, admin):
    made = create(client, admin).get_json()
    token = client_token(client, made["client_id"], made["client_secret"])
    assert client.get("/api/v1/auth/whoami", headers=bearer(token)).status_code == 200
    rotated = client.post(f"{CLIENTS}/{made['client_id']}/secret", headers=admin)
    assert rotated.status_code == 200 and rotated.headers["Cache-Control"] == "no-store"
    new = rotated.get_json()
    assert new["client_secret"] != made["client_secret"] and new["secret_rotated_at"]
    assert fetch_token(client, made["client_id"], made["client_secret"]).status_code == 401
    assert client_token(client, made["client_id"], new["client_secret"])
    # Issued tokens live on unless asked otherwise ...
    assert client.get("/api/v1/auth/whoami", headers=bearer(token)).status_code == 200
    # ... and die at once when the rotation says so (a leaked secret).
    again = client.post(f"{CLIENTS}/{made['client_id']}/secret?revoke_tokens=true", headers=admin)
    assert again.status_code == 200
    assert client.get("/api/v1/auth/whoami", headers=bearer(token)).status_code == 401
    bad = client.post(f"{CLIENTS}/{made['client_id']}/secret?revoke_tokens=maybe", headers=admin)
    assert_problem(bad, 422, "validation_error")


def test_deleting_a_client_kills_its_secret_and_tokens_at_once(app, client, admin):
    made = create(client, admin).get_json()
    token = client_token(client, made["client_id"], made["client_secret"])
    assert client.get("/api/v1/auth/whoami", headers=bearer(token)).status_code == 200  # cached
    assert client.delete(f"{CLIENTS}/{made['client_id']}", headers=admin).status_code == 204
    assert client.get("/api/v1/auth/whoami", headers=bearer(token)).status_code == 401
    assert fetch_token(client, made["client_id"], made["client_secret"]).status_code == 401
    assert client.get(CLIENTS, headers=admin).get_json() == []
    gone = client.delete(f"{CLIENTS}/{made['client_id']}", headers=admin)
    assert_problem(gone, 404, "not_found")


def test_the_quota_counts_live_clients(app, client, tenant, admin, platform_key):
    patch = {"quotas": {"max_oauth_clients": 1}}
    config = f"/api/v1/tenants/{tenant.id}/config"
    assert client.patch(config, json=patch, headers=bearer(platform_key)).status_code == 200
    first = create(client, admin).get_json()
    assert_problem(create(client, admin), 403, "quota_exceeded")
    client.delete(f"{CLIENTS}/{first['client_id']}", headers=admin)
    assert create(client, admin).status_code == 201
    usage = client.get(f"/api/v1/tenants/{tenant.id}/usage", headers=bearer(platform_key))
    assert usage.get_json()["oauth_clients"] == 1


def test_deleting_the_tenant_deletes_its_clients(app, client, tenant, admin, platform_key):
    made = create(client, admin).get_json()
    token = client_token(client, made["client_id"], made["client_secret"])
    assert (
        client.delete(f"/api/v1/tenants/{tenant.id}", headers=bearer(platform_key)).status_code
        == 204
    )
    assert client.get("/api/v1/auth/whoami", headers=bearer(token)).status_code == 401
    assert fetch_token(client, made["client_id"], made["client_secret"]).status_code == 401
    with app.app_context():
        assert not OAuthClient.select().where(OAuthClient.tenant_id == tenant.id).exists()


def oauth_cli(app, *args: str):
    return app.test_cli_runner().invoke(args=["oauth-clients", *args])


def test_the_command_line_matches_the_api(app, client, tenant):
    made = oauth_cli(
        app, "create", "--tenant", "acme", "--name", "nightly", "--scopes", "context:read", "--json"
    )
    assert made.exit_code == 0, made.output
    body = json.loads(made.output)
    assert body["scopes"] == ["context:read"] and body["client_secret"].startswith("ctxs_")
    assert client_token(client, body["client_id"], body["client_secret"])
    listed = oauth_cli(app, "list", "--tenant", "acme", "--json")
    assert [c["client_id"] for c in json.loads(listed.output)["clients"]] == [body["client_id"]]
    assert body["client_secret"] not in listed.output
    rotated = oauth_cli(app, "rotate-secret", "--tenant", "acme", body["client_id"], "--json")
    new = json.loads(rotated.output)["client_secret"]
    assert fetch_token(client, body["client_id"], body["client_secret"]).status_code == 401
    assert client_token(client, body["client_id"], new)
    assert oauth_cli(app, "delete", "--tenant", "acme", body["client_id"]).exit_code == 0
    assert fetch_token(client, body["client_id"], new).status_code == 401
    unknown = oauth_cli(app, "delete", "--tenant", "acme", body["client_id"])
    assert unknown.exit_code != 0 and "No such OAuth client" in unknown.output
    bad = oauth_cli(app, "create", "--tenant", "acme", "--name", "x", "--scopes", "nope:nope")
    assert bad.exit_code != 0 and "Unknown scope" in bad.output
