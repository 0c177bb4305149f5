"""Rate limits: per credential or client address, the tenant's limit, logins, headers, 429,
and limits a route declares with the toolkit (flask-limiter's decorator on the app's Limiter)."""

from __future__ import annotations

import time

import pytest
import redis

from ctxcloud import count_attempt, create_app, limit, public
from ctxcloud.ratelimit import rate_limiting
from ctxcloud.settings import ConfigError
from tests import stack
from tests.api.test_core import assert_problem
from tests.support import redisdb
from tests.support.factories import bearer, login, make_api_key, make_tenant, make_user
from tests.unit.test_ratelimit_counters import RoundTrips

WHOAMI, TOKEN = "/api/v1/auth/whoami", "/api/v1/auth/token"


@pytest.fixture
def app_config(app_config):
    return {**app_config, "RATE_LIMIT_DEFAULT": "3/minute", "RATE_LIMIT_LOGIN": "3/minute"}


def test_responses_carry_the_budget(client, owner_key):
    remaining = []
    for _ in range(3):
        response = client.get(WHOAMI, headers=bearer(owner_key))
        assert response.status_code == 200
        assert response.headers["RateLimit-Limit"] == "3"
        assert 1 <= int(response.headers["RateLimit-Reset"]) <= 60
        remaining.append(int(response.headers["RateLimit-Remaining"]))
    assert remaining == [2, 1, 0]


def test_over_the_limit_is_429_problem_with_retry_after(client, owner_key):
    for _ in range(3):
        assert client.get(WHOAMI, headers=bearer(owner_key)).status_code == 200
    response = client.get(WHOAMI, headers=bearer(owner_key))
    body = assert_problem(response, 429, "rate_limited")
    assert "3 per 1 minute" in body["detail"]
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    assert response.headers["RateLimit-Remaining"] == "0"


def test_each_credential_has_its_own_budget(app, client, tenant, owner_key):
    _, other_key = make_api_key(app, tenant)
    for _ in range(3):
        client.get(WHOAMI, headers=bearer(owner_key))
    assert client.get(WHOAMI, headers=bearer(owner_key)).status_code == 429
    assert client.get(WHOAMI, headers=bearer(other_key)).status_code == 200
    # Both headers spend the same key's budget.
    assert client.get(WHOAMI, headers={"X-API-Key": owner_key}).status_code == 429


def test_a_user_spends_one_budget_across_logins(app, client, tenant):
    app.config["RATE_LIMIT_LOGIN"] = "100/minute"
    _, password = make_user(app, tenant, "viewer", "vic")
    body = {"tenant": tenant.slug, "username": "vic", "password": password}
    first = client.post(TOKEN, json=body, environ_base={"REMOTE_ADDR": "10.0.0.1"}).get_json()
    second = client.post(TOKEN, json=body, environ_base={"REMOTE_ADDR": "10.0.0.2"}).get_json()
    for _ in range(2):
        assert client.get(WHOAMI, headers=bearer(first["access_token"])).status_code == 200
    assert client.get(WHOAMI, headers=bearer(second["access_token"])).status_code == 200
    assert client.get(WHOAMI, headers=bearer(second["access_token"])).status_code == 429


def test_the_tenants_own_limit_wins(app, client):
    generous = make_tenant(app, "generous", config={"quotas": {"rate_limit": "5/minute"}})
    broken = make_tenant(app, "broken", config={"quotas": {"rate_limit": "lots"}})
    _, generous_key = make_api_key(app, generous)
    _, broken_key = make_api_key(app, broken)
    statuses = [client.get(WHOAMI, headers=bearer(generous_key)).status_code for _ in range(6)]
    assert statuses == [200] * 5 + [429]
    response = client.get(WHOAMI, headers=bearer(broken_key))
    assert response.headers["RateLimit-Limit"] == "3"  # a malformed setting falls back


def test_unauthenticated_requests_are_limited_per_client_address(client):
    here = {"REMOTE_ADDR": "192.0.2.1"}
    there = {"REMOTE_ADDR": "192.0.2.2"}
    for _ in range(3):
        assert_problem(client.get(WHOAMI, environ_base=here), 401, "unauthorized")
    assert_problem(client.get(WHOAMI, environ_base=here), 429, "rate_limited")
    assert_problem(client.get(WHOAMI, environ_base=there), 401, "unauthorized")


def test_bad_credentials_spend_the_addresss_budget(client):
    for _ in range(3):
        client.get(WHOAMI, headers=bearer("ctx_bad"))
    assert client.get(WHOAMI, headers=bearer("ctx_other")).status_code == 429


@pytest.mark.parametrize(
    "path", ["/api/v1/health", "/api/v1/health/live", "/api/v1/openapi.json", "/api/v1/docs"]
)
def test_health_and_docs_are_never_limited(client, path):
    for _ in range(6):
        response = client.get(path)
        assert response.status_code == 200
        assert "RateLimit-Limit" not in response.headers


def _attempt(client, tenant, username, password, address):
    return client.post(
        TOKEN,
        json={"tenant": tenant.slug, "username": username, "password": password},
        environ_base={"REMOTE_ADDR": address},
    )


def test_logins_are_limited_per_client_address(app, client, tenant):
    app.config["RATE_LIMIT_DEFAULT"] = "100/minute"
    _, password = make_user(app, tenant, "viewer", "vic")
    for name in ("a", "b", "c"):
        assert _attempt(client, tenant, name, "wrong password!", "198.51.100.7").status_code == 401
    refused = _attempt(client, tenant, "vic", password, "198.51.100.7")
    assert_problem(refused, 429, "rate_limited")
    assert int(refused.headers["Retry-After"]) >= 1
    assert _attempt(client, tenant, "vic", password, "198.51.100.8").status_code == 200


def test_logins_are_limited_per_username(app, client, tenant):
    app.config["RATE_LIMIT_DEFAULT"] = "100/minute"
    _, password = make_user(app, tenant, "viewer", "vic")
    for address in ("203.0.113.1", "203.0.113.2", "203.0.113.3"):
        assert _attempt(client, tenant, "vic", "wrong password!", address).status_code == 401
    assert_problem(_attempt(client, tenant, "VIC", password, "203.0.113.4"), 429, "rate_limited")
    assert _attempt(client, tenant, "other", "wrong password!", "203.0.113.5").status_code == 401


def test_forwarded_for_counts_only_behind_trusted_proxies(app_config):
    def addresses_limited(hops: int) -> int:
        # A migrated app starts from an empty rate-limit store: on the production tier, counters
        # an earlier test left in Redis for 127.0.0.1 would otherwise spend this budget.
        with stack.migrated_app({**app_config, "TRUSTED_PROXY_HOPS": hops}) as application:
            client = application.test_client()
            statuses = [
                client.get(WHOAMI, headers={"X-Forwarded-For": f"10.1.0.{i}"}).status_code
                for i in range(5)
            ]
        return statuses.count(429)

    assert addresses_limited(0) == 2  # the header is ignored: one address, three requests
    assert addresses_limited(1) == 0  # one trusted proxy: each forwarded address counts


def test_malformed_limits_refuse_to_start(app_config):
    for name in ("RATE_LIMIT_DEFAULT", "RATE_LIMIT_LOGIN"):
        with pytest.raises(ConfigError, match=f"CTXCLOUD_{name}"):
            create_app({**app_config, name: "lots"})


def test_rate_limiting_can_be_switched_off(app_config, app, tenant):
    _, key = make_api_key(app, tenant)
    application = create_app({**app_config, "RATE_LIMIT_ENABLED": False})
    client = application.test_client()
    for _ in range(5):
        response = client.get(WHOAMI, headers=bearer(key))
        assert response.status_code == 200 and "RateLimit-Limit" not in response.headers


def add_route(app, name: str, view) -> str:
    """A route of `app` beside the built-in ones, as a plugin's would be; its path."""
    path = f"/api/v1/test-{name}"
    app.add_url_rule(path, f"test_{name}", view)
    return path


@public
@limit("2/minute", key_func=lambda: "everyone")
def limited_view():
    return {"ok": True}


def test_a_route_declares_its_own_limit_with_the_toolkit(app, client):
    path = add_route(app, "limited", limited_view)
    here, there = {"REMOTE_ADDR": "192.0.2.10"}, {"REMOTE_ADDR": "192.0.2.11"}
    assert client.get(path, environ_base=here).status_code == 200
    assert client.get(path, environ_base=there).status_code == 200  # one key for everyone
    refused = client.get(path, environ_base=here)
    body = assert_problem(refused, 429, "rate_limited")
    assert "2 per 1 minute" in body["detail"]
    assert refused.headers["RateLimit-Limit"] == "2"
    assert refused.headers["RateLimit-Remaining"] == "0"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60


def test_two_apps_keep_their_own_limiter(app_config):
    config = {**app_config, "RATELIMIT_STORAGE_URI": "ctxcloud-memory://"}
    first, second = create_app(config), create_app(config)
    assert rate_limiting(first).limiter is not rate_limiting(second).limiter
    paths = [add_route(application, "limited", limited_view) for application in (first, second)]
    statuses = [first.test_client().get(paths[0]).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    assert second.test_client().get(paths[1]).status_code == 200  # counted apart


def test_flask_limiter_runs_no_request_hook_of_its_own(app):
    """Its middleware would walk its registry on every request for limits ctxcloud never
    gives it (the budgets are spent by the pipeline, route limits by their decorator): the
    per-request cost bench/ratelimit_cost.py holds to its budget depends on it staying out."""
    limiter = rate_limiting(app).limiter
    hooks = [*app.before_request_funcs.get(None, []), *app.after_request_funcs.get(None, [])]
    assert limiter.initialized and app.extensions["limiter"] == {limiter}
    assert not [hook for hook in hooks if "flask_limiter" in getattr(hook, "__module__", "")]
    assert not [hook for hook in hooks if getattr(hook, "__self__", None) is limiter]


def test_head_is_authorised_as_get(client, app, tenant):
    assert client.head("/api/v1/projects").status_code == 401
    _, no_read = make_api_key(app, tenant, scopes=["context:read"])
    assert client.head("/api/v1/projects", headers=bearer(no_read)).status_code == 403
    _, reader = make_api_key(app, tenant, scopes=["projects:read"])
    assert client.head("/api/v1/projects", headers=bearer(reader)).status_code == 200


def test_flask_limiter_settings(app_config, app, tenant):
    _, key = make_api_key(app, tenant)
    # flask-limiter's own name for the switch works as well as ctxcloud's.
    off = create_app({**app_config, "RATELIMIT_ENABLED": False}).test_client()
    assert "RateLimit-Limit" not in off.get(WHOAMI, headers=bearer(key)).headers
    # Limits of flask-limiter's own that would come beside ctxcloud's budgets stop the start.
    for name in ("RATELIMIT_DEFAULT", "RATELIMIT_APPLICATION"):
        with pytest.raises(ConfigError, match=f"CTXCLOUD_{name} is not used"):
            create_app({**app_config, name: "5/minute"})
    with pytest.raises(ConfigError, match="fixed windows"):
        create_app({**app_config, "RATELIMIT_STRATEGY": "moving-window"})


def test_count_attempt_still_limits_but_is_deprecated(app, client):
    def attempt():
        count_attempt("1/minute", "attempts")
        return {"ok": True}

    path = add_route(app, "attempt", public(attempt))
    with pytest.warns(DeprecationWarning, match="ctxcloud.limit"):
        assert client.get(path).status_code == 200
    with pytest.warns(DeprecationWarning):
        assert_problem(client.get(path), 429, "rate_limited")


@pytest.mark.integration
def test_an_authenticated_request_costs_one_redis_round_trip(app_config, monkeypatch):
    """The credential's and the tenant's windows in one transaction; the revocation
    generation from this process's mirror of Redis (ctxcloud.tenancy.credentials)."""
    flusher = redis.Redis.from_url(redisdb.url())
    redisdb.flush(flusher)
    config = {
        **app_config,
        "REDIS_URL": redisdb.url(),
        "RATE_LIMIT_DEFAULT": "1000/minute",
        # Not what this test is about: a subscriber slowed down by a busy machine only
        # sends reads to Redis for a while (tests/unit/test_generation_mirror.py).
        "REVOCATION_MAX_DELAY": 30,
    }
    try:
        with stack.migrated_app(config) as application:
            tenant = make_tenant(application)
            _, key = make_api_key(application, tenant, scopes=["projects:read"])
            _, password = make_user(application, tenant, "viewer", "reader")
            client = application.test_client()
            token = login(client, tenant, "reader", password)["access_token"]
            mirror = application.extensions["ctxcloud.credentials"].generations.mirror
            client.get("/api/v1/projects", headers=bearer(key))  # starts the subscriber
            poll_until(lambda: mirror.synced)
            trips = RoundTrips(monkeypatch)
            for headers in (bearer(key), bearer(token), {}):
                # Verified and cached, its generation learned, after a request or two.
                poll_until(lambda h=headers: one_round_trip(client, h, trips))
                for _ in range(5):
                    trips.count = 0
                    response = client.get("/api/v1/projects", headers=headers)
                    assert response.status_code == (200 if headers else 401)
                    assert "RateLimit-Limit" in response.headers
                    assert trips.count == 1
    finally:
        redisdb.flush(flusher)
        flusher.close()


def one_round_trip(client, headers, trips) -> bool:
    trips.count = 0
    client.get("/api/v1/projects", headers=headers)
    return trips.count == 1


def poll_until(condition, seconds: float = 10.0) -> None:
    """Wait for `condition` (a subscription to be confirmed...), at most `seconds`."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.01)
