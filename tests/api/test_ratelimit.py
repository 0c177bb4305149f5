"""Rate limits: per credential or client address, the tenant's limit, logins, headers, 429."""

from __future__ import annotations

import pytest

from ctxcloud import create_app
from ctxcloud.settings import ConfigError
from tests.api.test_core import assert_problem
from tests.support.factories import bearer, make_api_key, make_tenant, make_user

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
        application = create_app({**app_config, "TRUSTED_PROXY_HOPS": hops})
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
