"""JWT attacks that tests/api/test_auth_jwt.py does not cover yet: every one is a 401, never 5xx.

Already covered there (and not repeated here), all presented to GET /auth/whoami:
``test_every_forged_or_broken_token_is_401_problem_json`` (``alg: none`` with and without a
signature, HS256 keyed with the service's public key, another HS256 secret, another key or
no key under the service's kid, expired, not yet valid, wrong or missing issuer and
audience, a refresh-typed access token, unknown family/tenant/user, tampered payload or
signature, malformed tokens); ``test_forged_refresh_tokens_are_401`` (expired, guessed jti,
wrong key, unknown family or user on /auth/refresh); ``test_token_types_are_not_interchangeable``
(refresh token on whoami and revoke, access token on refresh);
``test_revoke_ends_the_login_at_once`` and
``test_reusing_a_rotated_refresh_token_revokes_the_whole_login`` (revoked and replayed
logins on whoami and refresh).

Added here:
- algorithm confusion: RS256/ES256 with an attacker's key (also with that key embedded as a
  ``jwk`` header, or pointed to by ``jku``/``kid``), HS256 keyed with a public-key-like PEM
  string, with the empty string, ``alg`` spelt ``None``/``NONE``;
- another tenant's real ``tid`` (with its real user and login) signed with a wrong key, and
  with the genuine key but mixed with the first tenant's user (claims that do not belong
  together): no way into either tenant;
- the access-token cases of test_auth_jwt.py (``alg: none``, expired, not yet valid, wrong
  issuer/audience) on routes other than whoami: a permission route and /auth/revoke;
- the same attacks on refresh tokens at /auth/refresh (not yet valid, wrong issuer/audience,
  ``alg: none``, algorithm confusion, another tenant's tid), and a refresh token used as an
  access token on a permission route or in ``X-API-Key``;
- a revoked login and a replayed refresh token, on a permission route, a write and refresh.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from tests.api.test_core import assert_problem
from tests.support.factories import bearer, login, make_user
from tests.support.tokens import hs256_raw, json64, public_pem, service_key, sign

TOKEN, REFRESH, REVOKE = "/api/v1/auth/token", "/api/v1/auth/refresh", "/api/v1/auth/revoke"
WHOAMI, PROJECTS = "/api/v1/auth/whoami", "/api/v1/projects"

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
RSA_PUBLIC_PEM = RSA_KEY.public_key().public_bytes(
    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
)
WRONG_SECRET = "an attacker's guess at the signing secret, 64 bytes long ......."


def unsigned(claims: dict, alg: str = "none") -> str:
    return f"{json64({'alg': alg, 'typ': 'JWT'})}.{json64(claims)}."


def claims_of(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


class Ctx:
    """Genuine tokens of tenant A's user and of tenant B's user, and the app's signing key."""

    def __init__(self, app, a_tokens: dict, b_tokens: dict) -> None:
        self.app = app
        self.a_access = claims_of(a_tokens["access_token"])
        self.a_refresh = claims_of(a_tokens["refresh_token"])
        self.b_access = claims_of(b_tokens["access_token"])
        self.b_refresh = claims_of(b_tokens["refresh_token"])
        self.a_tokens, self.b_tokens = a_tokens, b_tokens

    def genuine(self, claims: dict) -> str:
        return sign(self.app, claims)


def _now() -> int:
    return int(time.time())


# Each attack builds a token from the genuine claims of the right type ("access"/"refresh").
Attack = Callable[[Ctx, dict, dict], str]  # (ctx, own claims, the other tenant's claims)

ATTACKS: dict[str, Attack] = {
    "alg none": lambda c, own, other: unsigned(own),
    "alg None (capitalised)": lambda c, own, other: unsigned(own, "None"),
    "alg NONE": lambda c, own, other: unsigned(own, "NONE"),
    "RS256 with an attacker's RSA key": lambda c, own, other: jwt.encode(
        own, RSA_KEY, algorithm="RS256"
    ),
    "RS256 with the attacker's key embedded as jwk": lambda c, own, other: jwt.encode(
        own,
        RSA_KEY,
        algorithm="RS256",
        headers={"jwk": json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(RSA_KEY.public_key()))},
    ),
    "RS256 with jku and kid pointing at the attacker": lambda c, own, other: jwt.encode(
        own,
        RSA_KEY,
        algorithm="RS256",
        headers={"jku": "https://attacker.invalid/jwks.json", "kid": "attacker"},
    ),
    "ES256 with an attacker's EC key": lambda c, own, other: jwt.encode(
        own, EC_KEY, algorithm="ES256"
    ),
    "HS256 keyed with a public key PEM": lambda c, own, other: hs256_raw(own, RSA_PUBLIC_PEM),
    "HS256 keyed with the service's own public key, its kid": lambda c, own, other: hs256_raw(
        own, public_pem(c.app), {"alg": "HS256", "typ": "JWT", "kid": service_key(c.app).kid}
    ),
    "EdDSA with an attacker's key under the service's kid": lambda c, own, other: jwt.encode(
        own,
        ed25519.Ed25519PrivateKey.generate(),
        algorithm="EdDSA",
        headers={"kid": service_key(c.app).kid},
    ),
    "HS256 keyed with the empty string": lambda c, own, other: hs256_raw(own, b""),
    "HS256, kid path traversal, empty key": lambda c, own, other: hs256_raw(
        own, b"", {"alg": "HS256", "typ": "JWT", "kid": "../../../../../../dev/null"}
    ),
    "another tenant's real tid, wrong key": lambda c, own, other: jwt.encode(
        {**own, "tid": other["tid"]}, WRONG_SECRET, algorithm="HS256"
    ),
    "another tenant's real claims, wrong key": lambda c, own, other: jwt.encode(
        {**other, "iat": _now(), "exp": _now() + 600}, WRONG_SECRET, algorithm="HS256"
    ),
    "another tenant's real tid, genuine key, own user": lambda c, own, other: c.genuine(
        {**own, "tid": other["tid"]}
    ),
    "another tenant's real login, genuine key, own user": lambda c, own, other: c.genuine(
        {**own, "tid": other["tid"], "fid": other["fid"]}
    ),
    "expired": lambda c, own, other: c.genuine(
        {**own, "iat": _now() - 1000, "nbf": _now() - 1000, "exp": _now() - 10}
    ),
    "not yet valid": lambda c, own, other: c.genuine(
        {**own, "nbf": _now() + 600, "exp": _now() + 1200}
    ),
    "wrong issuer": lambda c, own, other: c.genuine({**own, "iss": "evil"}),
    "wrong audience": lambda c, own, other: c.genuine({**own, "aud": "another-service"}),
}
# Cases test_auth_jwt.py already presents as access tokens to whoami.
COVERED_ON_WHOAMI = {"alg none", "expired", "not yet valid", "wrong issuer", "wrong audience"}
# Cases test_forged_refresh_tokens_are_401 already presents to /auth/refresh.
COVERED_ON_REFRESH = {"expired"}

ACCESS_TARGETS = {
    "whoami": ("GET", WHOAMI),
    "a permission route": ("GET", PROJECTS),
    "a write": ("POST", PROJECTS),
    "revoke": ("POST", REVOKE),
}


@pytest.fixture
def ctx(app, client, tenant, other_tenant) -> Ctx:
    _, a_password = make_user(app, tenant, "owner", "alice")
    _, b_password = make_user(app, other_tenant, "owner", "bob")
    return Ctx(
        app,
        login(client, tenant, "alice", a_password),
        login(client, other_tenant, "bob", b_password),
    )


def assert_refused(response, where: str = "", code: str = "unauthorized") -> None:
    assert response.status_code == 401, (where, response.get_data(as_text=True))  # never 5xx
    assert_problem(response, 401, code)
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def call(client, target: tuple[str, str], headers: dict):
    method, url = target
    kwargs = {"json": {"name": "Should not exist"}} if (method, url) == ("POST", PROJECTS) else {}
    return client.open(url, method=method, headers=headers, **kwargs)


def test_the_crafting_works(client, ctx):
    """Control: the genuine claims re-signed with the app's key are accepted everywhere."""
    for claims in (ctx.a_access, ctx.b_access):
        token = bearer(ctx.genuine(claims))
        assert client.get(WHOAMI, headers=token).status_code == 200
        assert client.get(PROJECTS, headers=token).status_code == 200
    assert client.post(REFRESH, headers=bearer(ctx.genuine(ctx.a_refresh))).status_code == 200


@pytest.mark.parametrize("attack", ATTACKS)
def test_forged_access_tokens_are_401(client, ctx, attack):
    token = ATTACKS[attack](ctx, ctx.a_access, ctx.b_access)
    for name, target in ACCESS_TARGETS.items():
        if name == "whoami" and attack in COVERED_ON_WHOAMI:
            continue
        # A genuine token that is only too old may say so; nothing else is told anything.
        code = "token_expired" if attack == "expired" else "unauthorized"
        assert_refused(call(client, target, bearer(token)), name, code)
    # Nothing was written by a refused write, and the genuine login is untouched.
    projects = client.get(PROJECTS, headers=bearer(ctx.a_tokens["access_token"]))
    assert projects.status_code == 200 and projects.get_json() == []


@pytest.mark.parametrize("attack", [a for a in ATTACKS if a not in COVERED_ON_REFRESH])
def test_forged_refresh_tokens_are_401(client, ctx, attack):
    token = ATTACKS[attack](ctx, ctx.a_refresh, ctx.b_refresh)
    assert_refused(client.post(REFRESH, headers=bearer(token)))
    # A forged refresh is not a replay of the genuine one: that login still refreshes.
    assert client.post(REFRESH, headers=bearer(ctx.a_tokens["refresh_token"])).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param(lambda t: bearer(t), id="bearer on a permission route"),
        pytest.param(lambda t: {"X-API-Key": t}, id="x-api-key"),
    ],
)
def test_a_refresh_token_is_no_access_token(client, ctx, headers):
    response = client.get(PROJECTS, headers=headers(ctx.a_tokens["refresh_token"]))
    assert_refused(response)


def _revoked(client, ctx) -> dict:
    assert client.post(REVOKE, headers=bearer(ctx.a_tokens["access_token"])).status_code == 204
    return ctx.a_tokens


def _replayed(client, ctx) -> dict:
    first = client.post(REFRESH, headers=bearer(ctx.a_tokens["refresh_token"]))
    assert first.status_code == 200
    replay = client.post(REFRESH, headers=bearer(ctx.a_tokens["refresh_token"]))
    assert_refused(replay)
    return first.get_json()  # the rotated tokens, dead with the whole login now


@pytest.mark.parametrize("ending", [_revoked, _replayed], ids=["revoked", "reused refresh"])
@pytest.mark.parametrize(
    "target",
    [("GET", PROJECTS), ("POST", PROJECTS), ("GET", "/api/v1/tenant"), ("POST", REFRESH)],
    ids=["read", "write", "tenant", "refresh"],
)
def test_an_ended_login_is_refused_everywhere(client, ctx, ending, target):
    dead = ending(client, ctx)
    token = dead["refresh_token"] if target[1] == REFRESH else dead["access_token"]
    assert_refused(call(client, target, bearer(token)))
    # The other tenant's login is untouched.
    assert client.get(WHOAMI, headers=bearer(ctx.b_tokens["access_token"])).status_code == 200
