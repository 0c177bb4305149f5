"""JWT logins: token, refresh with rotation and reuse detection, revoke, and every bad token."""

from __future__ import annotations

import base64
import datetime
import json
import logging
import time

import jwt
import pytest

from ctxcloud.plugins.users.passwords import Passwords
from tests.api.test_core import assert_problem
from tests.support.factories import bearer, login, make_api_key, make_user
from tests.support.tokens import hs256_raw, public_pem, service_key, sign, stranger_key

TOKEN, REFRESH, REVOKE = "/api/v1/auth/token", "/api/v1/auth/refresh", "/api/v1/auth/revoke"
WHOAMI = "/api/v1/auth/whoami"


@pytest.fixture
def alice(app, tenant):
    user, password = make_user(app, tenant, "admin", "alice")
    return user, password


@pytest.fixture
def tokens(client, tenant, alice) -> dict:
    return login(client, tenant, "alice", alice[1])


def claims_of(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def test_login_answers_both_tokens_with_the_documented_claims(app, client, tenant, alice):
    response = client.post(
        TOKEN, json={"tenant": "acme", "username": "Alice", "password": alice[1]}
    )
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    body = response.get_json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 900
    access, refresh = claims_of(body["access_token"]), claims_of(body["refresh_token"])
    assert access["sub"] == alice[0].id and access["tid"] == tenant.id
    assert access["role"] == "admin" and access["type"] == "access"
    assert access["iss"] == "ctxcloud" and access["aud"] == "ctxcloud-api"
    assert access["exp"] - access["iat"] == 900 and access["jti"]
    assert "csrf" not in access  # no cookies, no double-submit claim
    assert refresh["type"] == "refresh" and refresh["fid"] == access["fid"]
    assert refresh["exp"] - refresh["iat"] == 30 * 24 * 3600
    header = jwt.get_unverified_header(body["access_token"])
    assert header["alg"] == "ES256" and header["kid"] == service_key(app).kid
    me = client.get(WHOAMI, headers=bearer(body["access_token"])).get_json()
    assert me["type"] == "user" and me["id"] == alice[0].id and me["role"] == "admin"
    assert me["tenant"]["slug"] == "acme"


def test_lifetimes_come_from_config(app_config):
    from tests import stack
    from tests.support.factories import make_tenant

    app_config.update(JWT_ACCESS_TOKEN_EXPIRES=60, JWT_REFRESH_TOKEN_EXPIRES=3600)
    with stack.migrated_app(app_config) as application:
        tenant = make_tenant(application, "short")
        _, password = make_user(application, tenant, "viewer", "v")
        body = login(application.test_client(), tenant, "v", password)
    assert body["expires_in"] == 60
    refresh = claims_of(body["refresh_token"])
    assert refresh["exp"] - refresh["iat"] == 3600


def test_a_token_signed_by_another_key_under_our_kid_is_401(app, client, tokens):
    claims = claims_of(tokens["access_token"])
    kid = service_key(app).kid
    forged = jwt.encode(claims, stranger_key(), algorithm="ES256", headers={"kid": kid})
    assert_problem(client.get(WHOAMI, headers=bearer(forged)), 401, "unauthorized")


def test_every_failed_login_gets_the_same_401(app, client, tenant, other_tenant, alice):
    disabled, disabled_password = make_user(app, tenant, "member", "dora")
    with app.app_context():
        from ctxcloud.plugins.users.models import User

        User.update(disabled=True).where(User.id == disabled.id).execute()
    attempts = [
        {"tenant": "nosuch", "username": "alice", "password": alice[1]},
        {"tenant": "acme", "username": "nobody", "password": alice[1]},
        {"tenant": "acme", "username": "alice", "password": alice[1] + "x"},
        {"tenant": "acme", "username": "dora", "password": disabled_password},
        {"tenant": other_tenant.slug, "username": "alice", "password": alice[1]},
    ]
    answers = set()
    for attempt in attempts:
        response = client.post(TOKEN, json=attempt)
        body = assert_problem(response, 401, "unauthorized")
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        body.pop("request_id")
        answers.add(json.dumps(body, sort_keys=True))
    assert len(answers) == 1


def test_an_unknown_user_costs_a_password_hash_too(client, tenant, alice, monkeypatch):
    verified = []
    real_verify = Passwords.verify
    monkeypatch.setattr(
        Passwords, "verify", lambda self, h, p: verified.append(h) or real_verify(self, h, p)
    )
    client.post(TOKEN, json={"tenant": "acme", "username": "nobody", "password": "whatever123"})
    client.post(TOKEN, json={"tenant": "nosuch", "username": "x", "password": "whatever123"})
    client.post(TOKEN, json={"tenant": "acme", "username": "alice", "password": "wrong-password"})
    assert len(verified) == 3
    assert all(h.startswith("$argon2id$") for h in verified)


def test_login_events_are_audited_without_the_password(app, client, tenant, alice, caplog):
    with caplog.at_level(logging.INFO, logger="ctxcloud.audit"):
        client.post(
            TOKEN, json={"tenant": "acme", "username": "alice", "password": "guess-guess-1"}
        )
        login(client, tenant, "alice", alice[1])
    events = [r.audit for r in caplog.records if r.name == "ctxcloud.audit"]
    assert [e["type"] for e in events] == ["login_failed", "login_succeeded"]
    assert events[0]["tenant"] == "acme" and events[0]["username"] == "alice"
    assert events[0]["reason"] == "bad_password" and events[0]["tenant_id"] == tenant.id
    assert events[1]["actor"] == f"user:{alice[0].id}"
    assert "guess-guess-1" not in json.dumps(events) and alice[1] not in json.dumps(events)


@pytest.mark.parametrize(
    "payload,field",
    [
        ({"username": "a", "password": "p"}, "tenant"),
        ({"tenant": "acme", "password": "p"}, "username"),
        ({"tenant": "acme", "username": "a"}, "password"),
        ({"tenant": "acme", "username": "a", "password": ""}, "password"),
        ({"tenant": "acme", "username": "a", "password": "p" * 1025}, "password"),
        ({"tenant": ["acme"], "username": "a", "password": "p"}, "tenant"),
        ({"tenant": "acme", "username": 1, "password": "p"}, "username"),
        ({"tenant": "acme", "username": "a", "password": "p", "otp": "1"}, "otp"),
    ],
)
def test_invalid_login_request_is_422(client, payload, field):
    body = assert_problem(client.post(TOKEN, json=payload), 422, "validation_error")
    assert field in body["errors"]


def test_refresh_rotates_and_the_old_refresh_token_is_dead(client, tokens):
    rotated = client.post(REFRESH, headers=bearer(tokens["refresh_token"]))
    assert rotated.status_code == 200 and rotated.headers["Cache-Control"] == "no-store"
    fresh = rotated.get_json()
    assert fresh["refresh_token"] != tokens["refresh_token"]
    assert claims_of(fresh["refresh_token"])["fid"] == claims_of(tokens["refresh_token"])["fid"]
    assert client.get(WHOAMI, headers=bearer(fresh["access_token"])).status_code == 200
    again = client.post(REFRESH, headers=bearer(fresh["refresh_token"]))
    assert again.status_code == 200


def test_reusing_a_rotated_refresh_token_revokes_the_whole_login(
    app, client, tenant, alice, tokens, caplog
):
    other_login = login(client, tenant, "alice", alice[1])
    fresh = client.post(REFRESH, headers=bearer(tokens["refresh_token"])).get_json()
    assert client.get(WHOAMI, headers=bearer(fresh["access_token"])).status_code == 200
    with caplog.at_level(logging.INFO, logger="ctxcloud.audit"):
        replay = client.post(REFRESH, headers=bearer(tokens["refresh_token"]))
    assert_problem(replay, 401, "unauthorized")
    for token in (tokens["access_token"], fresh["access_token"]):
        assert_problem(client.get(WHOAMI, headers=bearer(token)), 401, "unauthorized")
    dead = client.post(REFRESH, headers=bearer(fresh["refresh_token"]))
    assert_problem(dead, 401, "unauthorized")
    # Another login of the same user is untouched.
    assert client.get(WHOAMI, headers=bearer(other_login["access_token"])).status_code == 200
    events = [r.audit for r in caplog.records if r.name == "ctxcloud.audit"]
    assert events[-1]["type"] == "token_reuse_detected"
    assert events[-1]["family_id"] == claims_of(tokens["refresh_token"])["fid"]


def test_revoke_ends_the_login_at_once(app, client, tenant, alice, tokens, caplog):
    other_login = login(client, tenant, "alice", alice[1])
    access = bearer(tokens["access_token"])
    assert client.get(WHOAMI, headers=access).status_code == 200
    with caplog.at_level(logging.INFO, logger="ctxcloud.audit"):
        assert client.post(REVOKE, headers=access).status_code == 204
    assert_problem(client.get(WHOAMI, headers=access), 401, "unauthorized")
    assert_problem(client.post(REVOKE, headers=access), 401, "unauthorized")
    refreshed = client.post(REFRESH, headers=bearer(tokens["refresh_token"]))
    assert_problem(refreshed, 401, "unauthorized")
    assert client.get(WHOAMI, headers=bearer(other_login["access_token"])).status_code == 200
    events = [r.audit for r in caplog.records if r.name == "ctxcloud.audit"]
    assert events[-1]["type"] == "token_revoked" and events[-1]["actor"] == f"user:{alice[0].id}"


def test_revoke_needs_a_user_token(app, client, tenant, owner_key):
    assert_problem(client.post(REVOKE, headers=bearer(owner_key)), 400, "bad_request")
    assert_problem(client.post(REVOKE), 401, "unauthorized")


def test_token_types_are_not_interchangeable(client, tokens):
    assert_problem(client.get(WHOAMI, headers=bearer(tokens["refresh_token"])), 401, "unauthorized")
    assert_problem(
        client.post(REVOKE, headers=bearer(tokens["refresh_token"])), 401, "unauthorized"
    )
    assert_problem(
        client.post(REFRESH, headers=bearer(tokens["access_token"])), 401, "unauthorized"
    )
    assert_problem(client.post(REFRESH), 401, "unauthorized")


def _b64(data: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def forged_tokens(app, tokens: dict) -> dict[str, str]:
    """Every way a token can be wrong, built from a genuine one."""
    genuine = claims_of(tokens["access_token"])
    now = int(time.time())
    header, payload, signature = tokens["access_token"].split(".")
    tampered_payload = _b64({**genuine, "role": "owner", "sub": "usr_someoneelse0000000"})
    flipped = signature[:-2] + ("AA" if signature[-2:] != "AA" else "BB")
    return {
        "alg none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{payload}.",
        "alg none, signature kept": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{payload}.{signature}",
        "HS256 with our public key": hs256_raw(
            genuine, public_pem(app), {"alg": "HS256", "typ": "JWT", "kid": service_key(app).kid}
        ),
        "HS256 with another secret": sign(app, genuine, key="x" * 64),
        "another key, our kid": jwt.encode(
            genuine, stranger_key(), algorithm="ES256", headers={"kid": service_key(app).kid}
        ),
        "no kid": jwt.encode(genuine, service_key(app).key, algorithm="ES256"),
        "unknown kid": sign(app, genuine, headers={"kid": "nosuch"}),
        "expired": sign(app, {**genuine, "iat": now - 1000, "nbf": now - 1000, "exp": now - 10}),
        "not yet valid": sign(app, {**genuine, "nbf": now + 600, "exp": now + 1200}),
        "wrong issuer": sign(app, {**genuine, "iss": "evil"}),
        "no issuer": sign(app, {k: v for k, v in genuine.items() if k != "iss"}),
        "wrong audience": sign(app, {**genuine, "aud": "another-service"}),
        "no audience": sign(app, {k: v for k, v in genuine.items() if k != "aud"}),
        "refresh type": sign(app, {**genuine, "type": "refresh"}),
        "no family": sign(app, {k: v for k, v in genuine.items() if k != "fid"}),
        "unknown family": sign(app, {**genuine, "fid": "fam_nosuchfamily0000000"}),
        "another tenant": sign(app, {**genuine, "tid": "tnt_nosuchtenant0000000"}),
        "another user": sign(app, {**genuine, "sub": "usr_nosuchuser000000000"}),
        "numeric subject": sign(app, {**genuine, "sub": 42}),
        "no expiry": sign(app, {k: v for k, v in genuine.items() if k != "exp"}),
        "tampered payload": f"{header}.{tampered_payload}.{signature}",
        "tampered signature": f"{header}.{payload}.{flipped}",
        "two segments": f"{header}.{payload}",
        "garbage": "not-a-token",
        "dots": "...",
        "bad base64": "e30.@@@.###",
        "json array payload": f"{header}.{_b64([1, 2])}.{signature}",
        "huge": "a" * 20000,
        "unicode": "\u00e9\u00e9.\u00e9\u00e9.\u00e9\u00e9",
    }


def test_every_forged_or_broken_token_is_401_problem_json(app, client, tokens):
    control = sign(app, claims_of(tokens["access_token"]))
    assert client.get(WHOAMI, headers=bearer(control)).status_code == 200  # crafting works
    for name, token in forged_tokens(app, tokens).items():
        response = client.get(WHOAMI, headers=bearer(token))
        assert response.status_code == 401, name
        # Only a genuine token that is merely too old says so (the client should refresh).
        assert_problem(response, 401, "token_expired" if name == "expired" else "unauthorized")
        assert response.headers["WWW-Authenticate"].startswith("Bearer"), name


def test_an_expired_access_token_says_so_and_a_forged_one_learns_nothing(app, client, tokens):
    genuine = claims_of(tokens["access_token"])
    now = int(time.time())
    old = {**genuine, "iat": now - 1000, "nbf": now - 1000, "exp": now - 10}
    expired = client.get(WHOAMI, headers=bearer(sign(app, old)))
    body = assert_problem(expired, 401, "token_expired")
    assert "refresh" in body["detail"]
    challenge = expired.headers["WWW-Authenticate"]
    assert challenge.startswith("Bearer ") and 'error="invalid_token"' in challenge
    assert "expired" in challenge
    # The same expired claims under another key: no hint that it expired.
    forged = client.get(WHOAMI, headers=bearer(sign(app, old, key="z" * 64)))
    assert_problem(forged, 401, "unauthorized")
    assert "expired" not in forged.headers["WWW-Authenticate"]
    assert "expired" not in forged.get_data(as_text=True)
    # An expired refresh token presented as an access token is no access token at all.
    refresh = {**claims_of(tokens["refresh_token"]), "exp": now - 10}
    assert_problem(client.get(WHOAMI, headers=bearer(sign(app, refresh))), 401, "unauthorized")


@pytest.mark.parametrize(
    "authorization",
    ["Bearer", "Bearer ", "Basic YWxpY2U6c2VjcmV0", "Token abc", "bearer", "Bearer a b"],
)
def test_malformed_authorization_headers_are_401(client, authorization):
    response = client.get(WHOAMI, headers={"Authorization": authorization})
    assert_problem(response, 401, "unauthorized")


def test_forged_refresh_tokens_are_401(app, client, tokens):
    genuine = claims_of(tokens["refresh_token"])
    now = int(time.time())
    expired = client.post(REFRESH, headers=bearer(sign(app, {**genuine, "exp": now - 1})))
    assert "log in again" in assert_problem(expired, 401, "token_expired")["detail"]
    for token in (
        sign(app, {**genuine, "jti": "guessed"}),
        sign(app, genuine, key="y" * 64),
        sign(app, {**genuine, "fid": "fam_nosuchfamily0000000"}),
        sign(app, {**genuine, "sub": "usr_nosuchuser000000000"}),
    ):
        assert_problem(client.post(REFRESH, headers=bearer(token)), 401, "unauthorized")


def test_an_access_token_expires(app, client, tokens, monkeypatch):
    access = bearer(tokens["access_token"])
    assert client.get(WHOAMI, headers=access).status_code == 200  # cached now
    from ctxcloud.plugins.users import verify

    later = time.time() + 901
    monkeypatch.setattr(verify.time, "time", lambda: later)
    assert_problem(client.get(WHOAMI, headers=access), 401, "token_expired")


def test_tokens_of_one_tenant_never_reach_another(app, client, tenant, other_tenant, tokens):
    _, foreign_password = make_user(app, other_tenant, "owner", "alice")
    assert (
        client.get("/api/v1/tenant", headers=bearer(tokens["access_token"])).get_json()["id"]
        == tenant.id
    )
    foreign = login(client, other_tenant, "alice", foreign_password)
    assert (
        client.get("/api/v1/tenant", headers=bearer(foreign["access_token"])).get_json()["id"]
        == other_tenant.id
    )


def test_a_key_in_the_bearer_header_is_not_taken_for_a_token(app, client, tenant):
    _, secret = make_api_key(app, tenant)
    assert client.get(WHOAMI, headers=bearer(secret)).get_json()["type"] == "api_key"


def test_password_hashes_are_upgraded_on_login(app, client, tenant, alice):
    from ctxcloud import stash
    from ctxcloud.plugins.users.models import User
    from ctxcloud.plugins.users.passwords import PASSWORDS

    with app.app_context():
        before = User.get_by_id(alice[0].id).password_hash
    app.config["PASSWORD_HASH_TIME_COST"] = 2
    stash(app).pop(PASSWORDS)  # the hasher is built from the settings on first use
    login(client, tenant, "alice", alice[1])
    with app.app_context():
        after = User.get_by_id(alice[0].id).password_hash
    assert before != after and ",t=2," in after


def test_expired_families_are_pruned_at_login(app, client, tenant, alice, tokens):
    from ctxcloud.plugins.users.models import TokenFamily

    with app.app_context():
        TokenFamily.update(expires_at=datetime.datetime(2000, 1, 1)).where(
            TokenFamily.user_id == alice[0].id
        ).execute()
    login(client, tenant, "alice", alice[1])
    with app.app_context():
        assert TokenFamily.select().where(TokenFamily.user_id == alice[0].id).count() == 1
