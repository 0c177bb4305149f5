"""Tokens of a tenant's own identity provider: the right person lands in the right tenant
with the right role, and every forgery or misuse is a 401 (never a 5xx). Key sets are
fetched sparingly: rotation costs one refetch, a flood of random kids a few, an outage
leaves cached keys working until their TTL and then answers 503."""

from __future__ import annotations

import logging
import secrets
import time

import jwt
import pytest

from ctxcloud.plugins.auth_oidc.state import federation
from tests.support.factories import bearer, make_api_key
from tests.support.fake_oidc import (
    FakeClock,
    fake_identity_provider,
    new_key,
    provider_body,
)
from tests.support.tokens import hs256_raw

BASE = "/api/v1/tenant/identity-providers"
WHOAMI = "/api/v1/auth/whoami"


@pytest.fixture
def idp():
    with fake_identity_provider() as provider:
        yield provider


@pytest.fixture
def clock(app) -> FakeClock:
    """The key sets' clock, moved by hand: no test sleeps."""
    fake = FakeClock()
    federation(app).key_sets.clock = fake
    return fake


@pytest.fixture
def admin(owner_key) -> dict:
    return bearer(owner_key)


@pytest.fixture
def registered(client, admin, idp, clock) -> dict:
    response = client.put(f"{BASE}/keycloak", json=provider_body(idp), headers=admin)
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()


def whoami(client, token: str):
    return client.get(WHOAMI, headers=bearer(token))


def assert_refused(response) -> None:
    assert response.status_code == 401, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["code"] == "unauthorized"
    assert "Bearer" in response.headers["WWW-Authenticate"]


def audit_events(caplog, kind: str) -> list[dict]:
    return [
        r.audit for r in caplog.records if r.name == "ctxcloud.audit" and r.audit["type"] == kind
    ]


# Signing in --------------------------------------------------------------------------------


def test_a_provider_token_signs_its_person_into_the_right_tenant(
    client, idp, tenant, registered, caplog
):
    token = idp.token(groups=["ctx-writers"])
    with caplog.at_level(logging.INFO, logger="ctxcloud.audit"):
        response = whoami(client, token)
        assert response.status_code == 200, response.get_data(as_text=True)
        assert whoami(client, token).status_code == 200  # a second use: no second sign-in
    me = response.get_json()
    assert me["type"] == "federated" and me["id"] == "f3a1c2d4-alice"
    assert me["issuer"] == idp.issuer and me["role"] == "member"
    assert me["tenant"]["id"] == tenant.id
    assert "context:write" in me["permissions"] and "tenant:admin" not in me["permissions"]
    (event,) = audit_events(caplog, "federated_sign_in")
    assert event["issuer"] == idp.issuer and event["subject"] == "f3a1c2d4-alice"
    assert event["tenant_id"] == tenant.id and event["role"] == "member"
    assert event["actor"] == f"federated:f3a1c2d4-alice@{idp.issuer}"
    assert token not in repr(caplog.records) and token not in caplog.text


def test_the_stored_audit_log_names_the_issuer_and_subject(client, admin, idp, registered):
    """GET /audit-events: the sign-in's actor is `sub@issuer`, with both in its details."""
    assert whoami(client, idp.token()).status_code == 200
    events = client.get("/api/v1/audit-events?type=federated_sign_in", headers=admin)
    assert events.status_code == 200, events.get_data(as_text=True)
    (event,) = events.get_json()
    assert event["actor"] == {"kind": "federated", "id": f"f3a1c2d4-alice@{idp.issuer}"}
    assert event["details"]["issuer"] == idp.issuer
    assert event["details"]["subject"] == "f3a1c2d4-alice"


def test_the_role_follows_the_rules_and_the_actor_can_work(client, idp, registered):
    token = idp.token(groups=["ctx-admins", "ctx-writers"], sub="bob")
    assert whoami(client, token).get_json()["role"] == "admin"
    created = client.post("/api/v1/projects", json={"name": "Fed"}, headers=bearer(token))
    assert created.status_code == 201, created.get_data(as_text=True)
    # An admin is not a tenant admin: providers stay out of reach.
    assert client.get(BASE, headers=bearer(token)).status_code == 403


def test_the_subject_claim_names_the_actor(client, admin, idp, registered):
    """A provider whose stable user id is another claim (Entra ID's `oid`): the actor is
    that claim's value, and a token without it is refused."""
    body = provider_body(idp, subject_claim="oid")
    assert client.put(f"{BASE}/keycloak", json=body, headers=admin).status_code == 200
    me = whoami(client, idp.token(oid="7d2e-oid-of-alice")).get_json()
    assert (me["type"], me["id"], me["issuer"]) == ("federated", "7d2e-oid-of-alice", idp.issuer)
    assert_refused(whoami(client, idp.token()))  # a `sub` but no `oid`


def test_an_ec_key_signs_in_too(client, idp, registered):
    assert whoami(client, idp.token(algorithm="ES256")).status_code == 200


def test_a_cached_token_costs_no_fetch_and_no_query(app, client, idp, registered, monkeypatch):
    token = idp.token()
    assert whoami(client, token).status_code == 200
    fetches = sum(idp.fetches.values())
    from ctxcloud.plugins.auth_oidc import verify

    monkeypatch.setattr(verify, "_load", lambda *a: pytest.fail("verified again"))
    for _ in range(5):
        assert whoami(client, token).status_code == 200
    assert sum(idp.fetches.values()) == fetches


def test_the_services_own_and_other_credentials_are_not_claimed(app, client, tenant, registered):
    """Ownership: API keys and JWTs without an issuer (or with ours) go to other plugins."""
    assert whoami(client, make_api_key(app, tenant)[1]).status_code == 200
    no_issuer = jwt.encode({"sub": "x", "exp": int(time.time()) + 60}, new_key().private, "RS256")
    assert_refused(whoami(client, no_issuer))


# Rotation and outages ----------------------------------------------------------------------


def test_a_rotated_key_is_accepted_after_one_refetch(client, idp, registered, clock):
    assert whoami(client, idp.token()).status_code == 200
    before = idp.jwks_fetches
    clock.advance(31)  # past the refetch cooldown of the registration's fetch
    idp.rotate()
    assert whoami(client, idp.token()).status_code == 200
    assert idp.jwks_fetches == before + 1
    assert whoami(client, idp.token(algorithm="ES256")).status_code == 200
    assert idp.jwks_fetches == before + 1


def test_a_provider_down_leaves_cached_keys_working_until_their_ttl(
    app, client, idp, registered, clock
):
    assert whoami(client, idp.token()).status_code == 200
    idp.outage = "503"
    clock.advance(599)
    assert whoami(client, idp.token()).status_code == 200  # a new token, the cached keys
    clock.advance(2)  # past OIDC_JWKS_TTL (600 s)
    response = whoami(client, idp.token())
    assert response.status_code == 503, response.get_data(as_text=True)
    assert response.get_json()["code"] == "unavailable" and "Retry-After" in response.headers
    attempts = idp.jwks_fetches
    for _ in range(10):  # a dead provider is not hammered
        assert whoami(client, idp.token()).status_code == 503
    assert idp.jwks_fetches == attempts
    idp.outage = None
    clock.advance(31)
    assert whoami(client, idp.token()).status_code == 200


def test_a_dropped_connection_past_the_ttl_is_a_503_too(client, idp, registered, clock):
    idp.outage = "drop"
    clock.advance(601)
    assert whoami(client, idp.token()).status_code == 503


def test_a_hundred_random_kids_cost_at_most_four_fetches(client, idp, registered, clock):
    before = idp.jwks_fetches
    stranger = new_key("RS256")
    for _ in range(100):
        stranger.kid = secrets.token_hex(8)
        assert_refused(whoami(client, idp.token(key=stranger)))
        clock.advance(0.9)  # 90 s in all: three cooldowns
    fetched = idp.jwks_fetches - before
    assert 1 <= fetched <= 4, fetched
    print(f"100 random kids over 90 s: {fetched} key-set fetches")


# Changes apply at once ---------------------------------------------------------------------


def test_deleting_the_provider_refuses_its_tokens_at_once(client, admin, idp, registered):
    cached = idp.token()
    assert whoami(client, cached).status_code == 200
    assert client.delete(f"{BASE}/keycloak", headers=admin).status_code == 204
    assert_refused(whoami(client, cached))  # cached in this process: refused all the same
    assert_refused(whoami(client, idp.token()))  # never seen


def test_changing_the_rules_applies_to_cached_tokens_at_once(client, admin, idp, registered):
    token = idp.token(groups=["ctx-writers"])
    assert whoami(client, token).get_json()["role"] == "member"
    rules = [{"claim": "groups", "contains": "ctx-writers", "role": "viewer"}]
    body = provider_body(idp, claim_rules=rules)
    assert client.put(f"{BASE}/keycloak", json=body, headers=admin).status_code == 200
    assert whoami(client, token).get_json()["role"] == "viewer"


# Attacks -----------------------------------------------------------------------------------


def _alg_none(idp):
    claims = idp.claims()
    header = {"alg": "none", "typ": "JWT", "kid": idp.key().kid}
    from tests.support.tokens import json64

    return f"{json64(header)}.{json64(claims)}."


def _hs256_with_public_key(idp):
    key = idp.key()
    header = {"alg": "HS256", "typ": "JWT", "kid": key.kid}
    return hs256_raw(idp.claims(), key.public_pem(), header)


def _stranger_with_known_kid(idp):
    return idp.token(key=new_key("RS256", kid=idp.key().kid))


ATTACKS = {
    "alg none": _alg_none,
    "HS256 signed with the provider's public key": _hs256_with_public_key,
    "an unknown kid": lambda idp: idp.token(key=new_key("RS256", kid="unknown-kid")),
    "no kid": lambda idp: jwt.encode(idp.claims(), idp.key().private, "RS256"),
    "a stranger's key under the provider's kid": _stranger_with_known_kid,
    "an algorithm outside the allow-list": lambda idp: idp.token(
        key=new_key("RS256"), headers={"alg": "RS512"}
    ),
    "right issuer, wrong audience": lambda idp: idp.token(audience="someone-else"),
    "expired beyond the leeway": lambda idp: idp.token(lifetime=-61),
    "nbf in the future": lambda idp: idp.token(nbf=int(time.time()) + 120),
    "iat in the future": lambda idp: idp.token(iat=int(time.time()) + 120),
    "no exp": lambda idp: idp.token(idp.claims(exp=None)),
    "claims matching no rule, no default role": lambda idp: idp.token(groups=["visitors"]),
    "no subject": lambda idp: idp.token(sub=None),
    "several audiences without azp": lambda idp: idp.token(audience=["ctxcloud", "other"]),
    "several audiences, azp not the provider's": lambda idp: idp.token(
        audience=["ctxcloud", "other"], azp="other"
    ),
    "an issuer nobody registered": lambda idp: idp.token(iss="https://evil.example.com"),
    "not a JWT at all": lambda idp: "eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.c2ln",
}


@pytest.mark.parametrize("attack", ATTACKS, ids=list(ATTACKS))
def test_attacks_are_refused(client, idp, registered, attack):
    before = idp.jwks_fetches
    assert_refused(whoami(client, ATTACKS[attack](idp)))
    assert idp.jwks_fetches <= before + 1  # at most the one refetch of an unknown kid


def test_controls_for_the_attack_table(client, idp, registered):
    """The same tokens, made right, are accepted: the refusals above are for the reason named."""
    assert whoami(client, idp.token(lifetime=-30)).status_code == 200  # within the leeway
    azp = idp.token(audience=["ctxcloud", "other"], azp="ctxcloud")
    assert whoami(client, azp).status_code == 200


def test_another_tenants_audience_is_refused(app, client, idp, registered, other_tenant):
    """Tenant B's provider is another issuer with audience globex-app: a token of tenant A's
    provider made out to globex-app matches no registered pair; and once B registers A's
    issuer for globex-app too, a token naming both tenants' audiences matches two."""
    other = bearer(make_api_key(app, other_tenant)[1])
    with fake_identity_provider("/realms/globex") as globex:
        body = provider_body(globex, audiences=["globex-app"])
        assert client.put(f"{BASE}/globex", json=body, headers=other).status_code == 201
        assert_refused(whoami(client, idp.token(audience="globex-app")))
        assert whoami(client, globex.token(audience="globex-app")).status_code == 200
    body = provider_body(idp, audiences=["globex-app"])
    assert client.put(f"{BASE}/shared", json=body, headers=other).status_code == 201
    both = idp.token(audience=["ctxcloud", "globex-app"], azp="ctxcloud")
    assert_refused(whoami(client, both))


def test_refusals_are_audited_without_the_token(client, idp, registered, tenant, caplog):
    token = idp.token(groups=["visitors"])
    with caplog.at_level(logging.INFO, logger="ctxcloud.audit"):
        assert_refused(whoami(client, token))
    (event,) = audit_events(caplog, "federated_sign_in_refused")
    assert event["tenant_id"] == tenant.id and event["issuer"] == idp.issuer
    assert "rule" in event["reason"]
    assert token not in caplog.text
