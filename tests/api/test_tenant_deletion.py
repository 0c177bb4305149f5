"""Suspending, resuming and deleting a tenant: what its credentials get, what is kept, what is
gone (rows, objects, data key), and an interrupted deletion that is finished afterwards."""

from __future__ import annotations

import base64
import logging

import pytest

from ctxcloud.keystore import TenantKey, TenantKeyDestroyed
from ctxcloud.storage import StorageUnavailable
from tests.api.test_core import assert_problem
from tests.support.context import create_project, entry_url, object_keys_of, put_entry, storage
from tests.support.factories import bearer, login, make_api_key, make_user

TENANTS = "/api/v1/tenants"
WHOAMI = "/api/v1/auth/whoami"


@pytest.fixture
def admin(platform_key) -> dict:
    return bearer(platform_key)


def populate(app, client, tenant, key: str) -> dict:
    """A project with history (a replaced entry, a commit, a deletion), a user logged in, a
    second key; returns what the tests check against."""
    headers = bearer(key)
    project = create_project(client, headers, "Handbook")
    files = {
        "readme.md": b"# " + tenant.slug.encode(),
        "data/blob.bin": bytes(range(256)) * 40,
    }
    put_entry(client, headers, project["id"], "readme.md", b"first draft", expect=201)
    for path, data in files.items():
        put_entry(client, headers, project["id"], path, data)
    committed = client.post(
        f"/api/v1/projects/{project['id']}/context/commits",
        json={
            "message": "more",
            "put": [{"path": "notes/a.txt", "content": "alpha"}],
            "delete": ["readme.md"],
        },
        headers=headers,
    )
    assert committed.status_code == 201, committed.get_data(as_text=True)
    files.pop("readme.md")
    files["notes/a.txt"] = b"alpha"
    username = f"{tenant.slug}-owner"
    _, password = make_user(app, tenant, "owner", username)
    tokens = login(client, tenant, username, password)
    _, second_key = make_api_key(app, tenant, scopes=["context:read"])
    return {
        "project": project["id"],
        "files": files,
        "username": username,
        "password": password,
        "tokens": tokens,
        "credentials": [headers, bearer(second_key), bearer(tokens["access_token"])],
    }


def read_files(client, headers: dict, project: str, paths) -> dict[str, bytes]:
    found = {}
    for path in paths:
        response = client.get(entry_url(project, path), headers=headers)
        assert response.status_code == 200, response.get_data(as_text=True)
        found[path] = response.get_data()
    return found


def rows_of(app, tenant_id: str, project_ids: list[str]) -> dict[str, int]:
    """How many rows of each kind the tenant has in the database."""
    from ctxcloud.plugins.auth_apikey.models import ApiKey
    from ctxcloud.plugins.context.models import Entry, EntryVersion, Project, Revision
    from ctxcloud.plugins.users.models import TokenFamily, User
    from ctxcloud.tenancy.models import Tenant, TenantUsage

    with app.app_context():
        counts = {
            model.__name__: model.select().where(model.tenant_id == tenant_id).count()
            for model in (Project, User, ApiKey, TokenFamily, TenantUsage)
        }
        counts.update(
            {
                model.__name__: model.select().where(model.project.in_(project_ids)).count()
                for model in (Entry, EntryVersion, Revision)
            }
        )
        counts["Tenant"] = Tenant.select().where(Tenant.id == tenant_id).count()
    return counts


def stored(app, keys) -> dict[str, bytes]:
    """The ciphertext of each key still in storage."""
    backend = storage(app)
    with app.app_context():
        return {key: b"".join(backend.get(key)) for key in keys if backend.head(key) is not None}


def tenant_key(app, tenant_id: str) -> TenantKey:
    with app.app_context():
        return TenantKey.get(TenantKey.tenant_id == tenant_id)


def audit_types(caplog, tenant_id: str) -> list[str]:
    return [
        r.audit["type"]
        for r in caplog.records
        if r.name == "ctxcloud.audit" and r.audit.get("tenant_id") == tenant_id
    ]


def assert_all_gone(app, tenant, project: str, keys: set[str]) -> None:
    counts = rows_of(app, tenant.id, [project])
    assert counts == dict.fromkeys(counts, 0)
    assert stored(app, keys) == {}
    destroyed = tenant_key(app, tenant.id)  # a tombstone: no new key is ever made for it
    assert destroyed.destroyed_at is not None and destroyed.wrapped_key == b""


def test_a_suspended_tenant_keeps_its_data_and_gets_it_back_on_resume(
    app, client, admin, tenant, owner_key
):
    made = populate(app, client, tenant, owner_key)
    project, files = made["project"], made["files"]
    rows_before = rows_of(app, tenant.id, [project])
    objects_before = stored(app, object_keys_of(app, project))

    suspended = client.patch(f"{TENANTS}/{tenant.id}", json={"status": "suspended"}, headers=admin)
    assert suspended.status_code == 200 and suspended.get_json()["status"] == "suspended"
    for headers in made["credentials"]:
        for path in files:
            got = client.get(entry_url(project, path), headers=headers)
            assert_problem(got, 403, "tenant_suspended")
        assert_problem(client.get(WHOAMI, headers=headers), 403, "tenant_suspended")
    refused_write = client.put(entry_url(project, "new.txt"), data=b"x", headers=bearer(owner_key))
    assert_problem(refused_write, 403, "tenant_suspended")
    # Nothing was removed, or added, meanwhile.
    assert rows_of(app, tenant.id, [project]) == rows_before
    assert stored(app, objects_before) == objects_before
    assert client.get(f"{TENANTS}/{tenant.id}/usage", headers=admin).get_json()["entries"] == 2

    resumed = client.patch(f"{TENANTS}/{tenant.id}", json={"status": "active"}, headers=admin)
    assert resumed.get_json()["status"] == "active"
    for headers in made["credentials"]:
        assert read_files(client, headers, project, files) == files
    refreshed = client.post("/api/v1/auth/refresh", headers=bearer(made["tokens"]["refresh_token"]))
    assert refreshed.status_code == 200


@pytest.mark.every_backend
def test_deleting_a_tenant_removes_everything_it_owns_and_nothing_of_another(
    app, client, admin, tenant, other_tenant, owner_key, caplog
):
    made = populate(app, client, tenant, owner_key)
    project = made["project"]
    keys = object_keys_of(app, project)
    assert len(stored(app, keys)) == len(keys) == 4  # every version is kept
    _, other_secret = make_api_key(app, other_tenant)
    other = populate(app, client, other_tenant, other_secret)
    other_objects = stored(app, object_keys_of(app, other["project"]))
    other_usage = client.get(f"{TENANTS}/{other_tenant.id}/usage", headers=admin).get_json()
    other_rows = rows_of(app, other_tenant.id, [other["project"]])

    with caplog.at_level(logging.INFO, logger="ctxcloud.audit"):
        deleted = client.delete(f"{TENANTS}/{tenant.id}", headers=admin)
    assert deleted.status_code == 204 and deleted.get_data() == b""
    assert audit_types(caplog, tenant.id) == ["tenant_deleting", "tenant_deleted"]

    assert_all_gone(app, tenant, project, keys)
    for headers in made["credentials"]:
        assert_problem(client.get(WHOAMI, headers=headers), 401, "unauthorized")
        got = client.get(entry_url(project, "notes/a.txt"), headers=headers)
        assert_problem(got, 401, "unauthorized")
    refresh = client.post("/api/v1/auth/refresh", headers=bearer(made["tokens"]["refresh_token"]))
    assert_problem(refresh, 401, "unauthorized")
    relogin = client.post(
        "/api/v1/auth/token",
        json={"tenant": tenant.slug, "username": made["username"], "password": made["password"]},
    )
    assert_problem(relogin, 401, "unauthorized")
    assert_problem(client.get(f"{TENANTS}/{tenant.id}", headers=admin), 404, "not_found")
    assert_problem(client.get(f"{TENANTS}/{tenant.id}/usage", headers=admin), 404, "not_found")

    # The other tenant: every row, object byte and entry byte as it was.
    assert rows_of(app, other_tenant.id, [other["project"]]) == other_rows
    assert stored(app, other_objects) == other_objects
    for headers in other["credentials"]:
        assert read_files(client, headers, other["project"], other["files"]) == other["files"]
    now = client.get(f"{TENANTS}/{other_tenant.id}/usage", headers=admin).get_json()
    assert {k: now[k] for k in now if k != "requests"} == {
        k: other_usage[k] for k in other_usage if k != "requests"
    }

    # The slug is free; its new tenant sees nothing of the old one.
    reborn = client.post(TENANTS, json={"slug": tenant.slug}, headers=admin)
    assert reborn.status_code == 201 and reborn.get_json()["id"] != tenant.id
    reborn_id = reborn.get_json()["id"]
    usage = client.get(f"{TENANTS}/{reborn_id}/usage", headers=admin).get_json()
    assert {k: usage[k] for k in ("projects", "entries", "storage_bytes", "users", "api_keys")} == {
        "projects": 0,
        "entries": 0,
        "storage_bytes": 0,
        "users": 0,
        "api_keys": 0,
    }
    from ctxcloud.tenancy.models import Tenant

    with app.app_context():
        new_tenant = Tenant.get_by_id(reborn_id)
    fresh = bearer(make_api_key(app, new_tenant)[1])
    assert client.get("/api/v1/projects", headers=fresh).get_json() == []
    assert_problem(client.get(f"/api/v1/projects/{project}", headers=fresh), 404, "not_found")
    assert_problem(client.get("/api/v1/projects/handbook", headers=fresh), 404, "not_found")
    assert client.get("/api/v1/users", headers=fresh).get_json() == []
    old_login = client.post(
        "/api/v1/auth/token",
        json={"tenant": tenant.slug, "username": made["username"], "password": made["password"]},
    )
    assert_problem(old_login, 401, "unauthorized")
    for headers in made["credentials"]:  # the old credentials do not open the new tenant
        assert_problem(client.get(WHOAMI, headers=headers), 401, "unauthorized")

    assert_problem(client.delete(f"{TENANTS}/{tenant.id}", headers=admin), 404, "not_found")


def fail_storage_deletes_after_the_first(app, monkeypatch) -> list[str]:
    """The storage backend deletes one object, then fails (with a message full of internals)."""
    backend = storage(app)
    real_delete = backend.delete
    deleted: list[str] = []

    def delete(key: str) -> bool:
        if deleted:
            raise StorageUnavailable(f"local storage: cannot delete {key!r}: /srv/secret/objects")
        deleted.append(key)
        return real_delete(key)

    monkeypatch.setattr(backend, "delete", delete)
    return deleted


@pytest.mark.every_backend
@pytest.mark.parametrize("finish", ["delete-again", "cli-purge"])
def test_an_interrupted_deletion_shreds_the_data_at_once_and_can_be_finished(
    app, client, admin, tenant, other_tenant, owner_key, monkeypatch, caplog, finish
):
    made = populate(app, client, tenant, owner_key)
    project = made["project"]
    keys = object_keys_of(app, project)
    _, other_secret = make_api_key(app, other_tenant)
    other = populate(app, client, other_tenant, other_secret)
    other_objects = stored(app, object_keys_of(app, other["project"]))
    rows_before = rows_of(app, tenant.id, [project])
    deleted = fail_storage_deletes_after_the_first(app, monkeypatch)

    with caplog.at_level(logging.INFO, logger="ctxcloud.audit"):
        failed = client.delete(f"{TENANTS}/{tenant.id}", headers=admin)
        assert_problem(failed, 503, "unavailable")  # documented: repeat to finish
        body = failed.get_data(as_text=True)
        for internal in ("/srv/secret", "StorageUnavailable", "Traceback", *keys):
            assert internal not in body
        assert len(deleted) == 1
        monkeypatch.undo()

        # Deleting: every credential is dead, the tenant cannot be changed, its rows wait.
        shown = client.get(f"{TENANTS}/{tenant.id}", headers=admin)
        assert shown.status_code == 200 and shown.get_json()["status"] == "deleting"
        for headers in made["credentials"]:
            assert_problem(client.get(WHOAMI, headers=headers), 401, "unauthorized")
        relogin = client.post(
            "/api/v1/auth/token",
            json={
                "tenant": tenant.slug,
                "username": made["username"],
                "password": made["password"],
            },
        )
        assert_problem(relogin, 401, "unauthorized")
        # The slug stays taken until the old tenant's data is gone.
        taken = client.post(TENANTS, json={"slug": tenant.slug}, headers=admin)
        assert_problem(taken, 409, "conflict")
        for change in ({"status": "active"}, {"name": "Back"}):
            response = client.patch(f"{TENANTS}/{tenant.id}", json=change, headers=admin)
            assert_problem(response, 409, "conflict")
        quota = {"quotas": {"max_projects": 5}}
        response = client.patch(f"{TENANTS}/{tenant.id}/config", json=quota, headers=admin)
        assert_problem(response, 409, "conflict")
        assert rows_of(app, tenant.id, [project]) == rows_before

        # Crypto-shredded: the data key is gone, so the ciphertext left behind is noise.
        destroyed = tenant_key(app, tenant.id)
        assert destroyed.destroyed_at is not None and destroyed.wrapped_key == b""
        left = stored(app, keys)
        assert set(left) == keys - set(deleted) and len(left) == len(keys) - 1
        from ctxcloud import objects
        from ctxcloud.plugins.context.models import EntryVersion

        with app.app_context():
            version = EntryVersion.get(EntryVersion.object_key == next(iter(left)))
            assert len(left[version.object_key]) > version.size  # the ciphertext is there
            with pytest.raises(TenantKeyDestroyed):
                b"".join(objects.read(tenant.id, project, version.object_key, version.size))

        if finish == "delete-again":
            assert client.delete(f"{TENANTS}/{tenant.id}", headers=admin).status_code == 204
        else:
            result = app.test_cli_runner().invoke(args=["tenants", "purge", tenant.slug])
            assert result.exit_code == 0, result.output
            assert tenant.id in result.output

    assert audit_types(caplog, tenant.id) == ["tenant_deleting", "tenant_deleted"]
    assert_all_gone(app, tenant, project, keys)
    assert_problem(client.get(f"{TENANTS}/{tenant.id}", headers=admin), 404, "not_found")
    assert stored(app, other_objects) == other_objects
    for headers in other["credentials"]:
        assert read_files(client, headers, other["project"], other["files"]) == other["files"]


def test_purge_deletes_an_active_tenant_only_when_told_yes(app, client, admin, tenant, owner_key):
    made = populate(app, client, tenant, owner_key)
    project = made["project"]
    keys = object_keys_of(app, project)
    rows_before = rows_of(app, tenant.id, [project])
    runner = app.test_cli_runner()

    refused = runner.invoke(args=["tenants", "purge", tenant.slug])
    assert refused.exit_code != 0
    assert "--yes" in refused.output
    assert rows_of(app, tenant.id, [project]) == rows_before
    assert set(stored(app, keys)) == keys
    assert tenant_key(app, tenant.id).destroyed_at is None
    assert client.get(f"{TENANTS}/{tenant.id}", headers=admin).get_json()["status"] == "active"
    for headers in made["credentials"]:
        assert read_files(client, headers, project, made["files"]) == made["files"]

    purged = runner.invoke(args=["tenants", "purge", tenant.slug, "--yes", "--json"])
    assert purged.exit_code == 0, purged.output
    assert '"deleted": true' in purged.output
    assert_all_gone(app, tenant, project, keys)
    for headers in made["credentials"]:
        assert_problem(client.get(WHOAMI, headers=headers), 401, "unauthorized")

    unknown = runner.invoke(args=["tenants", "purge", tenant.slug, "--yes"])
    assert unknown.exit_code != 0


@pytest.mark.every_backend
def test_deleted_objects_of_the_tenant_were_unreadable_even_if_copied_away_first(
    app, client, admin, tenant, owner_key
):
    """Someone with storage access who copied the ciphertext before the deletion holds noise."""
    made = populate(app, client, tenant, owner_key)
    project = made["project"]
    copies = stored(app, object_keys_of(app, project))
    assert client.delete(f"{TENANTS}/{tenant.id}", headers=admin).status_code == 204
    backend = storage(app)
    from ctxcloud import objects

    with app.app_context():
        for key, ciphertext in copies.items():
            backend.put(key, [ciphertext])  # put back exactly as it was
            with pytest.raises(TenantKeyDestroyed):
                b"".join(objects.read(tenant.id, project, key, len(ciphertext)))
            backend.delete(key)
    # And the plaintext never appears in the copies.
    for data in made["files"].values():
        assert all(data not in c and base64.b64encode(data) not in c for c in copies.values())
