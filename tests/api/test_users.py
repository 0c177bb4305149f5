"""Users: CRUD within the tenant, roles never above the manager's, the last owner, passwords."""

from __future__ import annotations

import json
import logging

import pytest

from tests.api.test_core import assert_problem
from tests.support.factories import bearer, login, make_api_key, make_user

USERS = "/api/v1/users"
PASSWORD = "a sound passphrase 42"


def token_of(app, client, tenant, role: str, username: str | None = None) -> dict:
    user, password = make_user(app, tenant, role, username)
    return bearer(login(client, tenant, user.username, password)["access_token"])


@pytest.fixture
def owner(app, client, tenant) -> dict:
    return token_of(app, client, tenant, "owner", "olivia")


@pytest.fixture
def admin(app, client, tenant, owner) -> dict:
    return token_of(app, client, tenant, "admin", "adam")


def create(client, headers, username="bob", role="member", password=PASSWORD):
    return client.post(
        USERS, json={"username": username, "password": password, "role": role}, headers=headers
    )


def test_owner_manages_users(client, owner):
    created = create(client, owner, username="Bob")
    assert created.status_code == 201
    body = created.get_json()
    assert body["username"] == "bob" and body["role"] == "member" and body["disabled"] is False
    assert body["id"].startswith("usr_") and "password" not in body
    assert PASSWORD not in created.get_data(as_text=True)

    assert client.get(f"{USERS}/{body['id']}", headers=owner).get_json() == body
    changed = client.patch(f"{USERS}/{body['id']}", json={"role": "admin"}, headers=owner)
    assert changed.status_code == 200 and changed.get_json()["role"] == "admin"

    listing = client.get(f"{USERS}?page_size=1&page=2", headers=owner)
    assert [u["username"] for u in listing.get_json()] == ["bob"]
    assert json.loads(listing.headers["X-Pagination"])["total"] == 2
    assert "password" not in listing.get_data(as_text=True)

    assert client.delete(f"{USERS}/{body['id']}", headers=owner).status_code == 204
    assert_problem(client.get(f"{USERS}/{body['id']}", headers=owner), 404, "not_found")


def test_duplicate_username_is_409_case_insensitively(client, owner):
    assert create(client, owner, username="bob").status_code == 201
    assert_problem(create(client, owner, username="BOB"), 409, "conflict")


def test_the_same_username_may_exist_in_two_tenants(app, client, owner, other_tenant):
    other_owner = token_of(app, client, other_tenant, "owner")
    assert create(client, owner).status_code == 201
    assert create(client, other_owner).status_code == 201


@pytest.mark.parametrize(
    "payload,field",
    [
        ({"password": PASSWORD, "role": "member"}, "username"),
        ({"username": "bob", "role": "member"}, "password"),
        ({"username": "bob", "password": PASSWORD}, "role"),
        ({"username": "bob", "password": "short", "role": "member"}, "password"),
        ({"username": "bob", "password": "x" * 1025, "role": "member"}, "password"),
        (
            {
                "username": "correct-horse-battery",
                "password": "Correct-Horse-Battery",
                "role": "member",
            },
            "password",
        ),
        ({"username": "bob", "password": PASSWORD, "role": "superuser"}, "role"),
        ({"username": "bob", "password": PASSWORD, "role": 3}, "role"),
        ({"username": ["bob"], "password": PASSWORD, "role": "member"}, "username"),
        ({"username": "", "password": PASSWORD, "role": "member"}, "username"),
        ({"username": "b" * 65, "password": PASSWORD, "role": "member"}, "username"),
        ({"username": "bob smith", "password": PASSWORD, "role": "member"}, "username"),
        ({"username": "bob", "password": 123456789012345, "role": "member"}, "password"),
        ({"username": "bob", "password": PASSWORD, "role": "member", "admin": True}, "admin"),
    ],
)
def test_invalid_user_is_422_naming_the_field(client, owner, payload, field):
    response = client.post(USERS, json=payload, headers=owner)
    body = assert_problem(response, 422, "validation_error")
    assert field in body["errors"]
    if isinstance(payload.get("password"), str):
        assert payload["password"] not in response.get_data(as_text=True)


@pytest.mark.parametrize(
    "payload,field",
    [
        ({"disabled": "yes"}, "disabled"),
        ({"disabled": 1}, "disabled"),
        ({"role": "root"}, "role"),
        ({"password": "short"}, "password"),
        ({"username": "renamed"}, "username"),
    ],
)
def test_invalid_user_change_is_422(app, client, tenant, owner, payload, field):
    user, _ = make_user(app, tenant, "member")
    response = client.patch(f"{USERS}/{user.id}", json=payload, headers=owner)
    assert field in assert_problem(response, 422, "validation_error")["errors"]


def test_new_password_equal_to_username_is_422(app, client, tenant, owner):
    user, _ = make_user(app, tenant, "member", "longusername1")
    response = client.patch(f"{USERS}/{user.id}", json={"password": "LongUsername1"}, headers=owner)
    assert "password" in assert_problem(response, 422, "validation_error")["errors"]


def test_admin_cannot_create_or_promote_to_owner(app, client, tenant, admin):
    assert_problem(create(client, admin, role="owner"), 403, "forbidden")
    assert create(client, admin, role="admin").status_code == 201
    member, _ = make_user(app, tenant, "member")
    response = client.patch(f"{USERS}/{member.id}", json={"role": "owner"}, headers=admin)
    assert_problem(response, 403, "forbidden")


def test_admin_cannot_touch_an_owner(app, client, tenant, admin):
    owner_user = next(
        u for u in client.get(USERS, headers=admin).get_json() if u["role"] == "owner"
    )
    url = f"{USERS}/{owner_user['id']}"
    for payload in ({"role": "viewer"}, {"disabled": True}, {"password": "a brand new secret"}):
        assert_problem(client.patch(url, json=payload, headers=admin), 403, "forbidden")
    assert_problem(client.delete(url, headers=admin), 403, "forbidden")


def test_admin_cannot_promote_itself(client, admin):
    me = client.get("/api/v1/auth/whoami", headers=admin).get_json()
    response = client.patch(f"{USERS}/{me['id']}", json={"role": "owner"}, headers=admin)
    assert_problem(response, 403, "forbidden")


def test_roles_without_users_manage_are_refused(app, client, tenant):
    for role in ("viewer", "member"):
        headers = token_of(app, client, tenant, role)
        assert_problem(client.get(USERS, headers=headers), 403, "forbidden")
        assert_problem(create(client, headers), 403, "forbidden")


def test_a_key_grants_no_role_beyond_its_scopes(app, client, tenant):
    _, narrow = make_api_key(app, tenant, scopes=["users:manage"])
    assert_problem(create(client, bearer(narrow), role="viewer"), 403, "forbidden")
    _, full = make_api_key(app, tenant)
    assert create(client, bearer(full), role="owner").status_code == 201


def test_last_owner_cannot_be_demoted_disabled_or_deleted(client, owner):
    me = client.get("/api/v1/auth/whoami", headers=owner).get_json()
    url = f"{USERS}/{me['id']}"
    assert_problem(client.patch(url, json={"role": "admin"}, headers=owner), 409, "conflict")
    assert_problem(client.patch(url, json={"disabled": True}, headers=owner), 409, "conflict")
    assert_problem(client.delete(url, headers=owner), 409, "conflict")
    assert client.get("/api/v1/auth/whoami", headers=owner).get_json()["role"] == "owner"


def test_an_owner_may_step_down_once_another_owner_exists(client, owner):
    second = create(client, owner, username="second", role="owner").get_json()
    me = client.get("/api/v1/auth/whoami", headers=owner).get_json()
    changed = client.patch(f"{USERS}/{me['id']}", json={"role": "admin"}, headers=owner)
    assert changed.status_code == 200
    # An admin now, the former owner cannot touch the remaining owner.
    assert_problem(client.delete(f"{USERS}/{second['id']}", headers=owner), 403, "forbidden")


def test_a_disabled_owner_does_not_count(app, client, tenant, owner):
    spare, _ = make_user(app, tenant, "owner", "spare")
    assert (
        client.patch(f"{USERS}/{spare.id}", json={"disabled": True}, headers=owner).status_code
        == 200
    )
    me = client.get("/api/v1/auth/whoami", headers=owner).get_json()
    assert_problem(
        client.patch(f"{USERS}/{me['id']}", json={"role": "member"}, headers=owner), 409, "conflict"
    )


def test_other_tenants_users_are_404_never_403(app, client, owner, other_tenant):
    stranger, _ = make_user(app, other_tenant, "member", "stranger")
    url = f"{USERS}/{stranger.id}"
    assert_problem(client.get(url, headers=owner), 404, "not_found")
    assert_problem(client.patch(url, json={"role": "viewer"}, headers=owner), 404, "not_found")
    assert_problem(client.delete(url, headers=owner), 404, "not_found")
    assert "stranger" not in client.get(USERS, headers=owner).get_data(as_text=True)


def test_role_changes_apply_to_live_tokens_at_once(app, client, tenant, owner):
    adam, password = make_user(app, tenant, "admin", "adam")
    token = bearer(login(client, tenant, "adam", password)["access_token"])
    assert client.get(USERS, headers=token).status_code == 200
    client.patch(f"{USERS}/{adam.id}", json={"role": "viewer"}, headers=owner)
    assert_problem(client.get(USERS, headers=token), 403, "forbidden")
    assert client.get("/api/v1/auth/whoami", headers=token).get_json()["role"] == "viewer"


@pytest.mark.parametrize("change", [{"disabled": True}, {"password": "a brand new secret"}, None])
def test_disabling_deleting_or_a_new_password_ends_logins(app, client, tenant, owner, change):
    bob, password = make_user(app, tenant, "member", "bob")
    tokens = login(client, tenant, "bob", password)
    access = bearer(tokens["access_token"])
    assert client.get("/api/v1/auth/whoami", headers=access).status_code == 200
    if change is None:
        assert client.delete(f"{USERS}/{bob.id}", headers=owner).status_code == 204
    else:
        assert client.patch(f"{USERS}/{bob.id}", json=change, headers=owner).status_code == 200
    assert_problem(client.get("/api/v1/auth/whoami", headers=access), 401, "unauthorized")
    refreshed = client.post("/api/v1/auth/refresh", headers=bearer(tokens["refresh_token"]))
    assert_problem(refreshed, 401, "unauthorized")
    if change == {"password": "a brand new secret"}:
        login(client, tenant, "bob", "a brand new secret")


def test_reenabled_user_logs_in_again(app, client, tenant, owner):
    bob, password = make_user(app, tenant, "member", "bob")
    client.patch(f"{USERS}/{bob.id}", json={"disabled": True}, headers=owner)
    refused = client.post(
        "/api/v1/auth/token", json={"tenant": tenant.slug, "username": "bob", "password": password}
    )
    assert_problem(refused, 401, "unauthorized")
    client.patch(f"{USERS}/{bob.id}", json={"disabled": False}, headers=owner)
    assert login(client, tenant, "bob", password)["access_token"]


def test_passwords_are_never_logged_or_returned(app, client, tenant, owner, caplog):
    secret = "never-show-this-password-9"
    with caplog.at_level(logging.DEBUG), caplog.at_level(logging.DEBUG, logger="ctxcloud"):
        created = create(client, owner, username="carol", password=secret)
        client.patch(
            f"{USERS}/{created.get_json()['id']}", json={"password": secret + "x"}, headers=owner
        )
        login(client, tenant, "carol", secret + "x")
        client.post(
            "/api/v1/auth/token",
            json={"tenant": tenant.slug, "username": "carol", "password": secret},
        )
    logged = "\n".join(f"{r.getMessage()} {vars(r)}" for r in caplog.records)
    assert secret not in logged
    assert secret not in created.get_data(as_text=True)


def test_user_events_are_audited(app, client, tenant, owner, caplog):
    with caplog.at_level(logging.INFO, logger="ctxcloud.audit"):
        user = create(client, owner).get_json()
        client.patch(f"{USERS}/{user['id']}", json={"role": "viewer"}, headers=owner)
        client.patch(f"{USERS}/{user['id']}", json={"disabled": True}, headers=owner)
        client.delete(f"{USERS}/{user['id']}", headers=owner)
    events = [r.audit for r in caplog.records if r.name == "ctxcloud.audit"]
    assert [e["type"] for e in events] == [
        "user_created",
        "user_role_changed",
        "user_disabled",
        "user_deleted",
    ]
    assert events[1]["old_role"] == "member" and events[1]["role"] == "viewer"
    assert all(e["tenant_id"] == tenant.id and e["user_id"] == user["id"] for e in events)
