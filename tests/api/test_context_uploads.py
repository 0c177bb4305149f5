"""Staged uploads: a commit's bytes sent before the commit names them (API.md "Uploads").

The commit stays all-or-nothing: an unknown, expired, foreign, unsent or already used upload
fails it whole and changes nothing; uploads obey an entry's limits and the storage quota
while they stream, count toward the quota until committed or swept, and are invisible to
other tenants and projects."""

from __future__ import annotations

import datetime
import hashlib
import io
import os

import pytest

from ctxcloud.plugins.context.models import ContextUpload
from tests.api.test_core import assert_problem
from tests.support.context import context_url, create_project, head_revision, storage, stored_keys
from tests.support.factories import bearer, make_api_key, make_tenant

P = "p"
UPLOADS = f"{context_url(P)}/uploads"
COMMITS = f"{context_url(P)}/commits"
MiB = 1024 * 1024


@pytest.fixture
def auth(app, tenant) -> dict:
    return bearer(make_api_key(app, tenant)[1])


@pytest.fixture
def project(client, auth) -> dict:
    return create_project(client, auth, name="Project", slug=P)


def open_upload(client, auth, project=P) -> dict:
    response = client.post(f"{context_url(project)}/uploads", headers=auth)
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()


def send(client, auth, upload_id, data, project=P, **headers):
    url = f"{context_url(project)}/uploads/{upload_id}"
    return client.put(url, data=data, headers={**auth, **headers})


def staged(client, auth, data: bytes, project=P) -> str:
    upload = open_upload(client, auth, project)
    response = send(client, auth, upload["upload_id"], data, project)
    assert response.status_code == 200, response.get_data(as_text=True)
    return upload["upload_id"]


def commit(client, auth, put=(), delete=(), **body):
    return client.post(
        COMMITS, json={"put": list(put), "delete": list(delete), **body}, headers=auth
    )


def usage(client, app, tenant, platform_key) -> int:
    response = client.get(f"/api/v1/tenants/{tenant.id}/usage", headers=bearer(platform_key))
    return response.get_json()["storage_bytes"]


@pytest.mark.every_backend
def test_a_large_file_and_small_ones_commit_as_one_revision(app, client, auth, project):
    big = os.urandom(3 * MiB + 17)
    upload = open_upload(client, auth)
    assert upload["upload_id"].startswith("upl_") and upload["expires_at"]
    digest = hashlib.sha256(big).hexdigest()
    sent = send(client, auth, upload["upload_id"], big, **{"Content-SHA256": digest})
    assert sent.status_code == 200
    assert sent.get_json() == {
        "upload_id": upload["upload_id"],
        "size": len(big),
        "sha256": digest,
        "expires_at": upload["expires_at"],
    }
    made = commit(
        client,
        auth,
        put=[
            {"path": "data/big.bin", "upload_id": upload["upload_id"]},
            {"path": "notes/a.md", "content": "# a\n", "content_type": "text/markdown"},
        ],
        message="one revision",
        parent_revision=0,
    )
    assert made.status_code == 201, made.get_data(as_text=True)
    assert made.get_json()["revision"] == 1 and head_revision(client, auth, P) == 1
    got = client.get(f"{context_url(P)}/entries/data/big.bin", headers=auth)
    assert got.status_code == 200 and got.get_data() == big
    assert got.headers["Content-Type"] == "application/octet-stream"  # the tenant's default
    entries = {e["path"]: e for e in client.get(context_url(P), headers=auth).get_json()["entries"]}
    assert entries["data/big.bin"]["sha256"] == digest and entries["data/big.bin"]["size"] == len(
        big
    )


@pytest.mark.every_backend
def test_staged_bytes_are_stored_encrypted_and_become_the_entry(app, client, auth, project):
    plain = b"staged secret line\n" * 4096  # 76 KiB of a pattern easy to find
    upload_id = staged(client, auth, plain)
    with app.app_context():
        key = ContextUpload.get_by_id(upload_id).object_key
    raw = b"".join(storage(app).get(key))
    # Encrypted as an entry is: nothing of the plaintext in the stored object.
    assert len(raw) > len(plain) and b"staged secret line" not in raw
    made = commit(client, auth, put=[{"path": "s.txt", "upload_id": upload_id}])
    assert made.status_code == 201, made.get_data(as_text=True)
    got = client.get(f"{context_url(P)}/entries/s.txt", headers=auth)
    assert got.status_code == 200 and got.get_data() == plain


def test_an_upload_becomes_one_entry_once(client, auth, project):
    upload_id = staged(client, auth, b"once")
    assert commit(client, auth, put=[{"path": "a", "upload_id": upload_id}]).status_code == 201
    again = commit(client, auth, put=[{"path": "b", "upload_id": upload_id}])
    assert_problem(again, 409, "conflict")
    twice = commit(
        client,
        auth,
        put=[{"path": "c", "upload_id": staged(client, auth, b"x")}] * 1
        + [{"path": "d", "upload_id": upload_id}],
    )
    assert_problem(twice, 409, "conflict")
    same = staged(client, auth, b"y")
    both = commit(
        client, auth, put=[{"path": "e", "upload_id": same}, {"path": "f", "upload_id": same}]
    )
    assert_problem(both, 422, "validation_error")
    assert head_revision(client, auth, P) == 1


@pytest.mark.parametrize("case", ["unknown", "unsent", "expired", "other project", "other tenant"])
def test_a_bad_upload_fails_the_whole_commit_and_changes_nothing(
    app, client, auth, tenant, project, case
):
    good = staged(client, auth, b"good bytes")
    if case == "unknown":
        bad, status = "upl_zzzzzzzzzzzzzzzzzzzz", 404
    elif case == "unsent":
        bad, status = open_upload(client, auth)["upload_id"], 409
    elif case == "expired":
        bad = staged(client, auth, b"late")
        with app.app_context():
            ContextUpload.update(expires_at=datetime.datetime(2000, 1, 1)).where(
                ContextUpload.id == bad
            ).execute()
        status = 404
    elif case == "other project":
        create_project(client, auth, name="Other", slug="other")
        bad, status = staged(client, auth, b"other", project="other"), 404
    else:
        theirs = bearer(make_api_key(app, make_tenant(app, "globex"))[1])
        create_project(client, theirs, name="Theirs", slug=P)
        bad, status = staged(client, theirs, b"theirs"), 404
    keys = stored_keys(app)
    response = commit(
        client,
        auth,
        put=[
            {"path": "good", "upload_id": good},
            {"path": "inline", "content": "inline"},
            {"path": "bad", "upload_id": bad},
        ],
    )
    assert_problem(response, status, "not_found" if status == 404 else "conflict")
    assert head_revision(client, auth, P) == 0
    assert stored_keys(app) == keys  # the inline bytes were removed again
    # The good upload was not used up: it still commits.
    assert commit(client, auth, put=[{"path": "good", "upload_id": good}]).status_code == 201


@pytest.mark.every_backend
def test_an_interrupted_send_stores_nothing_and_can_be_sent_again(app, client, auth, project):
    upload = open_upload(client, auth)["upload_id"]
    keys = stored_keys(app)
    cut = client.put(
        f"{UPLOADS}/{upload}",
        input_stream=io.BytesIO(b"x" * 3000),
        headers=auth,
        environ_overrides={"CONTENT_LENGTH": "10000"},
    )
    assert_problem(cut, 400, "bad_request")
    assert stored_keys(app) == keys
    assert send(client, auth, upload, b"x" * 10000).status_code == 200
    made = commit(client, auth, put=[{"path": "x", "upload_id": upload}])
    assert made.status_code == 201


def test_an_upload_is_sent_once(client, auth, project):
    upload = open_upload(client, auth)["upload_id"]
    assert send(client, auth, upload, b"first").status_code == 200
    assert_problem(send(client, auth, upload, b"second"), 409, "conflict")


def test_a_failed_send_stores_nothing_and_can_be_retried(app, client, auth, project):
    upload = open_upload(client, auth)["upload_id"]
    keys = stored_keys(app)
    bad = send(client, auth, upload, b"bytes", **{"Content-SHA256": "0" * 64})
    assert_problem(bad, 400, "checksum_mismatch")
    assert stored_keys(app) == keys
    assert send(client, auth, upload, b"bytes").status_code == 200


def test_uploads_obey_the_entry_limit_and_the_storage_quota(
    app, client, tenant, auth, project, platform_key
):
    config = f"/api/v1/tenants/{tenant.id}/config"
    quotas = {"quotas": {"max_entry_bytes": 1000, "max_storage_bytes": 1500}}
    assert client.patch(config, json=quotas, headers=bearer(platform_key)).status_code == 200
    keys = stored_keys(app)
    upload = open_upload(client, auth)["upload_id"]
    assert_problem(send(client, auth, upload, b"x" * 1001), 413, "entry_too_large")
    # No Content-Length (chunked): refused while streaming, at the first byte too many.
    url = f"{UPLOADS}/{upload}"
    chunked = client.put(url, input_stream=io.BytesIO(b"x" * 1200), headers=auth)
    assert_problem(chunked, 413, "entry_too_large")
    assert stored_keys(app) == keys
    assert send(client, auth, upload, b"x" * 900).status_code == 200
    # Stored bytes count toward the quota before any commit.
    assert usage(client, app, tenant, platform_key) == 900
    second = open_upload(client, auth)["upload_id"]
    assert_problem(send(client, auth, second, b"y" * 700), 403, "quota_exceeded")
    # Committing moves the bytes to an entry without counting them twice.
    assert commit(client, auth, put=[{"path": "a", "upload_id": upload}]).status_code == 201
    assert usage(client, app, tenant, platform_key) == 900


def test_open_uploads_are_bounded_per_tenant(client, tenant, auth, project, platform_key):
    config = f"/api/v1/tenants/{tenant.id}/config"
    patch = {"quotas": {"max_open_uploads": 2}}
    assert client.patch(config, json=patch, headers=bearer(platform_key)).status_code == 200
    first = staged(client, auth, b"1")
    open_upload(client, auth)
    assert_problem(client.post(UPLOADS, headers=auth), 403, "quota_exceeded")
    assert commit(client, auth, put=[{"path": "a", "upload_id": first}]).status_code == 201
    assert client.post(UPLOADS, headers=auth).status_code == 201  # a committed one frees a place


def test_expired_uploads_are_swept_and_their_bytes_freed(
    app, client, tenant, auth, project, platform_key
):
    kept = staged(client, auth, b"k" * 100)
    gone = staged(client, auth, b"g" * 300)
    used = staged(client, auth, b"u" * 50)
    assert commit(client, auth, put=[{"path": "u", "upload_id": used}]).status_code == 201
    with app.app_context():
        gone_key = ContextUpload.get_by_id(gone).object_key
        ContextUpload.update(expires_at=datetime.datetime(2000, 1, 1)).where(
            ContextUpload.id.in_([gone, used])
        ).execute()
    assert usage(client, app, tenant, platform_key) == 450
    result = app.test_cli_runner().invoke(args=["context", "sweep-uploads", "--json"])
    assert result.exit_code == 0, result.output
    assert '"uploads": 2' in result.output and '"bytes_freed": 300' in result.output
    assert usage(client, app, tenant, platform_key) == 150
    assert gone_key not in stored_keys(app)
    # The committed entry's bytes stay; the live upload still commits.
    assert client.get(f"{context_url(P)}/entries/u", headers=auth).get_data() == b"u" * 50
    assert commit(client, auth, put=[{"path": "k", "upload_id": kept}]).status_code == 201


def test_storage_gc_spares_staged_bytes(app, client, auth, project):
    upload = staged(client, auth, b"staged")
    with app.app_context():
        key = ContextUpload.get_by_id(upload).object_key
    result = app.test_cli_runner().invoke(
        args=["storage", "gc", "--delete", "--grace", "0", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert key in stored_keys(app)
    assert commit(client, auth, put=[{"path": "s", "upload_id": upload}]).status_code == 201


def test_deleting_the_project_frees_its_uploads(app, client, tenant, auth, project, platform_key):
    upload = staged(client, auth, b"z" * 64)
    with app.app_context():
        key = ContextUpload.get_by_id(upload).object_key
    assert client.delete(f"/api/v1/projects/{P}", headers=auth).status_code == 204
    assert key not in stored_keys(app)
    assert usage(client, app, tenant, platform_key) == 0


def test_uploads_need_context_write(app, client, tenant, project):
    reader = bearer(make_api_key(app, tenant, scopes=["context:read"])[1])
    assert_problem(client.post(UPLOADS, headers=reader), 403, "forbidden")
    assert client.post(UPLOADS).status_code == 401
