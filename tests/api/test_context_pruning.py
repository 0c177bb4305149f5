"""revisions_kept: pruning keeps the last N revisions readable and frees everything older."""

from __future__ import annotations

import json

import pytest

from tests.support.context import (
    context_url,
    create_project,
    entry_url,
    object_keys_of,
    put_entry,
    stored_keys,
)
from tests.support.factories import bearer


@pytest.fixture
def auth(owner_key):
    return bearer(owner_key)


def prune(app, *args):
    result = app.test_cli_runner().invoke(args=["context", "prune", "--json", *args])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def manifest(client, auth, project, revision):
    response = client.get(context_url(project, revision=revision), headers=auth)
    return response.status_code, response.get_json()


def test_prune_keeps_the_last_revisions_readable_and_frees_the_rest(app, client, auth):
    project = create_project(client, auth, slug="p")
    put_entry(client, auth, "p", "a.md", b"a1", expect=201)  # r1
    put_entry(client, auth, "p", "a.md", b"a2", expect=200)  # r2
    put_entry(client, auth, "p", "b.md", b"b1", expect=201)  # r3
    assert client.delete(entry_url("p", "b.md"), headers=auth).status_code == 204  # r4
    put_entry(client, auth, "p", "a.md", b"a3", expect=200)  # r5
    put_entry(client, auth, "p", "c.md", b"c1", expect=201)  # r6
    kept_before = {n: manifest(client, auth, "p", n)[1] for n in (4, 5, 6)}
    keys_before = object_keys_of(app, project["id"])

    result = prune(app, "--keep", "3")
    # Keeping 3 revisions keeps 4..6: a1 and b1 are unreadable from 4 on; a2 is a's state at 4.
    assert result["versions_deleted"] == 3  # a1, b1, b's deletion marker
    assert result["objects_deleted"] == 2
    for n in (4, 5, 6):
        status, body = manifest(client, auth, "p", n)
        assert status == 200 and body == kept_before[n]
    for n in (1, 2, 3):
        status, body = manifest(client, auth, "p", n)
        assert status == 404 and "pruned" in body["detail"]
    assert client.get(entry_url("p", "a.md", revision=4), headers=auth).data == b"a2"
    assert client.get(entry_url("p", "a.md"), headers=auth).data == b"a3"
    assert client.get(entry_url("p", "a.md", revision=2), headers=auth).status_code == 404
    remaining = object_keys_of(app, project["id"])
    assert len(keys_before - remaining) == 2
    assert stored_keys(app) >= remaining
    assert not (keys_before - remaining) & stored_keys(app)
    # The log is kept, and the project says where history starts.
    assert client.get(f"{context_url('p')}/revisions/1", headers=auth).status_code == 200
    assert client.get("/api/v1/projects/p", headers=auth).get_json()["history_starts_at"] == 4


def test_prune_is_idempotent_and_never_touches_current_entries(app, client, auth):
    create_project(client, auth, slug="p")
    for i in range(5):
        put_entry(client, auth, "p", "only.md", f"v{i}".encode())
    assert prune(app, "--keep", "1")["versions_deleted"] == 4
    assert prune(app, "--keep", "1")["versions_deleted"] == 0
    assert client.get(entry_url("p", "only.md"), headers=auth).data == b"v4"
    status, body = manifest(client, auth, "p", 5)
    assert status == 200 and [e["path"] for e in body["entries"]] == ["only.md"]


def test_prune_without_any_keep_setting_keeps_everything(app, client, auth):
    create_project(client, auth, slug="p")
    for i in range(3):
        put_entry(client, auth, "p", "x.md", f"v{i}".encode())
    assert prune(app) == {
        "keep": None,
        "projects": 0,
        "versions_deleted": 0,
        "objects_deleted": 0,
        "results": [],
    }
    assert manifest(client, auth, "p", 1)[0] == 200


def test_revisions_kept_setting_is_the_default(app_config, client, auth, app):
    app.config["REVISIONS_KEPT"] = 2
    create_project(client, auth, slug="p")
    for i in range(4):
        put_entry(client, auth, "p", "x.md", f"v{i}".encode())
    assert prune(app)["versions_deleted"] == 2
    assert manifest(client, auth, "p", 3)[0] == 200
    assert manifest(client, auth, "p", 2)[0] == 404
