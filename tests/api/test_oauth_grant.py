"""POST /api/v1/oauth/token (client credentials), /introspect and /revoke, and the RFC 8414
metadata: RFC shapes, tokens that verify with the published key set alone, and tokens that
act like the client (its tenant, scopes, projects and rate-limit budget)."""

from __future__ import annotations

import base64

import jwt
import pytest
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata

from tests.api.test_core import assert_problem
from tests.api.test_signing_keys import verify_downstream
from tests.support.factories import bearer, login, make_api_key, make_tenant, make_user
from tests.support.oauth import (
    INTROSPECT,
    REVOKE,
    TOKEN,
    basic,
    client_token,
    fetch_token,
    make_oauth_client,
)

WHOAMI = "/api/v1/auth/whoami"
METADATA = "/.well-known/oauth-authorization-server"


@pytest.fixture
def tenant(app):
    return make_tenant(app, "acme")


@pytest.fixture
def ci(app, tenant):
    return make_oauth_client(app, tenant)


def assert_oauth_error(response, status: int, error: str) -> dict:
    """RFC 6749 §5.2: JSON with `error` and `error_description`, never cached."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"error", "error_description"} and body["error"] == error
    assert body["error_description"]
    assert response.headers["Cache-Control"] == "no-store"
    return body


@pytest.mark.parametrize("post", [False, True], ids=["client_secret_basic", "client_secret_post"])
def test_a_client_gets_a_token_that_verifies_with_the_key_set_alone(app, client, tenant, ci, post):
    response = fetch_token(client, *ci, post=post)
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert body["scope"] == "context:read context:write projects:read"
    claims = verify_downstream(
        client.get("/.well-known/jwks.json").get_json(), body["access_token"], app
    )
    assert claims["sub"] == ci[0] and claims["tid"] == tenant.id
    assert claims["scope"] == body["scope"] and claims["exp"] - claims["iat"] == 3600
    me = client.get(WHOAMI, headers=bearer(body["access_token"])).get_json()
    assert (me["type"], me["id"], me["tenant"]["id"]) == ("oauth_client", ci[0], tenant.id)
    assert me["permissions"] == ["context:read", "context:write", "projects:read"]


def test_a_scope_narrows_the_token_and_a_wider_one_is_refused(app, client, ci):
    token = client_token(client, *ci, scope="context:read projects:read")
    me = client.get(WHOAMI, headers=bearer(token)).get_json()
    assert me["permissions"] == ["context:read", "projects:read"]
    assert_problem(
        client.post("/api/v1/projects", json={"name": "x"}, headers=bearer(token)), 403, "forbidden"
    )
    for scope in ("keys:manage", "context:read keys:manage", "platform:admin", "nonsense"):
        assert_oauth_error(fetch_token(client, *ci, scope=scope), 400, "invalid_scope")


def test_project_restrictions_hold_for_the_clients_tokens(app, client, tenant):
    owner = bearer(make_api_key(app, tenant, name="owner")[1])
    mine = client.post("/api/v1/projects", json={"name": "Mine"}, headers=owner).get_json()
    other = client.post("/api/v1/projects", json={"name": "Other"}, headers=owner).get_json()
    restricted = make_oauth_client(app, tenant, project_ids=[mine["id"]])
    token = bearer(client_token(client, *restricted))
    assert client.get(f"/api/v1/projects/{mine['id']}", headers=token).status_code == 200
    assert_problem(client.get(f"/api/v1/projects/{other['id']}", headers=token), 404, "not_found")
    listed = client.get("/api/v1/projects", headers=token).get_json()
    assert [p["id"] for p in listed] == [mine["id"]]


@pytest.mark.parametrize(
    "case",
    [
        "wrong secret",
        "unknown client",
        "no credentials",
        "malformed basic",
        "basic not UTF-8",
        "other tenant's secret",
    ],
)
def test_a_client_that_cannot_authenticate_gets_invalid_client(app, client, tenant, ci, case):
    theirs = make_oauth_client(app, make_tenant(app, "globex"))
    form = {"grant_type": "client_credentials"}
    headers = {
        "wrong secret": basic(ci[0], "ctxs_" + "A" * 43),
        "unknown client": basic("ctxc_" + "a" * 20, ci[1]),
        "no credentials": {},
        "malformed basic": {"Authorization": "Basic !!!not-base64"},
        "basic not UTF-8": {"Authorization": "Basic " + base64.b64encode(b"\xff\xfe:x").decode()},
        "other tenant's secret": basic(ci[0], theirs[1]),
    }[case]
    response = client.post(TOKEN, data=form, headers=headers)
    body = assert_oauth_error(response, 401, "invalid_client")
    assert response.headers["WWW-Authenticate"].startswith("Basic ")
    assert ci[1] not in response.get_data(as_text=True) and theirs[1] not in str(body)


@pytest.mark.parametrize(
    "form, error",
    [
        ({"grant_type": "password", "username": "a", "password": "b"}, "unsupported_grant_type"),
        ({"grant_type": "authorization_code", "code": "x"}, "unsupported_grant_type"),
        ({}, "unsupported_grant_type"),
        ({"grant_type": "client_credentials", "scope": "context:read\x00"}, "invalid_scope"),
    ],
)
def test_bad_token_requests_get_rfc_errors(client, ci, form, error):
    assert_oauth_error(client.post(TOKEN, data=form, headers=basic(*ci)), 400, error)


def test_a_json_body_is_not_a_token_request(client, ci):
    response = client.post(TOKEN, json={"grant_type": "client_credentials"}, headers=basic(*ci))
    assert_oauth_error(response, 400, "unsupported_grant_type")


def test_the_token_endpoint_takes_post_only(client, ci):
    response = client.get(TOKEN, headers=basic(*ci))
    assert_problem(response, 405, "method_not_allowed")


def test_a_clients_tokens_share_the_clients_rate_limit_budget(app_config):
    from tests import stack

    app_config["RATE_LIMIT_DEFAULT"] = "4/minute"
    with stack.migrated_app(app_config) as app:
        client = app.test_client()
        tenant = make_tenant(app, "acme")
        pair = make_oauth_client(app, tenant)
        first, second = (bearer(client_token(client, *pair)) for _ in range(2))
        answers = [client.get(WHOAMI, headers=token).status_code for token in (first, second) * 3]
        assert answers == [200, 200, 200, 200, 429, 429]
        # Another client of the tenant has a budget of its own.
        other = bearer(client_token(client, *make_oauth_client(app, tenant, name="other")))
        assert client.get(WHOAMI, headers=other).status_code == 200


def test_introspection_and_revocation_refuse_basic_credentials_that_are_not_utf8(client, ci):
    token = client_token(client, *ci)
    garbled = {"Authorization": "Basic " + base64.b64encode(b"\xff\xfe:x").decode()}
    for url in (INTROSPECT, REVOKE):
        assert_oauth_error(
            client.post(url, data={"token": token}, headers=garbled), 401, "invalid_client"
        )
    assert client.get(WHOAMI, headers=bearer(token)).status_code == 200  # nothing revoked


def test_introspection_answers_for_the_tokens_tenant_only(app, client, tenant, ci):
    token = client_token(client, *ci, scope="context:read")
    colleague = make_oauth_client(app, tenant, name="gateway", scopes=["context:read"])
    answer = client.post(INTROSPECT, data={"token": token}, headers=basic(*colleague))
    assert answer.status_code == 200
    body = answer.get_json()
    claims = jwt.decode(token, options={"verify_signature": False})
    assert body == {
        "active": True,
        "scope": "context:read",
        "client_id": ci[0],
        "token_type": "Bearer",
        "exp": claims["exp"],
        "iat": claims["iat"],
        "nbf": claims["nbf"],
        "sub": ci[0],
        "aud": "ctxcloud-api",
        "iss": "ctxcloud",
        "jti": claims["jti"],
    }
    stranger = make_oauth_client(app, make_tenant(app, "globex"))
    inactive = {"active": False}
    assert (
        client.post(INTROSPECT, data={"token": token}, headers=basic(*stranger)).get_json()
        == inactive
    )
    _user, password = make_user(app, tenant, "member", "mia")
    login_token = login(client, tenant, "mia", password)["access_token"]
    for other in (login_token, "garbage", token[:-4] + "AAAA", "x" * 10_000):
        answer = client.post(INTROSPECT, data={"token": other}, headers=basic(*ci))
        assert answer.status_code == 200 and answer.get_json() == inactive
    assert_oauth_error(client.post(INTROSPECT, data={"token": token}), 401, "invalid_client")
    assert_oauth_error(client.post(INTROSPECT, data={}, headers=basic(*ci)), 400, "invalid_request")


def test_a_revoked_token_is_refused_at_once(app, client, tenant, ci):
    token = client_token(client, *ci)
    kept = client_token(client, *ci)
    assert client.get(WHOAMI, headers=bearer(token)).status_code == 200  # now cached
    stranger = make_oauth_client(app, make_tenant(app, "globex"))
    # Another tenant's client cannot revoke it, and learns nothing (RFC 7009: 200 all the same).
    response = client.post(REVOKE, data={"token": token}, headers=basic(*stranger))
    assert response.status_code == 200
    assert client.get(WHOAMI, headers=bearer(token)).status_code == 200
    response = client.post(
        REVOKE, data={"token": token, "token_type_hint": "access_token"}, headers=basic(*ci)
    )
    assert response.status_code == 200
    assert_problem(client.get(WHOAMI, headers=bearer(token)), 401, "unauthorized")
    assert client.post(INTROSPECT, data={"token": token}, headers=basic(*ci)).get_json() == {
        "active": False
    }
    assert client.get(WHOAMI, headers=bearer(kept)).status_code == 200  # only that token
    assert client.post(REVOKE, data={"token": "garbage"}, headers=basic(*ci)).status_code == 200
    assert_oauth_error(client.post(REVOKE, data={"token": kept}), 401, "invalid_client")
    hint = {"token": kept, "token_type_hint": "id_token"}
    assert_oauth_error(
        client.post(REVOKE, data=hint, headers=basic(*ci)), 400, "unsupported_token_type"
    )


def test_a_forged_client_token_is_refused(app, client, tenant, ci):
    """Claims of a client token, signed with someone else's key under our kid: 401."""
    from tests.support.tokens import stranger_key

    token = client_token(client, *ci)
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, options={"verify_signature": False})
    forged = jwt.encode(
        {**claims, "scope": "keys:manage"}, stranger_key(), "ES256", headers={"kid": header["kid"]}
    )
    assert_problem(client.get(WHOAMI, headers=bearer(forged)), 401, "unauthorized")
    unsigned = jwt.encode({**claims}, None, "none")
    assert_problem(client.get(WHOAMI, headers=bearer(unsigned)), 401, "unauthorized")


def test_the_metadata_describes_the_server(app, client):
    response = client.get(METADATA, base_url="https://ctx.example.com")
    assert response.status_code == 200
    metadata = response.get_json()
    checked = AuthorizationServerMetadata(metadata)
    for name in dir(checked):
        # Every RFC 8414 rule but one: there is no authorization endpoint, so no response type.
        if name.startswith("validate_") and name != "validate_response_types_supported":
            getattr(checked, name)()
    assert metadata["response_types_supported"] == []
    assert metadata["issuer"] == "https://ctx.example.com"
    assert metadata["token_endpoint"] == "https://ctx.example.com/api/v1/oauth/token"
    assert metadata["jwks_uri"] == "https://ctx.example.com/.well-known/jwks.json"
    assert metadata["grant_types_supported"] == ["client_credentials"]
    assert metadata["token_endpoint_auth_methods_supported"] == [
        "client_secret_basic",
        "client_secret_post",
    ]
    assert "context:read" in metadata["scopes_supported"]
    assert "platform:admin" not in metadata["scopes_supported"]


def test_the_metadata_issuer_is_the_configured_one(app_config):
    from tests import stack

    app_config["OAUTH_ISSUER"] = "https://ctx.example.com/"
    with stack.migrated_app(app_config) as app:
        metadata = app.test_client().get(METADATA).get_json()
    assert metadata["issuer"] == "https://ctx.example.com"
    assert metadata["revocation_endpoint"] == "https://ctx.example.com/api/v1/oauth/revoke"


@pytest.mark.parametrize(
    "setting, value",
    [
        ("RATE_LIMIT_OAUTH_TOKEN", "lots"),
        ("JWT_CLIENT_TOKEN_EXPIRES", 0),
        ("JWT_CLIENT_TOKEN_EXPIRES", "3600"),
    ],
)
def test_bad_settings_stop_the_start(app_config, setting, value):
    from ctxcloud import ConfigError, create_app

    with pytest.raises(ConfigError, match=f"CTXCLOUD_{setting}"):
        create_app({**app_config, setting: value})


def test_a_client_token_beside_an_api_key_is_refused(app, client, tenant, ci):
    """Two credentials are one too many, whichever plugin would have claimed the first."""
    token = client_token(client, *ci)
    _, key = make_api_key(app, tenant, name="k")
    for headers in ({**bearer(token), "X-API-Key": key}, {**bearer(token), "X-API-Key": "x"}):
        assert_problem(client.get(WHOAMI, headers=headers), 401, "unauthorized")
