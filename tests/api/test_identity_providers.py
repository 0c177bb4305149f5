"""/api/v1/tenant/identity-providers: registering a tenant's own OIDC providers (federation),
their validation, discovery, one owner per (issuer, audience), the dry run, isolation and
permissions."""

from __future__ import annotations

import logging

import peewee
import pytest

from ctxcloud import ConfigError
from ctxcloud.plugins.auth_oidc.models import ProviderAudience
from ctxcloud.plugins.auth_oidc.settings import OidcSettings
from tests.support.factories import bearer, login, make_api_key, make_tenant, make_user
from tests.support.fake_oidc import fake_identity_provider, provider_body
from tests.support.server import free_port

BASE = "/api/v1/tenant/identity-providers"


@pytest.fixture
def idp():
    with fake_identity_provider() as provider:
        yield provider


@pytest.fixture
def admin(owner_key) -> dict:
    return bearer(owner_key)


def put(client, headers, name="keycloak", body=None, **overrides):
    return client.put(f"{BASE}/{name}", json=body or overrides, headers=headers)


def assert_problem(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["code"] == code
    return body


def audit_types(caplog) -> list[dict]:
    return [r.audit for r in caplog.records if r.name == "ctxcloud.audit"]


# CRUD and discovery -------------------------------------------------------------------------


def test_register_read_list_replace_delete(client, admin, idp, caplog):
    with caplog.at_level(logging.INFO, logger="ctxcloud.audit"):
        created = put(client, admin, body=provider_body(idp, default_role="viewer"))
        assert created.status_code == 201, created.get_data(as_text=True)
        body = created.get_json()
        assert body["name"] == "keycloak" and body["id"].startswith("idp_")
        assert body["issuer"] == idp.issuer and body["audiences"] == ["ctxcloud"]
        # Found through the discovery document, not guessed from the issuer.
        assert body["jwks_uri"] == idp.jwks_uri and body["jwks_uri_discovered"] is True
        assert body["algorithms"] == ["RS256", "ES256"] and body["subject_claim"] == "sub"
        assert body["default_role"] == "viewer"
        assert idp.fetches[idp.discovery_path] == 1 and idp.jwks_fetches == 1

        assert client.get(f"{BASE}/keycloak", headers=admin).get_json() == body
        listed = client.get(BASE, headers=admin)
        assert listed.status_code == 200 and [p["name"] for p in listed.get_json()] == ["keycloak"]
        assert '"total": 1' in listed.headers["X-Pagination"]

        replaced = put(
            client,
            admin,
            body=provider_body(idp, audiences=["ctxcloud", "ctx-cli"], subject_claim="email"),
        )
        assert replaced.status_code == 200
        assert replaced.get_json()["id"] == body["id"]
        assert replaced.get_json()["audiences"] == ["ctxcloud", "ctx-cli"]
        assert replaced.get_json()["default_role"] is None

        assert client.delete(f"{BASE}/keycloak", headers=admin).status_code == 204
        assert_problem(client.get(f"{BASE}/keycloak", headers=admin), 404, "not_found")
        assert_problem(client.delete(f"{BASE}/keycloak", headers=admin), 404, "not_found")
    events = [e for e in audit_types(caplog) if e["type"].startswith("identity_provider_")]
    assert [e["type"] for e in events] == [
        "identity_provider_created",
        "identity_provider_updated",
        "identity_provider_deleted",
    ]
    assert all(e["issuer"] == idp.issuer and e["name"] == "keycloak" for e in events)


def test_a_given_jwks_uri_needs_no_discovery(client, admin, idp):
    response = put(client, admin, body=provider_body(idp, jwks_uri=idp.jwks_uri))
    assert response.status_code == 201
    assert response.get_json()["jwks_uri_discovered"] is False
    assert idp.fetches[idp.discovery_path] == 0 and idp.jwks_fetches == 1


def test_a_discovery_document_naming_another_issuer_is_refused(client, admin, idp):
    idp.discovery_overrides["issuer"] = "https://evil.example.com/realms/acme"
    body = assert_problem(
        put(client, admin, body=provider_body(idp)), 422, "invalid_provider_metadata"
    )
    assert "another issuer" in body["errors"]["issuer"][0]
    assert_problem(client.get(f"{BASE}/keycloak", headers=admin), 404, "not_found")


def test_a_discovery_document_without_a_jwks_uri_is_refused(client, admin, idp):
    idp.discovery_overrides["jwks_uri"] = None
    body = assert_problem(
        put(client, admin, body=provider_body(idp)), 422, "invalid_provider_metadata"
    )
    assert "jwks_uri" in body["errors"]["issuer"][0]


def test_a_key_set_without_a_usable_key_is_refused(client, admin, idp):
    idp.keys = []
    body = assert_problem(
        put(client, admin, body=provider_body(idp)), 422, "invalid_provider_metadata"
    )
    assert "no usable signing key" in body["errors"]["jwks_uri"][0]


@pytest.mark.parametrize("outage", ["503", "drop"])
def test_a_provider_that_does_not_answer_is_a_422_naming_why(client, admin, idp, outage):
    idp.outage = outage
    body = assert_problem(put(client, admin, body=provider_body(idp)), 422, "provider_unreachable")
    assert idp.discovery_path in body["detail"]
    assert ("HTTP status 503" if outage == "503" else "connection failed") in body["detail"]


def test_an_issuer_nobody_listens_on_is_a_422(client, admin):
    issuer = f"http://127.0.0.1:{free_port()}/realms/gone"
    body = assert_problem(
        put(client, admin, issuer=issuer, audiences=["a"], claim_rules=[]),
        422,
        "provider_unreachable",
    )
    assert "refused" in body["detail"] and "refused" in body["errors"]["issuer"][0]


def test_a_slow_provider_times_out_as_configured(app, client, admin, idp, monkeypatch):
    """Every outbound call has the configured timeout (OIDC_HTTP_TIMEOUT)."""
    from ctxcloud.plugins.auth_oidc import fetch

    seen = []
    real = fetch._OPENER.open
    monkeypatch.setattr(
        fetch._OPENER,
        "open",
        lambda request, timeout: seen.append(timeout) or real(request, timeout=timeout),
    )
    assert put(client, admin, body=provider_body(idp)).status_code == 201
    assert seen == [app.config["OIDC_HTTP_TIMEOUT"]] * 2


# Validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"algorithms": ["HS256"]}, "algorithms"),
        ({"algorithms": ["none"]}, "algorithms"),
        ({"algorithms": []}, "algorithms"),
        ({"audiences": []}, "audiences"),
        ({"audiences": None}, "audiences"),
        ({"issuer": "not a url"}, "issuer"),
        ({"issuer": "ftp://idp.example.com"}, "issuer"),
        ({"issuer": "ctxcloud"}, "issuer"),
        ({"jwks_uri": "file:///etc/passwd"}, "jwks_uri"),
        ({"default_role": "superuser"}, "default_role"),
        ({"claim_rules": [{"claim": "groups", "role": "admin"}]}, "claim_rules"),
        (
            {"claim_rules": [{"claim": "g", "equals": "a", "contains": "a", "role": "admin"}]},
            "claim_rules",
        ),
        ({"claim_rules": [{"claim": "g", "equals": "a", "role": "root"}]}, "claim_rules"),
        ({"claim_rules": [{"claim": "", "equals": "a", "role": "admin"}]}, "claim_rules"),
        ({"claim_rules": [{"claim": "g", "equals": ["a"], "role": "admin"}]}, "claim_rules"),
    ],
)
def test_bodies_are_validated(client, admin, idp, overrides, field):
    body = assert_problem(
        put(client, admin, body=provider_body(idp, **overrides)), 422, "validation_error"
    )
    assert field in body["errors"], body
    assert sum(idp.fetches.values()) == 0  # nothing fetched for a body that is refused


def test_a_name_that_is_not_a_slug_is_absent(client, admin, idp):
    assert_problem(put(client, admin, "Not_A_Slug", body=provider_body(idp)), 404, "not_found")


def test_plain_http_is_refused_where_not_allowed(app_config, idp):
    from tests import stack

    with stack.migrated_app({**app_config, "OIDC_ALLOW_HTTP": False}) as app:
        tenant = make_tenant(app)
        secret = make_api_key(app, tenant)[1]
        response = put(app.test_client(), bearer(secret), body=provider_body(idp))
        body = assert_problem(response, 422, "validation_error")
        assert "https" in body["errors"]["issuer"][0]
    assert sum(idp.fetches.values()) == 0


def test_plain_http_defaults_to_refused_in_production_only():
    assert OidcSettings.from_config({"ENV": "production"}).allow_http is False
    assert OidcSettings.from_config({"ENV": "testing"}).allow_http is True
    assert OidcSettings.from_config({"ENV": "development"}).allow_http is True
    assert OidcSettings.from_config({"ENV": "production", "OIDC_ALLOW_HTTP": True}).allow_http
    with pytest.raises(ConfigError, match="CTXCLOUD_OIDC_ALLOW_HTTP"):
        OidcSettings.from_config({"OIDC_ALLOW_HTTP": "sometimes"})
    with pytest.raises(ConfigError, match="CTXCLOUD_OIDC_HTTP_TIMEOUT"):
        OidcSettings.from_config({"OIDC_HTTP_TIMEOUT": 0})


# One owner per (issuer, audience) ------------------------------------------------------------


def test_a_pair_another_tenant_holds_is_a_409(app, client, admin, idp, other_tenant):
    assert put(client, admin, body=provider_body(idp)).status_code == 201
    other = bearer(make_api_key(app, other_tenant)[1])
    fetched = sum(idp.fetches.values())
    body = assert_problem(put(client, other, body=provider_body(idp)), 409, "audience_taken")
    assert "another tenant" in body["detail"]
    assert sum(idp.fetches.values()) == fetched  # refused before any fetch
    # Another audience of the same issuer is free.
    assert put(client, other, body=provider_body(idp, audiences=["globex"])).status_code == 201


def test_a_pair_cannot_be_registered_twice_by_one_tenant(client, admin, idp):
    assert put(client, admin, body=provider_body(idp)).status_code == 201
    body = assert_problem(
        put(client, admin, "second", body=provider_body(idp)), 409, "audience_taken"
    )
    assert "'keycloak'" in body["detail"]


def test_the_pair_is_unique_in_the_database_itself(app, client, admin, idp):
    """The race-safe part: a second row of one pair is refused by the unique index."""
    assert put(client, admin, body=provider_body(idp)).status_code == 201
    with app.app_context(), pytest.raises(peewee.IntegrityError):
        ProviderAudience.create(
            issuer=idp.issuer, audience="ctxcloud", tenant_id="tnt_other", provider_id="idp_x"
        )


def test_a_lost_race_is_a_409_not_a_500(app, client, admin, idp, other_tenant, monkeypatch):
    """Both requests passed the friendly check; the index decides and the loser gets 409."""
    from ctxcloud.plugins.auth_oidc import service

    real_store = service._store

    def store_after_a_rival(tenant_id, name, fields, actor):
        ProviderAudience.create(
            issuer=fields["issuer"],
            audience="ctxcloud",
            tenant_id=other_tenant.id,
            provider_id="idp_r",
        )
        return real_store(tenant_id, name, fields, actor)

    monkeypatch.setattr(service, "_store", store_after_a_rival)
    body = assert_problem(put(client, admin, body=provider_body(idp)), 409, "audience_taken")
    assert "another tenant" in body["detail"]
    monkeypatch.undo()
    assert_problem(client.get(f"{BASE}/keycloak", headers=admin), 404, "not_found")


def test_replacing_frees_the_audiences_it_drops(app, client, admin, idp, other_tenant):
    assert put(client, admin, body=provider_body(idp, audiences=["a", "b"])).status_code == 201
    assert put(client, admin, body=provider_body(idp, audiences=["b"])).status_code == 200
    other = bearer(make_api_key(app, other_tenant)[1])
    assert put(client, other, body=provider_body(idp, audiences=["a"])).status_code == 201


def test_deleting_the_tenant_deletes_its_providers(app, client, admin, idp, tenant, platform_key):
    assert put(client, admin, body=provider_body(idp)).status_code == 201
    response = client.delete(f"/api/v1/tenants/{tenant.id}", headers=bearer(platform_key))
    assert response.status_code == 204, response.get_data(as_text=True)
    with app.app_context():
        assert ProviderAudience.select().count() == 0
    newcomer = make_tenant(app)
    assert (
        put(client, bearer(make_api_key(app, newcomer)[1]), body=provider_body(idp)).status_code
        == 201
    )


# Isolation and permissions -----------------------------------------------------------------


def test_another_tenant_cannot_see_or_change_a_provider(app, client, admin, idp, other_tenant):
    assert put(client, admin, body=provider_body(idp)).status_code == 201
    other = bearer(make_api_key(app, other_tenant)[1])
    assert_problem(client.get(f"{BASE}/keycloak", headers=other), 404, "not_found")
    assert_problem(client.delete(f"{BASE}/keycloak", headers=other), 404, "not_found")
    dry = client.post(f"{BASE}/keycloak/test", json={"claims": {"sub": "x"}}, headers=other)
    assert_problem(dry, 404, "not_found")
    assert client.get(BASE, headers=other).get_json() == []
    assert client.get(f"{BASE}/keycloak", headers=admin).status_code == 200


@pytest.mark.parametrize("role", ["viewer", "member", "admin"])
def test_only_tenant_admins_manage_providers(app, client, tenant, idp, role):
    user, password = make_user(app, tenant, role)
    headers = bearer(login(client, tenant, user.username, password)["access_token"])
    assert_problem(put(client, headers, body=provider_body(idp)), 403, "forbidden")
    assert_problem(client.get(BASE, headers=headers), 403, "forbidden")
    assert_problem(client.get(f"{BASE}/keycloak", headers=headers), 403, "forbidden")
    assert_problem(client.delete(f"{BASE}/keycloak", headers=headers), 403, "forbidden")
    dry = client.post(f"{BASE}/keycloak/test", json={"claims": {}}, headers=headers)
    assert_problem(dry, 403, "forbidden")
    assert sum(idp.fetches.values()) == 0


def test_an_owner_may_grant_owner(app, client, tenant, idp):
    user, password = make_user(app, tenant, "owner")
    headers = bearer(login(client, tenant, user.username, password)["access_token"])
    rules = [{"claim": "groups", "contains": "founders", "role": "owner"}]
    assert put(client, headers, body=provider_body(idp, claim_rules=rules)).status_code == 201


def test_rules_never_grant_more_than_the_registering_credential_holds(app, client, tenant, idp):
    secret = make_api_key(app, tenant, scopes=["tenant:admin", "context:read", "projects:read"])[1]
    rules = [{"claim": "groups", "contains": "x", "role": "member"}]
    response = put(client, bearer(secret), body=provider_body(idp, claim_rules=rules))
    assert "'member'" in assert_problem(response, 403, "forbidden")["detail"]
    response = put(
        client, bearer(secret), body=provider_body(idp, claim_rules=[], default_role="admin")
    )
    assert_problem(response, 403, "forbidden")
    response = put(
        client, bearer(secret), body=provider_body(idp, claim_rules=[], default_role="viewer")
    )
    assert response.status_code == 201


# The dry run -------------------------------------------------------------------------------

NAMESPACED = "https://acme.example/groups"


@pytest.fixture
def registered(client, admin, idp):
    rules = [
        {"claim": NAMESPACED, "contains": "ctx-owners", "role": "owner"},
        {"claim": "groups", "contains": "ctx-admins", "role": "admin"},
        {"claim": "department", "equals": "engineering", "role": "member"},
    ]
    response = put(client, admin, body=provider_body(idp, claim_rules=rules))
    assert response.status_code == 201
    return response.get_json()


def dry_run(client, admin, **body):
    return client.post(f"{BASE}/keycloak/test", json=body, headers=admin)


@pytest.mark.parametrize(
    "claims, decision, role, rule_index",
    [
        ({"sub": "u1", NAMESPACED: ["ctx-owners"], "groups": ["ctx-admins"]}, "rule", "owner", 0),
        ({"sub": "u1", "groups": ["x", "ctx-admins"]}, "rule", "admin", 1),
        ({"sub": "u1", "groups": "ctx-admins"}, "rule", "admin", 1),  # one group as a string
        ({"sub": "u1", "department": "engineering"}, "rule", "member", 2),
        ({"sub": "u1", "department": ["engineering"]}, "refused", None, None),  # equals: strings
        ({"sub": "u1", "groups": ["ctx-admins-not"]}, "refused", None, None),
        ({"sub": "u1", "groups": [1, True, None]}, "refused", None, None),
        ({"sub": "u1"}, "refused", None, None),
    ],
)
def test_the_dry_run_judges_claims_first_match_wins(
    client, admin, registered, claims, decision, role, rule_index
):
    response = dry_run(client, admin, claims=claims)
    assert response.status_code == 200, response.get_data(as_text=True)
    result = response.get_json()
    assert (result["decision"], result["role"], result["rule_index"]) == (
        decision,
        role,
        rule_index,
    )
    assert result["verified"] is False and result["subject"] == "u1"
    if role is None:
        assert result["actor"] is None and result["permissions"] == [] and result["reason"]
    else:
        assert result["actor"] == f"federated:u1@{registered['issuer']}"
        assert result["rule"] == registered["claim_rules"][rule_index]


def test_the_dry_run_reports_the_default_role(client, admin, idp):
    assert put(client, admin, body=provider_body(idp, default_role="viewer")).status_code == 201
    result = dry_run(client, admin, claims={"sub": "u2", "groups": []}).get_json()
    assert (result["decision"], result["role"], result["rule"]) == ("default", "viewer", None)
    assert "context:read" in result["permissions"]


def test_the_dry_run_refuses_claims_without_a_subject(client, admin, registered):
    result = dry_run(client, admin, claims={"groups": ["ctx-admins"]}).get_json()
    assert result["decision"] == "refused" and "subject" in result["reason"]


def test_the_dry_run_verifies_a_token_fully(client, admin, idp, registered):
    token = idp.token(groups=["ctx-admins"])
    result = dry_run(client, admin, token=token).get_json()
    assert result["verified"] is True and result["role"] == "admin"
    assert result["subject"] == "f3a1c2d4-alice"


@pytest.mark.parametrize(
    "overrides, reason",
    [
        ({"lifetime": -3600}, "expired"),
        ({"audience": "someone-else"}, "audience"),
        ({"iss": "https://evil.example.com"}, "issuer"),
    ],
)
def test_the_dry_run_names_why_a_token_is_refused(
    client, admin, idp, registered, overrides, reason
):
    response = dry_run(client, admin, token=idp.token(**overrides))
    body = assert_problem(response, 422, "token_rejected")
    assert reason in body["errors"]["token"][0]


def test_the_dry_run_refuses_garbage_and_takes_one_input(client, admin, registered):
    assert_problem(dry_run(client, admin, token="not-a-jwt"), 422, "token_rejected")
    assert_problem(dry_run(client, admin), 422, "validation_error")
    assert_problem(dry_run(client, admin, claims={}, token="x"), 422, "validation_error")


def test_the_dry_run_signs_nobody_in(client, admin, idp, registered, caplog):
    with caplog.at_level(logging.INFO, logger="ctxcloud.audit"):
        assert dry_run(client, admin, token=idp.token()).status_code == 200
    assert "federated_sign_in" not in [e["type"] for e in audit_types(caplog)]
