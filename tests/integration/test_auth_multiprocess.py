"""Revocation, refresh reuse, signing key rotation and rate limits across processes: 2 gunicorn
servers of 2 workers.

The production shape: PostgreSQL and Redis shared by every process (a fresh database and
this run's Redis db, both emptied afterwards). Then the embedded default: two servers
sharing one data directory (SQLite, memory-mapped credential generations) and no Redis. Data
is made in this process through the services, against the same database and Redis; a
request is sent on a new connection each time, so both workers of a server take turns.

A change to credentials applies on every process at once on the embedded default (the
generations file is exact), and within REVOCATION_MAX_DELAY (0.5 s) with Redis, where each
process mirrors the generations and hears each change through a subscription: there an
answer asked for within that delay may still be the old one, no later one may (`settled`).
"""

from __future__ import annotations

import base64
import datetime
import json
import os
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import jwt
import pytest
import redis
import requests

from ctxcloud import create_app
from ctxcloud.signing_keys import SigningKeyState, new_signing_key, parse_signing_keys
from tests.stack import postgres_database
from tests.support import redisdb
from tests.support.factories import bearer, make_api_key, make_platform_key, make_tenant, make_user
from tests.support.oauth import basic, make_oauth_client
from tests.support.server import Server, cli, gunicorn

pytestmark = [pytest.mark.server, pytest.mark.integration]

REDIS_URL = os.environ.get("CTXCLOUD_TEST_AUTH_REDIS") or redisdb.url()
WHOAMI = "/api/v1/auth/whoami"
# Seconds a change to credentials may take to reach every process with Redis (the default).
REVOCATION_MAX_DELAY = 0.5


@dataclass
class Deployment:
    app: object  # an app of this process on the same database, Redis and data directory
    a: Server
    b: Server
    env: dict[str, str]
    # Whether a change applies on every process at once (else within REVOCATION_MAX_DELAY).
    exact: bool

    def client_address(self) -> str:
        """A fresh client address (one trusted proxy hop), so each test has its own budgets."""
        return f"10.{secrets.randbelow(250)}.{secrets.randbelow(250)}.{secrets.randbelow(250)}"


def secrets_env() -> dict[str, str]:
    master = base64.b64encode(secrets.token_bytes(32)).decode()
    return {
        "CTXCLOUD_ENV": "testing",
        "CTXCLOUD_MASTER_KEYS": json.dumps({"k1": master}),
        # Every process of a deployment holds the same signing keys: one becomes active, the
        # others wait as standby for rotations.
        "CTXCLOUD_JWT_SIGNING_KEYS": json.dumps(dict(new_signing_key() for _ in range(3))),
        "CTXCLOUD_API_KEY_PEPPER": secrets.token_urlsafe(48),
        "CTXCLOUD_TRUSTED_PROXY_HOPS": "1",
        "CTXCLOUD_RATE_LIMIT_DEFAULT": "1000/hour",
        "CTXCLOUD_RATE_LIMIT_LOGIN": "5/hour",
        "CTXCLOUD_REVOCATION_MAX_DELAY": str(REVOCATION_MAX_DELAY),
    }


def app_config(env: dict[str, str]) -> dict:
    """The servers' settings, as create_app takes them."""
    config = {key.removeprefix("CTXCLOUD_"): value for key, value in env.items()}
    config["MASTER_KEYS"] = json.loads(config["MASTER_KEYS"])
    config["TRUSTED_PROXY_HOPS"] = 1
    return config


@contextmanager
def deployment(env: dict[str, str], logs: Path) -> Iterator[Deployment]:
    migrated = cli(env, "db", "upgrade")
    assert migrated.returncode == 0, migrated.stderr
    app = create_app(app_config(env))
    try:
        with gunicorn(env, logs, workers=2) as a, gunicorn(env, logs, workers=2) as b:
            # Without Redis the generations file is exact for every process of the host.
            yield Deployment(app, a, b, env, exact="CTXCLOUD_REDIS_URL" not in env)
    finally:
        ext = app.extensions["ctxcloud"]
        ext.database.close_all()
        if ext.redis is not None:
            ext.redis.close()


@contextmanager
def production_deployment(root: Path) -> Iterator[Deployment]:
    """PostgreSQL + Redis shared by two servers (a fresh database, this run's Redis db)."""
    flusher = redis.Redis.from_url(REDIS_URL)
    redisdb.flush(flusher)
    try:
        with postgres_database() as database_url:
            env = {
                **secrets_env(),
                "CTXCLOUD_DATABASE_URL": database_url,
                "CTXCLOUD_REDIS_URL": REDIS_URL,
                "CTXCLOUD_DATA_DIR": str(root / "data"),
            }
            with deployment(env, root / "logs") as deployed:
                yield deployed
    finally:
        redisdb.flush(flusher)
        flusher.close()


@contextmanager
def embedded_deployment(root: Path) -> Iterator[Deployment]:
    """The embedded default: one data directory (SQLite, generations files), no Redis."""
    env = {**secrets_env(), "CTXCLOUD_DATA_DIR": str(root / "data")}
    with deployment(env, root / "logs") as deployed:
        yield deployed


@pytest.fixture(scope="module")
def production(tmp_path_factory) -> Iterator[Deployment]:
    with production_deployment(tmp_path_factory.mktemp("auth-production")) as deployed:
        yield deployed


@pytest.fixture(scope="module")
def embedded(tmp_path_factory) -> Iterator[Deployment]:
    with embedded_deployment(tmp_path_factory.mktemp("auth-embedded")) as deployed:
        yield deployed


def get(server: Server, path: str, headers: dict, address: str) -> requests.Response:
    """One request on a new connection (so the server's workers take turns)."""
    return requests.get(
        server.url + path, headers={**headers, "X-Forwarded-For": address}, timeout=30
    )


def post(server: Server, path: str, address: str, **kwargs) -> requests.Response:
    headers = {**kwargs.pop("headers", {}), "X-Forwarded-For": address}
    return requests.post(server.url + path, headers=headers, timeout=30, **kwargs)


def statuses(server: Server, headers: dict, address: str, count: int = 8) -> list[int]:
    return [get(server, WHOAMI, headers, address).status_code for _ in range(count)]


def settled(
    deployed: Deployment,
    answer: Callable[[], object],
    expected,
    changed_at: float,
    times: int = 8,
) -> list:
    """`times` answers in a row after a change (made by `changed_at`, ``time.monotonic()``).

    On the embedded deployment the next `times` answers: a change applies at once there. On
    Redis the change reaches every process within REVOCATION_MAX_DELAY: an answer from before
    it may still be the old one, none asked later may; this polls (at most 10 s) for `times`
    answers in a row equal to `expected`, and hands back at once any answer that breaks the
    bound (the caller's assertion shows it)."""
    if deployed.exact:
        return [answer() for _ in range(times)]
    deadline = time.monotonic() + 10
    run: list = []
    while len(run) < times:
        asked_at = time.monotonic()
        got = answer()
        if got != expected:
            if asked_at > changed_at + REVOCATION_MAX_DELAY or time.monotonic() > deadline:
                return [*run, got]
            run = []
            continue
        run.append(got)
    return run


def refused_by(
    deployed: Deployment, server: Server, headers: dict, address: str, status: int, changed_at
):
    """Eight answers of `server` to whoami once a change has reached it (`settled`)."""
    return settled(
        deployed, lambda: get(server, WHOAMI, headers, address).status_code, status, changed_at
    )


def log_in(deployed: Deployment, server: Server, tenant, username: str, password: str, address):
    response = post(
        server,
        "/api/v1/auth/token",
        address,
        json={"tenant": tenant.slug, "username": username, "password": password},
    )
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture(params=["production", "embedded"])
def deployed(request) -> Deployment:
    return request.getfixturevalue(request.param)


def test_a_revoked_login_is_refused_by_every_process(deployed):
    address = deployed.client_address()
    tenant = make_tenant(deployed.app)
    _, password = make_user(deployed.app, tenant, "member", "mia")
    tokens = log_in(deployed, deployed.a, tenant, "mia", password, address)
    access = bearer(tokens["access_token"])
    assert statuses(deployed.b, access, address) == [200] * 8  # cached by B's workers
    assert statuses(deployed.a, access, address, 2) == [200] * 2

    assert post(deployed.a, "/api/v1/auth/revoke", address, headers=access).status_code == 204
    revoked_at = time.monotonic()

    assert refused_by(deployed, deployed.b, access, address, 401, revoked_at) == [401] * 8
    assert refused_by(deployed, deployed.a, access, address, 401, revoked_at) == [401] * 8
    refreshed = post(
        deployed.b, "/api/v1/auth/refresh", address, headers=bearer(tokens["refresh_token"])
    )
    assert refreshed.status_code == 401


def test_a_revoked_api_key_is_refused_by_every_process(deployed):
    address = deployed.client_address()
    tenant = make_tenant(deployed.app)
    _, owner = make_api_key(deployed.app, tenant)
    key, secret = make_api_key(deployed.app, tenant, scopes=["projects:read"])
    for headers in (bearer(secret), {"X-API-Key": secret}):
        assert statuses(deployed.b, headers, address, 4) == [200] * 4
    revoked = requests.delete(
        f"{deployed.a.url}/api/v1/api-keys/{key.id}",
        headers={**bearer(owner), "X-Forwarded-For": address},
        timeout=30,
    )
    assert revoked.status_code == 204
    revoked_at = time.monotonic()
    for headers in (bearer(secret), {"X-API-Key": secret}):
        assert refused_by(deployed, deployed.b, headers, address, 401, revoked_at) == [401] * 8
        assert refused_by(deployed, deployed.a, headers, address, 401, revoked_at) == [401] * 8


def client_token(server: Server, pair: tuple[str, str], address: str) -> str:
    form = {"grant_type": "client_credentials"}
    response = post(server, "/api/v1/oauth/token", address, data=form, headers=basic(*pair))
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def test_a_revoked_client_token_is_refused_by_every_process(deployed):
    address = deployed.client_address()
    tenant = make_tenant(deployed.app)
    pair = make_oauth_client(deployed.app, tenant)
    token = client_token(deployed.a, pair, address)
    kept = client_token(deployed.b, pair, address)
    for server in (deployed.a, deployed.b):
        assert statuses(server, bearer(token), address, 4) == [200] * 4  # cached by workers
    revoked = post(
        deployed.a, "/api/v1/oauth/revoke", address, data={"token": token}, headers=basic(*pair)
    )
    assert revoked.status_code == 200
    revoked_at = time.monotonic()
    for server in (deployed.b, deployed.a):
        assert refused_by(deployed, server, bearer(token), address, 401, revoked_at) == [401] * 8
    assert statuses(deployed.b, bearer(kept), address, 4) == [200] * 4
    introspected = post(
        deployed.b, "/api/v1/oauth/introspect", address, data={"token": token}, headers=basic(*pair)
    )
    assert introspected.json() == {"active": False}


def test_refresh_reuse_on_another_process_revokes_the_whole_login(deployed):
    address = deployed.client_address()
    tenant = make_tenant(deployed.app)
    _, password = make_user(deployed.app, tenant, "viewer", "vic")
    first = log_in(deployed, deployed.a, tenant, "vic", password, address)
    rotated = post(
        deployed.a, "/api/v1/auth/refresh", address, headers=bearer(first["refresh_token"])
    )
    assert rotated.status_code == 200
    second = rotated.json()
    assert statuses(deployed.b, bearer(second["access_token"]), address) == [200] * 8

    replay = post(
        deployed.b, "/api/v1/auth/refresh", address, headers=bearer(first["refresh_token"])
    )
    assert replay.status_code == 401
    assert replay.headers["Content-Type"] == "application/problem+json"
    revoked_at = time.monotonic()

    for server in (deployed.a, deployed.b):
        access = bearer(second["access_token"])
        assert refused_by(deployed, server, access, address, 401, revoked_at) == [401] * 8
    newest = post(
        deployed.a, "/api/v1/auth/refresh", address, headers=bearer(second["refresh_token"])
    )
    assert newest.status_code == 401


def test_suspending_a_tenant_applies_on_every_process(deployed):
    address = deployed.client_address()
    tenant = make_tenant(deployed.app)
    _, secret = make_api_key(deployed.app, tenant, scopes=["projects:read"])
    _, platform = make_platform_key(deployed.app)
    assert statuses(deployed.b, bearer(secret), address, 4) == [200] * 4
    suspended = requests.patch(
        f"{deployed.a.url}/api/v1/tenants/{tenant.id}",
        json={"status": "suspended"},
        headers={**bearer(platform), "X-Forwarded-For": address},
        timeout=30,
    )
    assert suspended.status_code == 200
    suspended_at = time.monotonic()
    assert refused_by(deployed, deployed.b, bearer(secret), address, 403, suspended_at) == [403] * 8


def test_a_tenant_config_change_applies_on_every_process(deployed):
    address = deployed.client_address()
    tenant = make_tenant(deployed.app)
    _, secret = make_api_key(deployed.app, tenant)
    _, platform = make_platform_key(deployed.app)
    headers = {**bearer(secret), "X-Forwarded-For": address}
    for _ in range(4):  # every worker of b has verified (and cached) the key
        response = requests.get(f"{deployed.b.url}{WHOAMI}", headers=headers, timeout=30)
        assert response.headers["RateLimit-Limit"] == "1000"
    changed = requests.patch(
        f"{deployed.a.url}/api/v1/tenants/{tenant.id}/config",
        json={"quotas": {"rate_limit": "500/hour", "max_projects": 0}},
        headers={**bearer(platform), "X-Forwarded-For": address},
        timeout=30,
    )
    assert changed.status_code == 200
    changed_at = time.monotonic()

    def limit_and_creation() -> tuple[str, int, str]:
        response = requests.get(f"{deployed.b.url}{WHOAMI}", headers=headers, timeout=30)
        created = requests.post(
            f"{deployed.b.url}/api/v1/projects", json={"name": "x"}, headers=headers, timeout=30
        )
        return response.headers["RateLimit-Limit"], created.status_code, created.json()["code"]

    expected = ("500", 403, "quota_exceeded")
    assert settled(deployed, limit_and_creation, expected, changed_at, times=4) == [expected] * 4


def test_the_rate_limit_holds_across_servers_and_workers(production):
    deployed = production
    address = deployed.client_address()
    tenant = make_tenant(deployed.app, config={"quotas": {"rate_limit": "10/hour"}})
    _, secret = make_api_key(deployed.app, tenant, scopes=["projects:read"])
    answers = statuses(deployed.a, bearer(secret), address, 6)
    answers += statuses(deployed.b, bearer(secret), address, 6)
    assert answers == [200] * 10 + [429] * 2
    refused = get(deployed.a, WHOAMI, bearer(secret), address)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1
    assert refused.headers["RateLimit-Limit"] == "10"


def test_password_guessing_is_limited_per_username_across_servers(production):
    deployed = production
    tenant = make_tenant(deployed.app)
    _, password = make_user(deployed.app, tenant, "viewer", "target")

    def attempt(server: Server, guess: str) -> int:
        return post(
            server,
            "/api/v1/auth/token",
            deployed.client_address(),  # a new address each time: only the username counts
            json={"tenant": tenant.slug, "username": "target", "password": guess},
        ).status_code

    answers = [attempt(server, "not the password") for server in [deployed.a, deployed.b] * 2]
    answers.append(attempt(deployed.a, "still not it"))
    assert answers == [401] * 5
    assert attempt(deployed.b, password) == 429


def test_a_signing_key_rotation_applies_on_every_process(deployed):
    """rotate-signing: new tokens carry the new kid on every process, tokens of the retired
    key still work, and once the window has passed its tokens are refused everywhere."""
    address = deployed.client_address()
    tenant = make_tenant(deployed.app)
    serial = iter(range(100))

    def token_from(server: Server) -> str:
        """A login of a user of its own, from an address of its own (logins are limited)."""
        username = f"rita{next(serial)}"
        _, password = make_user(deployed.app, tenant, "viewer", username)
        source = deployed.client_address()
        return log_in(deployed, server, tenant, username, password, source)["access_token"]

    before = token_from(deployed.a)
    old_kid = jwt.get_unverified_header(before)["kid"]
    oauth_client = make_oauth_client(deployed.app, tenant)
    client_before = client_token(deployed.b, oauth_client, address)
    client_unseen = client_token(deployed.a, oauth_client, address)  # presented only at the end
    assert jwt.get_unverified_header(client_before)["kid"] == old_kid

    def rotate() -> dict:
        result = cli(deployed.env, "keys", "rotate-signing", "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)

    moved = rotate()
    rotated_at = time.monotonic()
    assert moved["retired"] == [old_kid]

    def new_kid_on(server: Server):
        return lambda: jwt.get_unverified_header(token_from(server))["kid"]

    for server in (deployed.a, deployed.b):
        kids = settled(deployed, new_kid_on(server), moved["activated"], rotated_at, times=4)
        assert kids == [moved["activated"]] * 4
        # A token of the retired key, never seen by this server before: still good.
        assert get(server, WHOAMI, bearer(before), address).status_code == 200
        assert get(server, WHOAMI, bearer(client_before), address).status_code == 200
        # A client-credentials token carries the new kid too, and verifies downstream with
        # this server's published set alone (PyJWT).
        fresh = client_token(server, oauth_client, address)
        assert jwt.get_unverified_header(fresh)["kid"] == moved["activated"]
        jwks = jwt.PyJWKClient(f"{server.url}/.well-known/jwks.json")
        claims = jwt.decode(
            fresh,
            jwks.get_signing_key_from_jwt(fresh).key,
            algorithms=["ES256"],
            audience="ctxcloud-api",
            issuer="ctxcloud",
        )
        assert claims["sub"] == oauth_client[0] and claims["tid"] == tenant.id

    with deployed.app.app_context():  # the retirement window passes
        row = SigningKeyState.get_by_id(old_kid)
        row.retired_at -= datetime.timedelta(
            seconds=deployed.app.extensions["ctxcloud"].signing_keys.retire_after
        )
        row.save()
    assert old_kid in rotate()["removed"]
    removed_at = time.monotonic()
    old_key = parse_signing_keys(deployed.env["CTXCLOUD_JWT_SIGNING_KEYS"], "ES256")[old_kid]
    claims = jwt.decode(before, options={"verify_signature": False})
    for server in (deployed.a, deployed.b):
        unseen = jwt.encode(
            {**claims, "jti": secrets.token_hex(8)}, old_key.key, "ES256", headers={"kid": old_kid}
        )
        assert refused_by(deployed, server, bearer(unseen), address, 401, removed_at) == [401] * 8
        # A genuine client-credentials token of the removed key, still recorded and unexpired.
        gone = bearer(client_unseen)
        assert refused_by(deployed, server, gone, address, 401, removed_at) == [401] * 8
        assert get(server, WHOAMI, bearer(token_from(server)), address).status_code == 200
