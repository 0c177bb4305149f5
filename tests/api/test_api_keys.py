"""API keys: shown once, stored as a keyed hash, never more than their creator, dead at once."""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import logging
import re

import pytest

from ctxcloud.plugins.auth_apikey import verify
from tests.api.test_core import assert_problem
from tests.support.factories import bearer, login, make_api_key, make_user

KEYS = "/api/v1/api-keys"
WHOAMI = "/api/v1/auth/whoami"
KEY_FORMAT = re.compile(r"ctx_[a-z0-9]{8}_[A-Za-z0-9_-]{43}")


@pytest.fixture
def owner(owner_key) -> dict:
    return bearer(owner_key)


def test_a_created_key_is_shown_once_and_works(app, client, tenant, owner):
    created = client.post(
        KEYS, json={"name": "ci", "scopes": ["context:read", "projects:read"]}, headers=owner
    )
    assert created.status_code == 201
    assert created.headers["Cache-Control"] == "no-store"
    body = created.get_json()
    secret = body["key"]
    assert KEY_FORMAT.fullmatch(secret) and secret[4:12] == body["prefix"]
    assert body["id"].startswith("key_") and body["scopes"] == ["context:read", "projects:read"]
    assert body["project_ids"] is None and body["created_by"].startswith("api_key:key_")

    for headers in (bearer(secret), {"X-API-Key": secret}):
        me = client.get(WHOAMI, headers=headers).get_json()
        assert me["type"] == "api_key" and me["id"] == body["id"]
        assert me["permissions"] == ["context:read", "projects:read"]

    listed = client.get(KEYS, headers=owner)
    read = client.get(f"{KEYS}/{body['id']}", headers=owner)
    with app.app_context():
        from ctxcloud.plugins.auth_apikey.models import ApiKey

        stored_hash = ApiKey.get_by_id(body["id"]).key_hash
    for response in (listed, read):
        text = response.get_data(as_text=True)
        assert secret not in text and secret[13:] not in text and stored_hash not in text
        assert '"key"' not in text
    assert {k["id"] for k in listed.get_json()} >= {body["id"]}
    assert json.loads(listed.headers["X-Pagination"])["total"] == 2


def test_only_a_keyed_hash_is_stored(app, tenant):
    key, secret = make_api_key(app, tenant)
    pepper = app.config["API_KEY_PEPPER"].encode()
    assert key.key_hash == hmac.new(pepper, secret.encode(), hashlib.sha256).hexdigest()
    with app.app_context():
        from ctxcloud.plugins.auth_apikey.models import ApiKey

        row = ApiKey.select().where(ApiKey.id == key.id).dicts().get()
    assert all(secret[13:] not in str(value) for value in row.values())


def test_another_pepper_verifies_no_key(app, client, tenant, app_config):
    _, secret = make_api_key(app, tenant)
    from ctxcloud import create_app

    other = create_app({**app_config, "API_KEY_PEPPER": "another pepper entirely"})
    assert_problem(other.test_client().get(WHOAMI, headers=bearer(secret)), 401, "unauthorized")


def test_a_revoked_key_is_dead_at_once(client, app, tenant, owner):
    key, secret = make_api_key(app, tenant, scopes=["projects:read"])
    assert client.get(WHOAMI, headers=bearer(secret)).status_code == 200  # cached now
    assert client.delete(f"{KEYS}/{key.id}", headers=owner).status_code == 204
    assert_problem(client.get(WHOAMI, headers=bearer(secret)), 401, "unauthorized")
    assert_problem(client.get(WHOAMI, headers={"X-API-Key": secret}), 401, "unauthorized")
    assert_problem(client.get(f"{KEYS}/{key.id}", headers=owner), 404, "not_found")
    assert_problem(client.delete(f"{KEYS}/{key.id}", headers=owner), 404, "not_found")
    assert key.id not in client.get(KEYS, headers=owner).get_data(as_text=True)


def test_a_verified_key_needs_no_database_until_something_changes(
    client, app, tenant, owner, monkeypatch
):
    key, secret = make_api_key(app, tenant, scopes=["projects:read"])
    assert client.get(WHOAMI, headers=bearer(secret)).status_code == 200
    assert client.get(WHOAMI, headers=owner).status_code == 200
    loads = []
    real_load = verify._load
    monkeypatch.setattr(verify, "_load", lambda *a: loads.append(1) or real_load(*a))
    for _ in range(5):
        assert client.get(WHOAMI, headers=bearer(secret)).status_code == 200
    assert loads == []
    client.delete(f"{KEYS}/{key.id}", headers=owner)  # the tenant's generation moves
    assert client.get(WHOAMI, headers=bearer(secret)).status_code == 401
    assert loads == [1]


def test_expired_keys_are_refused_even_when_cached(client, app, tenant, monkeypatch):
    now = datetime.datetime.now(datetime.UTC)
    _, expired = make_api_key(app, tenant, expires_at=now - datetime.timedelta(seconds=1))
    assert_problem(client.get(WHOAMI, headers=bearer(expired)), 401, "unauthorized")

    _, expiring = make_api_key(app, tenant, expires_at=now + datetime.timedelta(hours=1))
    assert client.get(WHOAMI, headers=bearer(expiring)).status_code == 200
    later = now.timestamp() + 3601
    monkeypatch.setattr(verify.time, "time", lambda: later)
    assert_problem(client.get(WHOAMI, headers=bearer(expiring)), 401, "unauthorized")


def test_every_bad_key_gets_the_same_401(client, app, tenant, owner):
    key, revoked = make_api_key(app, tenant)
    client.delete(f"{KEYS}/{key.id}", headers=owner)
    _, expired = make_api_key(
        app, tenant, expires_at=datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1)
    )
    _, real = make_api_key(app, tenant)
    candidates = [
        revoked,
        expired,
        real[:-1] + ("A" if real[-1] != "A" else "B"),  # right prefix, wrong secret
        "ctx_zzzzzzzz_" + "A" * 43,  # unknown prefix
        "ctx_" + real[4:12],  # truncated
        real + "x",
        real.upper(),
        "ctx_",
        "ctx_\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9_" + "A" * 43,
        "ctx_" + "a" * 5000,
    ]
    bodies = set()
    for candidate in candidates:
        for headers in (bearer(candidate), {"X-API-Key": candidate}):
            response = client.get(WHOAMI, headers=headers)
            body = assert_problem(response, 401, "unauthorized")
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            bodies.add(body["detail"])
    assert len(bodies) == 1


def test_two_credentials_at_once_are_refused(client, app, tenant):
    _, one = make_api_key(app, tenant)
    _, two = make_api_key(app, tenant)
    response = client.get(WHOAMI, headers={**bearer(one), "X-API-Key": two})
    assert_problem(response, 401, "unauthorized")


@pytest.mark.parametrize(
    "payload,field",
    [
        ({"scopes": ["context:read"]}, "name"),
        ({"name": "", "scopes": ["context:read"]}, "name"),
        ({"name": "n" * 101, "scopes": ["context:read"]}, "name"),
        ({"name": "x"}, "scopes"),
        ({"name": "x", "scopes": []}, "scopes"),
        ({"name": "x", "scopes": "context:read"}, "scopes"),
        ({"name": "x", "scopes": ["context:read", 7]}, "scopes"),
        ({"name": "x", "scopes": ["context:delete-everything"]}, "scopes"),
        ({"name": "x", "scopes": ["context:read"], "project_ids": "prj_1"}, "project_ids"),
        ({"name": "x", "scopes": ["context:read"], "project_ids": [""]}, "project_ids"),
        ({"name": "x", "scopes": ["context:read"], "expires_at": "tomorrow"}, "expires_at"),
        (
            {"name": "x", "scopes": ["context:read"], "expires_at": "2030-01-01T00:00:00"},
            "expires_at",
        ),
        (
            {"name": "x", "scopes": ["context:read"], "expires_at": "2001-01-01T00:00:00Z"},
            "expires_at",
        ),
        ({"name": "x", "scopes": ["context:read"], "secret": "mine"}, "secret"),
    ],
)
def test_invalid_key_request_is_422_naming_the_field(client, owner, payload, field):
    body = assert_problem(client.post(KEYS, json=payload, headers=owner), 422, "validation_error")
    assert field in body["errors"]


def test_a_key_never_holds_more_than_its_creator(app, client, tenant):
    _, narrow = make_api_key(app, tenant, scopes=["keys:manage", "context:read"])
    creator = bearer(narrow)
    wider = client.post(KEYS, json={"name": "x", "scopes": ["context:write"]}, headers=creator)
    assert_problem(wider, 403, "forbidden")
    same = client.post(KEYS, json={"name": "x", "scopes": ["context:read"]}, headers=creator)
    assert same.status_code == 201

    _, password = make_user(app, tenant, "admin", "adam")
    admin = bearer(login(client, tenant, "adam", password)["access_token"])
    for scopes in (["tenant:admin"], ["platform:admin"], ["context:read", "tenant:admin"]):
        response = client.post(KEYS, json={"name": "x", "scopes": scopes}, headers=admin)
        assert_problem(response, 403, "forbidden")
    assert (
        client.post(KEYS, json={"name": "x", "scopes": ["users:manage"]}, headers=admin).status_code
        == 201
    )


def test_a_restricted_creator_only_makes_narrower_restricted_keys(app, client, tenant):
    _, restricted = make_api_key(
        app, tenant, scopes=["keys:manage", "context:read"], project_ids=["prj_a", "prj_b"]
    )
    creator = bearer(restricted)
    for project_ids in (None, ["prj_c"], ["prj_a", "prj_c"]):
        payload = {"name": "x", "scopes": ["context:read"], "project_ids": project_ids}
        assert_problem(client.post(KEYS, json=payload, headers=creator), 403, "forbidden")
    payload = {"name": "x", "scopes": ["context:read"], "project_ids": ["prj_b"]}
    created = client.post(KEYS, json=payload, headers=creator)
    assert created.status_code == 201 and created.get_json()["project_ids"] == ["prj_b"]
    me = client.get(WHOAMI, headers=bearer(created.get_json()["key"])).get_json()
    assert me["project_ids"] == ["prj_b"]


def test_an_expiring_key_reports_its_expiry(client, owner):
    payload = {"name": "x", "scopes": ["context:read"], "expires_at": "2099-01-01T01:00:00+01:00"}
    created = client.post(KEYS, json=payload, headers=owner).get_json()
    assert created["expires_at"] == "2099-01-01T00:00:00.000Z"


def test_keys_manage_is_required(app, client, tenant):
    _, reader = make_api_key(app, tenant, scopes=["context:read"])
    headers = bearer(reader)
    assert_problem(client.get(KEYS, headers=headers), 403, "forbidden")
    response = client.post(KEYS, json={"name": "x", "scopes": ["context:read"]}, headers=headers)
    assert_problem(response, 403, "forbidden")
    assert_problem(client.get(KEYS), 401, "unauthorized")


def test_other_tenants_keys_are_404_and_never_listed(app, client, owner, other_tenant):
    foreign, foreign_secret = make_api_key(app, other_tenant, name="foreign")
    assert_problem(client.get(f"{KEYS}/{foreign.id}", headers=owner), 404, "not_found")
    assert_problem(client.delete(f"{KEYS}/{foreign.id}", headers=owner), 404, "not_found")
    assert "foreign" not in client.get(KEYS, headers=owner).get_data(as_text=True)
    assert client.get(WHOAMI, headers=bearer(foreign_secret)).status_code == 200


def test_last_used_is_written_at_most_once_a_minute(client, app, tenant, monkeypatch):
    key, secret = make_api_key(app, tenant)
    from ctxcloud.plugins.auth_apikey.models import ApiKey

    def last_used():
        with app.app_context():
            return ApiKey.get_by_id(key.id).last_used_at

    assert last_used() is None
    client.get(WHOAMI, headers=bearer(secret))
    first = last_used()
    assert first is not None
    writes = []
    real = verify._record_use
    monkeypatch.setattr(verify, "_record_use", lambda *a: writes.append(1) or real(*a))
    for _ in range(5):
        client.get(WHOAMI, headers=bearer(secret))
    assert writes == [] and last_used() == first
    later = verify.time.time() + 61
    monkeypatch.setattr(verify.time, "time", lambda: later)
    monkeypatch.setattr(verify, "utcnow", lambda: first + datetime.timedelta(seconds=61))
    client.get(WHOAMI, headers=bearer(secret))
    assert writes == [1] and last_used() == first + datetime.timedelta(seconds=61)


def test_key_events_are_audited_without_secrets(client, app, tenant, owner, caplog):
    with caplog.at_level(logging.INFO, logger="ctxcloud.audit"):
        created = client.post(KEYS, json={"name": "ci", "scopes": ["context:read"]}, headers=owner)
        body = created.get_json()
        client.delete(f"{KEYS}/{body['id']}", headers=owner)
    events = [r.audit for r in caplog.records if r.name == "ctxcloud.audit"]
    assert [e["type"] for e in events] == ["api_key_created", "api_key_revoked"]
    assert events[0]["key_id"] == body["id"] and events[0]["scopes"] == ["context:read"]
    assert body["key"][13:] not in json.dumps(events)


def test_platform_keys_hold_platform_admin_and_no_tenant(client, platform_key):
    me = client.get(WHOAMI, headers=bearer(platform_key)).get_json()
    assert me == {
        "type": "api_key",
        "id": me["id"],
        "tenant": None,
        "role": None,
        "permissions": ["platform:admin"],
        "project_ids": None,
        "issuer": None,
    }
    assert client.get("/api/v1/-/plugins", headers=bearer(platform_key)).status_code == 200
    # It is nobody's tenant key: tenant routes refuse it.
    assert_problem(client.get(KEYS, headers=bearer(platform_key)), 403, "forbidden")
