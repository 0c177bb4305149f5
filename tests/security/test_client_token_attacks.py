"""Attacks on client-credentials tokens: every one is a 401 problem (never a 5xx), on whoami,
on a permission route and on a write.

A genuine token of a client of tenant ``acme`` is the starting point; each attack alters it
the way a forger would (or presents one that has stopped being good). The token endpoint's
own refusals (another tenant's client secret, a scope wider than the client's) are RFC 6749
errors: tests/api/test_oauth_grant.py.
"""

from __future__ import annotations

import datetime
import secrets
import time
from collections.abc import Callable

import jwt
import pytest

from ctxcloud.signing_keys import SigningKeyState
from tests.api.test_core import assert_problem
from tests.support.factories import bearer, make_api_key, make_tenant
from tests.support.oauth import REVOKE, basic, client_token, make_oauth_client
from tests.support.tokens import hs256_raw, json64, public_pem, service_key, sign, stranger_key

TARGETS = [
    ("GET", "/api/v1/auth/whoami"),
    ("GET", "/api/v1/projects"),
    ("POST", "/api/v1/projects"),
]


def claims_of(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def with_claims(app, token: str, **changes) -> str:
    """The token's claims, changed, signed with the service's own active key."""
    return sign(app, {**claims_of(token), **changes})


def alg_none(app, token: str, ctx) -> str:
    return f"{json64({'alg': 'none', 'typ': 'JWT'})}.{json64(claims_of(token))}."


def hs256_with_public_key(app, token: str, ctx) -> str:
    header = {"alg": "HS256", "typ": "JWT", "kid": jwt.get_unverified_header(token)["kid"]}
    return hs256_raw(claims_of(token), public_pem(app), header)


def stranger_under_our_kid(app, token: str, ctx) -> str:
    kid = jwt.get_unverified_header(token)["kid"]
    widened = {**claims_of(token), "scope": "keys:manage users:manage tenant:admin"}
    return jwt.encode(widened, stranger_key(), "ES256", headers={"kid": kid})


def tampered_scope(app, token: str, ctx) -> str:
    header, _, signature = token.split(".")
    widened = {**claims_of(token), "scope": "keys:manage tenant:admin"}
    return f"{header}.{json64(widened)}.{signature}"


def other_tenant(app, token: str, ctx) -> str:
    """Genuinely signed (as if the key leaked), naming the other tenant: no record there."""
    return with_claims(app, token, tid=ctx["other_tenant"].id)


def never_issued(app, token: str, ctx) -> str:
    """Genuinely signed claims with a jti the service never issued."""
    return with_claims(app, token, jti=secrets.token_hex(16))


def expired(app, token: str, ctx) -> str:
    now = int(time.time())
    return with_claims(app, token, iat=now - 7200, nbf=now - 7200, exp=now - 3600)


def not_yet_valid(app, token: str, ctx) -> str:
    now = int(time.time())
    return with_claims(app, token, nbf=now + 3600, exp=now + 7200)


def wrong_audience(app, token: str, ctx) -> str:
    return with_claims(app, token, aud="someone-else")


def wrong_issuer(app, token: str, ctx) -> str:
    return with_claims(app, token, iss="https://evil.example")


def revoked(app, token: str, ctx) -> str:
    client = app.test_client()
    assert (
        client.post(REVOKE, data={"token": token}, headers=basic(*ctx["pair"])).status_code == 200
    )
    return token


def client_deleted(app, token: str, ctx) -> str:
    client = app.test_client()
    url = f"/api/v1/oauth/clients/{ctx['pair'][0]}"
    assert client.delete(url, headers=ctx["admin"]).status_code == 204
    return token


def secret_rotated_with_revocation(app, token: str, ctx) -> str:
    client = app.test_client()
    url = f"/api/v1/oauth/clients/{ctx['pair'][0]}/secret?revoke_tokens=true"
    assert client.post(url, headers=ctx["admin"]).status_code == 200
    return token


def signing_key_removed(app, token: str, ctx) -> str:
    """A genuine, recorded token no process has seen yet, of a key that rotate-signing then
    retired and, once the retirement window passed, removed."""
    unseen = client_token(app.test_client(), *ctx["pair"])
    old = service_key(app)
    assert jwt.get_unverified_header(unseen)["kid"] == old.kid
    runner = app.test_cli_runner()
    assert runner.invoke(args=["keys", "rotate-signing"]).exit_code == 0
    with app.app_context():
        row = SigningKeyState.get_by_id(old.kid)
        row.retired_at -= datetime.timedelta(
            seconds=app.extensions["ctxcloud"].signing_keys.retire_after
        )
        row.save()
    assert runner.invoke(args=["keys", "rotate-signing"]).exit_code == 0
    return unseen


ATTACKS: list[Callable] = [
    alg_none,
    hs256_with_public_key,
    stranger_under_our_kid,
    tampered_scope,
    other_tenant,
    never_issued,
    expired,
    not_yet_valid,
    wrong_audience,
    wrong_issuer,
    revoked,
    client_deleted,
    secret_rotated_with_revocation,
    signing_key_removed,
]


@pytest.fixture
def ctx(app, client):
    tenant = make_tenant(app, "acme")
    admin = bearer(make_api_key(app, tenant, name="admin")[1])
    pair = make_oauth_client(app, tenant, scopes=["projects:read", "context:read"])
    token = client_token(client, *pair)
    for method, path in TARGETS[:2]:  # the genuine token works (and is cached) first
        assert client.open(path, method=method, headers=bearer(token)).status_code == 200
    return {
        "tenant": tenant,
        "other_tenant": make_tenant(app, "globex"),
        "admin": admin,
        "pair": pair,
        "token": token,
    }


@pytest.mark.parametrize("attack", ATTACKS, ids=lambda a: a.__name__)
def test_every_attack_on_a_client_token_is_401(app, client, ctx, attack):
    forged = attack(app, ctx["token"], ctx)
    for method, path in TARGETS:
        response = client.open(
            path,
            method=method,
            headers=bearer(forged),
            json={"name": "x"} if method == "POST" else None,
        )
        assert_problem(response, 401, "unauthorized")
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
