"""`ctxcloud storage gc`: orphaned objects (stored, never recorded) are found and removed;
referenced objects, objects younger than the grace and uploads in flight are never touched.

Runs on both stacks: local files (embedded) and S3 (production tier, where gc also aborts an
incomplete multipart upload), and again on GCS and Azure (`every_backend`); what a killed worker
leaves on each cloud backend is in tests/storage/test_gc_after_a_killed_worker.py.
"""

from __future__ import annotations

import json
import os
import time

import pluggy
import pytest

from ctxcloud import hookimpl, hookspecs, objects
from ctxcloud.storage import StorageUnavailable
from ctxcloud.storage_gc import GcRefused, collect_garbage
from tests import stack
from tests.support.context import (
    context_url,
    create_project,
    entry_url,
    put_entry,
    storage,
    stored_keys,
)
from tests.support.factories import bearer, make_api_key

# Runs again on each cloud storage backend (tests/stack.py, CTXCLOUD_TEST_STORAGE).
pytestmark = pytest.mark.every_backend

P = "handbook"
ENTRIES = {
    "readme.md": b"# Handbook\n",
    "empty": b"",
    "docs/big.bin": os.urandom(3 * 65536 + 11),
    "docs/replaced.txt": b"second version",  # its first version stays referenced too
}
DAY = 24 * 3600


@pytest.fixture
def auth(app, tenant) -> dict:
    return bearer(make_api_key(app, tenant)[1])


@pytest.fixture
def project(client, auth) -> dict:
    return create_project(client, auth, name="Handbook", slug=P)


@pytest.fixture
def entries(client, auth, project) -> dict[str, bytes]:
    """Entries written through the API, one of them twice, and two more in one commit."""
    put_entry(client, auth, P, "docs/replaced.txt", b"first version", expect=201)
    for path, data in ENTRIES.items():
        put_entry(client, auth, P, path, data, expect=None)
    response = client.post(
        f"{context_url(P)}/commits",
        json={
            "message": "two at once",
            "put": [{"path": "c/1", "content": "one"}, {"path": "c/2", "content": "two"}],
        },
        headers=auth,
    )
    assert response.status_code == 201, response.get_data(as_text=True)
    return {**ENTRIES, "c/1": b"one", "c/2": b"two"}


def gc(app, *args: str) -> dict:
    """Run the command as an operator would; its --json report."""
    result = app.test_cli_runner().invoke(args=["storage", "gc", "--json", *args])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, result.stdout
    return json.loads(lines[0])


def store_orphan(app, tenant_id: str, project_id: str, data: bytes) -> str:
    """Store an object the way a write does before its transaction, and record nothing."""
    with app.app_context():
        return objects.store(tenant_id, project_id, [data]).key


def orphan_of_a_killed_put(app, client, auth, monkeypatch) -> str:
    """PUT an entry whose process dies between storing the object and committing its record.

    A killed process runs no cleanup: the service's delete of its own object never happens."""
    before = stored_keys(app)
    with monkeypatch.context() as patch:
        patch.setattr(objects, "delete_quietly", lambda keys: None)

        def killed(*args, **kwargs):
            raise RuntimeError("the worker was killed here")

        from ctxcloud.plugins.context import service

        patch.setattr(service.tenancy, "add_storage", killed)
        response = put_entry(client, auth, P, "never-recorded", b"lost in the gap" * 100)
    assert response.status_code == 500
    (key,) = stored_keys(app) - before
    return key


def written_at(app, key: str) -> float:
    (info,) = [i for i in storage(app).scan(key) if i.key == key]
    assert info.modified is not None
    return info.modified


def make_old(app, keys: set[str], seconds: float) -> None:
    """Local files: backdate them, as if written `seconds` ago (S3's clock cannot be set)."""
    backend = storage(app)
    if hasattr(backend, "root"):
        when = time.time() - seconds
        for key in keys:
            os.utime(os.path.join(backend.root, key), (when, when))


def wait_until(condition, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def sizes(app, keys) -> int:
    return sum(storage(app).head(key).size for key in keys)


def test_gc_removes_exactly_the_old_orphans(app, client, auth, tenant, entries, monkeypatch):
    referenced = stored_keys(app)
    assert len(referenced) == len(entries) + 1  # docs/replaced.txt's first version too
    project_id = client.get(f"/api/v1/projects/{P}", headers=auth).get_json()["id"]
    killed = orphan_of_a_killed_put(app, client, auth, monkeypatch)
    stray = store_orphan(app, tenant.id, project_id, os.urandom(70000))
    old = {killed, stray}
    make_old(app, referenced | old, 2 * DAY)
    newest_old = max(written_at(app, key) for key in referenced | old)
    # S3 dates objects to the second: let its clock pass the old ones before the young one.
    wait_until(lambda: time.time() >= newest_old + 2)
    young = store_orphan(app, tenant.id, project_id, b"an upload in flight, not yet committed")
    grace = time.time() - (newest_old + 1)  # between the old objects and the young one
    everything = referenced | old | {young}
    assert stored_keys(app) == everything

    dry = gc(app, "--grace", str(grace))
    assert dry["dry_run"] is True
    assert dry["scanned"] == {"count": len(everything), "bytes": sizes(app, everything)}
    assert dry["in_use"] == {"count": len(referenced), "bytes": sizes(app, referenced)}
    assert dry["orphaned"] == {"count": 2, "bytes": sizes(app, old)}
    assert dry["recent"] == {"count": 1, "bytes": sizes(app, {young})}
    assert dry["removed"] == {"count": 0, "bytes": 0}
    assert stored_keys(app) == everything  # a dry run removes nothing

    human = app.test_cli_runner().invoke(args=["storage", "gc", "--grace", str(grace)])
    assert human.exit_code == 0, human.output
    assert "dry run" in human.stdout and "would be removed" in human.stdout

    done = gc(app, "--delete", "--grace", str(grace))
    assert done["dry_run"] is False
    assert done["orphaned"] == dry["orphaned"]
    assert done["removed"] == dry["orphaned"]
    assert stored_keys(app) == referenced | {young}
    for path, data in entries.items():
        response = client.get(entry_url(P, path), headers=auth)
        assert response.status_code == 200, path
        assert response.get_data() == data
    first = client.get(entry_url(P, "docs/replaced.txt", revision=1), headers=auth)
    assert first.get_data() == b"first version"

    again = gc(app, "--delete", "--grace", str(grace))
    assert again["orphaned"]["count"] == again["removed"]["count"] == 0
    assert gc(app)["orphaned"]["count"] == 0  # the default grace (a day) spares the young one
    assert stored_keys(app) == referenced | {young}


def test_the_default_grace_never_touches_what_was_just_written(app, client, auth, tenant, entries):
    project_id = client.get(f"/api/v1/projects/{P}", headers=auth).get_json()["id"]
    young = store_orphan(app, tenant.id, project_id, b"stored a moment ago, commit pending")
    before = stored_keys(app)
    report = gc(app, "--delete")
    assert report["grace_seconds"] == DAY
    assert report["orphaned"]["count"] == 0 and report["removed"]["count"] == 0
    assert report["recent"]["count"] == len(before)
    assert young in stored_keys(app) and stored_keys(app) == before


def test_an_object_any_plugin_names_is_kept(app, client, auth, tenant, entries):
    project_id = client.get(f"/api/v1/projects/{P}", headers=auth).get_json()["id"]
    staged = store_orphan(app, tenant.id, project_id, b"a staged upload another plugin owns")
    orphan = store_orphan(app, tenant.id, project_id, b"nobody's")

    class StagedUploads:
        @hookimpl
        def objects_in_use(self, keys):
            return [key for key in keys if key == staged]

    app.extensions["ctxcloud"].pm.register(StagedUploads())
    report = gc(app, "--delete", "--grace", "0")
    assert report["orphaned"]["count"] == 1 and report["removed"]["count"] == 1
    assert staged in stored_keys(app) and orphan not in stored_keys(app)


def test_a_failed_removal_is_reported_and_the_sweep_goes_on(
    app, client, auth, tenant, entries, monkeypatch
):
    project_id = client.get(f"/api/v1/projects/{P}", headers=auth).get_json()["id"]
    stuck = store_orphan(app, tenant.id, project_id, b"on a disk that fails")
    gone = store_orphan(app, tenant.id, project_id, b"removable")
    backend = storage(app)
    real_delete = backend.delete

    def delete(key: str) -> bool:
        if key == stuck:
            raise StorageUnavailable("the disk said no")
        return real_delete(key)

    monkeypatch.setattr(backend, "delete", delete)
    result = app.test_cli_runner().invoke(args=["storage", "gc", "--delete", "--grace", "0"])
    assert result.exit_code == 1
    assert "1 removal(s) failed" in result.stdout
    assert stuck in stored_keys(app) and gone not in stored_keys(app)
    monkeypatch.undo()
    assert gc(app, "--delete", "--grace", "0")["removed"]["count"] == 1  # the next run finishes
    assert stuck not in stored_keys(app)


def test_gc_refuses_when_no_plugin_can_name_objects(app, client, auth, tenant, entries):
    before = stored_keys(app)
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)  # no plugin: the context plugin is disabled, say
    with pytest.raises(GcRefused), app.app_context():
        collect_garbage(storage(app), pm, grace=0, delete=True)
    assert stored_keys(app) == before


@pytest.mark.skipif(
    not (stack.is_production and stack.STORAGE == "s3"), reason="an S3 multipart upload"
)
def test_gc_aborts_an_incomplete_multipart_upload(app, client, auth, entries):
    backend = storage(app)
    client_s3, bucket = backend.client, backend.bucket
    key = backend.prefix + "o/ab/" + "ab" * 16  # what a worker killed mid-upload leaves
    upload = client_s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    part = os.urandom(5 * 1024 * 1024)
    client_s3.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=1, Body=part)
    referenced = stored_keys(app)

    # moto dates every upload in 2010, so any grace finds this one old enough.
    dry = gc(app, "--grace", "3600")
    assert dry["incomplete_uploads"] == {"count": 1, "bytes": len(part)}
    assert dry["aborted"] == {"count": 0, "bytes": 0}
    listed = client_s3.list_multipart_uploads(Bucket=bucket, Prefix=backend.prefix)
    assert [u["UploadId"] for u in listed.get("Uploads", [])] == [upload]

    done = gc(app, "--delete", "--grace", "3600")
    assert done["aborted"] == {"count": 1, "bytes": len(part)}
    assert done["removed"]["count"] == 0
    listed = client_s3.list_multipart_uploads(Bucket=bucket, Prefix=backend.prefix)
    assert listed.get("Uploads", []) == []
    assert stored_keys(app) == referenced
