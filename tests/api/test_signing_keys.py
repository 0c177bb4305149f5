"""Token signing keys: asymmetric, published at /.well-known/jwks.json, rotated by
`ctxcloud keys rotate-signing` through standby → active → retired → removed."""

from __future__ import annotations

import datetime
import json

import jwt
import pytest

from ctxcloud import create_app
from ctxcloud.settings import ConfigError
from ctxcloud.signing_keys import SigningKeyState, new_signing_key, parse_signing_keys
from tests import stack
from tests.api.test_core import assert_problem
from tests.support.factories import bearer, login, make_tenant, make_user
from tests.support.server import cli
from tests.support.tokens import service_key

JWKS, WHOAMI = "/.well-known/jwks.json", "/api/v1/auth/whoami"


@pytest.fixture
def alice(app, tenant):
    return make_user(app, tenant, "admin", "alice")


def keys_cli(app, *args: str):
    return app.test_cli_runner().invoke(args=["keys", *args])


def rotate(app) -> dict:
    result = keys_cli(app, "rotate-signing", "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def published(client) -> dict[str, dict]:
    response = client.get(JWKS)
    assert response.status_code == 200
    return {key["kid"]: key for key in response.get_json()["keys"]}


def verify_downstream(jwks: dict, token: str, app) -> dict:
    """What a downstream service does: PyJWT and the published set, nothing else."""
    key_set = jwt.PyJWKSet.from_dict(jwks)
    kid = jwt.get_unverified_header(token)["kid"]
    key = next(k for k in key_set.keys if k.key_id == kid)
    return jwt.decode(
        token,
        key.key,
        algorithms=[key.algorithm_name],
        audience=app.config["JWT_AUDIENCE"],
        issuer=app.config["JWT_ISSUER"],
    )


def test_a_token_verifies_with_pyjwt_and_the_published_set_alone(app, client, tenant, alice):
    token = login(client, tenant, "alice", alice[1])["access_token"]
    response = client.get(JWKS)
    assert response.headers["Cache-Control"] == "public, max-age=300"
    jwks = response.get_json()
    (key,) = jwks["keys"]
    assert key["kid"] == service_key(app).kid
    assert (key["kty"], key["crv"], key["alg"], key["use"]) == ("EC", "P-256", "ES256", "sig")
    assert "d" not in key  # the public half only
    claims = verify_downstream(jwks, token, app)
    assert claims["sub"] == alice[0].id and claims["tid"] == tenant.id


def test_the_set_is_public_and_needs_no_credential(client):
    assert client.get(JWKS, headers={"Authorization": "Bearer nonsense"}).status_code == 200


def test_rotation_moves_standby_to_active_and_active_to_retired(app, client, tenant, alice):
    old_token = login(client, tenant, "alice", alice[1])["access_token"]
    old_kid = service_key(app).kid
    moved = rotate(app)  # development: the standby key is generated into the data dir
    assert moved["retired"] == [old_kid] and moved["removed"] == []
    new_kid = moved["activated"]
    assert new_kid != old_kid and service_key(app).kid == new_kid
    keys = published(client)
    assert set(keys) == {old_kid, new_kid}  # retired keys stay published
    # Tokens of the retired key still work; new ones carry the new kid.
    assert client.get(WHOAMI, headers=bearer(old_token)).status_code == 200
    new_token = login(client, tenant, "alice", alice[1])["access_token"]
    assert jwt.get_unverified_header(new_token)["kid"] == new_kid
    jwks = {"keys": list(keys.values())}
    assert verify_downstream(jwks, new_token, app)["sub"] == alice[0].id
    assert verify_downstream(jwks, old_token, app)["sub"] == alice[0].id
    states = json.loads(keys_cli(app, "signing-keys", "--json").output)
    assert [(k["kid"], k["state"]) for k in states["keys"]] == [
        (old_kid, "retired"),
        (new_kid, "active"),
    ]


def test_a_retired_key_is_removed_once_its_tokens_have_expired(app, client, tenant, alice):
    old = service_key(app)
    old_token = login(client, tenant, "alice", alice[1])["access_token"]
    rotate(app)
    retire_after = app.extensions["ctxcloud"].signing_keys.retire_after
    # The longest token lifetime (30-day refresh tokens) and a minute of leeway.
    assert retire_after == 30 * 24 * 3600 + 60
    with app.app_context():  # the window passes
        row = SigningKeyState.get_by_id(old.kid)
        row.retired_at -= datetime.timedelta(seconds=retire_after)
        row.save()
    moved = rotate(app)
    assert moved["removed"] == [old.kid]
    assert old.kid not in published(client)
    # A token of the removed key that this process never saw: refused.
    claims = jwt.decode(old_token, options={"verify_signature": False})
    forged = jwt.encode({**claims, "jti": "fresh"}, old.key, "ES256", headers={"kid": old.kid})
    assert_problem(client.get(WHOAMI, headers=bearer(forged)), 401, "unauthorized")


@pytest.fixture
def two_keys(app_config) -> tuple[list, dict]:
    """A deployment given two keys, as production is: the first becomes active, the other
    waits as standby."""
    keys = sorted([new_signing_key(), new_signing_key()])
    return keys, {**app_config, "JWT_SIGNING_KEYS": json.dumps(dict(keys))}


def test_given_keys_start_as_standby_and_one_becomes_active(two_keys):
    (first, _), (second, _) = two_keys[0]
    with stack.migrated_app(two_keys[1]) as application:
        client = application.test_client()
        assert service_key(application).kid == first
        assert set(published(client)) == {first, second}  # the standby key is published
        # ...but signs nothing and verifies nothing yet.
        standby = application.extensions["ctxcloud"].signing_keys.private[second].key
        token = jwt.encode({"sub": "x"}, standby, "ES256", headers={"kid": second})
        assert_problem(client.get(WHOAMI, headers=bearer(token)), 401, "unauthorized")
        assert rotate(application)["activated"] == second
        assert_rotation_refused(application)  # no standby left: production adds one first


def assert_rotation_refused(application) -> None:
    states = keys_cli(application, "signing-keys", "--json").output
    result = keys_cli(application, "rotate-signing")
    assert result.exit_code == 1
    assert "CTXCLOUD_JWT_SIGNING_KEYS" in result.output and "standby" in result.output
    assert keys_cli(application, "signing-keys", "--json").output == states  # nothing moved


def test_a_process_without_the_active_key_answers_503_not_a_bad_token(two_keys):
    keys, config = two_keys
    with stack.migrated_app(config) as application:
        with application.app_context():
            application.extensions["ctxcloud"].signing_keys.signing_key()  # the first is active
    lacking = create_app({**config, "JWT_SIGNING_KEYS": json.dumps(dict(keys[1:]))})
    try:
        tenant = make_tenant(lacking, "rollout")
        _, password = make_user(lacking, tenant, "viewer", "v")
        response = lacking.test_client().post(
            "/api/v1/auth/token", json={"tenant": "rollout", "username": "v", "password": password}
        )
    finally:
        stack.close(lacking)
    body = assert_problem(response, 503, "unavailable")
    assert "CTXCLOUD_JWT_SIGNING_KEYS" in body["detail"] and "BEGIN" not in body["detail"]


def test_new_signing_key_prints_a_value_of_the_variable(app):
    result = keys_cli(app, "new-signing-key", "--algorithm", "EdDSA")
    assert result.exit_code == 0
    ((kid, pem),) = json.loads(result.output).items()
    assert pem.startswith("-----BEGIN PRIVATE KEY-----")
    assert list(parse_signing_keys(result.output, "EdDSA")) == [kid]


def test_eddsa_keys_sign_and_publish_okp(app_config):
    with stack.migrated_app({**app_config, "JWT_ALGORITHM": "EdDSA"}) as application:
        client = application.test_client()
        tenant = make_tenant(application, "okp")
        _, password = make_user(application, tenant, "viewer", "v")
        token = login(client, tenant, "v", password)["access_token"]
        assert jwt.get_unverified_header(token)["alg"] == "EdDSA"
        jwks = client.get(JWKS).get_json()
        assert [(k["kty"], k["crv"], k["alg"]) for k in jwks["keys"]] == [
            ("OKP", "Ed25519", "EdDSA")
        ]
        assert verify_downstream(jwks, token, application)["tid"] == tenant.id
        assert client.get(WHOAMI, headers=bearer(token)).status_code == 200


def test_hs256_is_an_explicit_opt_in_with_nothing_published(app_config):
    config = {**app_config, "JWT_ALGORITHM": "HS256", "JWT_SECRET_KEY": "s" * 64}
    with stack.migrated_app(config) as application:
        client = application.test_client()
        tenant = make_tenant(application, "shared")
        _, password = make_user(application, tenant, "viewer", "v")
        token = login(client, tenant, "v", password)["access_token"]
        assert jwt.get_unverified_header(token) == {"alg": "HS256", "typ": "JWT"}
        assert client.get(JWKS).get_json() == {"keys": []}
        assert client.get(WHOAMI, headers=bearer(token)).status_code == 200
        result = keys_cli(application, "rotate-signing")
        assert result.exit_code == 1 and "HS256" in result.output


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"JWT_ALGORITHM": "RS256"}, "CTXCLOUD_JWT_ALGORITHM must be one of ES256, EdDSA, HS256"),
        ({"JWT_SIGNING_KEYS": "not json"}, "CTXCLOUD_JWT_SIGNING_KEYS must be a JSON object"),
        ({"JWT_SIGNING_KEYS": "{}"}, "CTXCLOUD_JWT_SIGNING_KEYS must be a JSON object"),
        ({"JWT_SIGNING_KEYS": {"k": "-----BEGIN nonsense"}}, "is not a PEM private key"),
        ({"JWT_SIGNING_KEYS": {"bad kid!": "x"}}, "a kid is 1 to 64 letters"),
        ({"JWT_KEY_RETIREMENT": "soon"}, "CTXCLOUD_JWT_KEY_RETIREMENT must be a number"),
    ],
)
def test_bad_signing_settings_stop_the_start(app_config, overrides, message):
    with pytest.raises(ConfigError, match=message) as raised:
        create_app({**app_config, **overrides})
    assert "BEGIN" not in str(raised.value)


def test_a_key_of_another_algorithm_stops_the_start_without_echoing_it(app_config):
    kid, pem = new_signing_key("EdDSA")
    with pytest.raises(ConfigError, match="not an EC P-256 key") as raised:
        create_app({**app_config, "JWT_SIGNING_KEYS": {kid: pem}})
    assert pem.split("-----")[2].strip() not in str(raised.value)


def test_a_kid_reused_for_another_key_is_refused(two_keys):
    keys, config = two_keys
    with stack.migrated_app(config) as application:
        with application.app_context():
            application.extensions["ctxcloud"].signing_keys.signing_key()
    impostor = {keys[0][0]: new_signing_key()[1]}
    other = create_app({**config, "JWT_SIGNING_KEYS": json.dumps(impostor)})
    try:
        with other.app_context(), pytest.raises(ConfigError, match="give every new key a new kid"):
            other.extensions["ctxcloud"].signing_keys.signing_key()
    finally:
        stack.close(other)


def test_a_leaked_key_is_removed_at_once_with_remove_retired(app, client, tenant, alice):
    leaked = service_key(app)
    token = login(client, tenant, "alice", alice[1])["access_token"]
    result = keys_cli(app, "rotate-signing", "--remove-retired", "--json")
    assert result.exit_code == 0, result.output
    moved = json.loads(result.output)
    assert moved["retired"] == [leaked.kid] and moved["removed"] == [leaked.kid]
    assert leaked.kid not in published(client)
    claims = jwt.decode(token, options={"verify_signature": False})
    unseen = jwt.encode(
        {**claims, "jti": "unseen"}, leaked.key, "ES256", headers={"kid": leaked.kid}
    )
    assert_problem(client.get(WHOAMI, headers=bearer(unseen)), 401, "unauthorized")
    fresh = login(client, tenant, "alice", alice[1])["access_token"]
    assert client.get(WHOAMI, headers=bearer(fresh)).status_code == 200


def test_new_signing_key_runs_where_production_has_no_keys_yet(tmp_path):
    """It makes the key production refuses to start without, so it builds no app."""
    env = {"CTXCLOUD_ENV": "production", "CTXCLOUD_DATA_DIR": str(tmp_path)}
    env |= {name: "" for name in ("CTXCLOUD_MASTER_KEYS", "CTXCLOUD_JWT_SIGNING_KEYS")}
    result = cli(env, "keys", "new-signing-key")
    assert result.returncode == 0, result.stderr
    assert len(parse_signing_keys(result.stdout, "ES256")) == 1
    assert list(tmp_path.iterdir()) == []  # no development secrets written
    refused = cli(env, "keys", "rotate-signing")
    assert refused.returncode == 2 and "CTXCLOUD_JWT_SIGNING_KEYS" in refused.stderr
