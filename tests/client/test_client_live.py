"""The Python client (client/, distribution ctxcloud-client) against a real server: gunicorn
on the stack under test (embedded, or CTXCLOUD_TEST_STACK=production), data made here through
the services, everything else over HTTP through `ctxcloud_client.Client`."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from pathlib import Path

import ctxcloud_client as cc
import pytest
from ctxcloud_client import Client, CommitPut, Manifest, NotModified, diff_manifests
from ctxcloud_client.auth import Token

from tests.support.factories import make_api_key, make_tenant
from tests.support.oauth import make_oauth_client
from tests.support.server import Server, gunicorn

pytestmark = pytest.mark.server

DOC = Path(__file__).resolve().parents[2] / "docs" / "client.md"
BIG = 5 * 1024 * 1024 + 17  # ~5 MiB, not a whole number of chunks


def server_env(app_config: dict) -> dict[str, str]:
    """The settings of the in-process app, for gunicorn: the same database, data and storage."""
    return {f"CTXCLOUD_{name}": str(value) for name, value in app_config.items()}


@pytest.fixture
def server(app, app_config, tmp_path) -> Iterator[Server]:
    with gunicorn(server_env(app_config), tmp_path / "logs", workers=2) as served:
        yield served


@pytest.fixture
def live_tenant(app):
    return make_tenant(app, slug="acme", name="ACME")


@pytest.fixture
def api_key(app, live_tenant) -> str:
    return make_api_key(app, live_tenant, name="client-live")[1]


def test_projects_entries_commits_and_revisions(server, api_key, tmp_path):
    with Client(server.url, api_key=api_key) as ctx:
        project = ctx.create_project("Handbook", slug="handbook", metadata={"team": "docs"})
        ctx.create_project("Second")
        assert project.slug == "handbook" and project.revision == 0
        # Two pages of one project each: the iterator follows X-Pagination.
        assert [p.name for p in ctx.list_projects(page_size=1)] == ["Handbook", "Second"]
        assert ctx.update_project("handbook", description="How we work").description

        written = ctx.put_entry(
            "handbook", "docs/intro.md", b"# Intro\n", content_type="text/markdown"
        )
        assert written.created and written.revision == 1 and written.etag
        assert ctx.get_entry("handbook", "docs/intro.md") == b"# Intro\n"

        # A ~5 MiB file, streamed from disk with its checksum, and read back byte-exact.
        data = os.urandom(BIG)
        source = tmp_path / "big.bin"
        source.write_bytes(data)
        digest = hashlib.sha256(data).hexdigest()
        with source.open("rb") as file:
            big = ctx.put_entry("handbook", "data/big.bin", file, sha256=digest)
        assert (big.size, big.sha256) == (BIG, digest)
        dest = tmp_path / "out" / "big.bin"
        dest.parent.mkdir()
        downloaded = ctx.download_entry("handbook", "data/big.bin", dest)
        assert dest.read_bytes() == data and downloaded.sha256 == digest
        assert sorted(p.name for p in dest.parent.iterdir()) == ["big.bin"]
        with ctx.stream_entry("handbook", "data/big.bin") as stream:
            assert hashlib.sha256(b"".join(stream)).hexdigest() == digest
        # An iterator goes chunked (no Content-Length) and arrives whole.
        chunks = (bytes([n]) * 100_000 for n in range(30))
        chunked = ctx.put_entry("handbook", "data/chunked.bin", chunks)
        assert chunked.size == 3_000_000
        # A wrong checksum stores nothing.
        with pytest.raises(cc.ChecksumMismatch) as mismatch:
            ctx.put_entry("handbook", "data/bad.bin", b"abc", sha256="0" * 64)
        assert mismatch.value.status == 400 and mismatch.value.request_id

        # Conditional writes: a stale ETag, and create-only over an existing entry.
        ctx.put_entry(
            "handbook",
            "docs/intro.md",
            b"# Intro v2\n",
            content_type="text/markdown",
            if_match=written.etag,
        )
        with pytest.raises(cc.PreconditionFailed) as stale:
            ctx.put_entry("handbook", "docs/intro.md", b"# lost\n", if_match=written.etag)
        assert stale.value.status == 412 and stale.value.code == "precondition_failed"
        assert stale.value.request_id == stale.value.headers["X-Request-ID"]
        with pytest.raises(cc.PreconditionFailed):
            ctx.put_entry("handbook", "docs/intro.md", b"# lost\n", if_none_match="*")

        before = ctx.manifest("handbook")
        assert isinstance(before, Manifest)
        revision = ctx.commit(
            "handbook",
            put=[
                CommitPut.text(
                    "docs/adr/0001.md", "# Use PostgreSQL\n", content_type="text/markdown"
                ),
                CommitPut.binary("data/tiny.bin", b"\x00\x01\x02"),
            ],
            delete=["data/chunked.bin"],
            message="Record the decision",
            parent_revision=before.revision,
        )
        assert revision.message == "Record the decision"
        assert {(c.path, c.action) for c in revision.changes} == {
            ("docs/adr/0001.md", "put"),
            ("data/tiny.bin", "put"),
            ("data/chunked.bin", "delete"),
        }
        with pytest.raises(cc.Conflict):
            ctx.commit("handbook", put=[{"path": "x.md", "content": "x"}], parent_revision=1)

        after = ctx.manifest("handbook", prefix="docs/", include_content=True, max_bytes=4096)
        assert isinstance(after, Manifest) and after.revision == revision.revision
        assert after.get("docs/adr/0001.md").content == "# Use PostgreSQL\n"
        assert after.get("docs/intro.md").content == "# Intro v2\n"
        changed = ctx.manifest("handbook", if_none_match=before.etag)  # the head moved
        assert isinstance(changed, Manifest) and changed.revision == revision.revision
        head = ctx.manifest("handbook")
        assert isinstance(head, Manifest)
        assert isinstance(ctx.manifest("handbook", if_none_match=head.etag), NotModified)
        change = diff_manifests(before, head)
        assert change.added == ("data/tiny.bin", "docs/adr/0001.md")
        assert change.removed == ("data/chunked.bin",)
        old = ctx.manifest("handbook", revision=1)
        assert isinstance(old, Manifest) and old.paths == ["docs/intro.md"]
        assert ctx.get_entry("handbook", "docs/intro.md", revision=1) == b"# Intro\n"

        revisions = list(ctx.list_revisions("handbook", page_size=2))
        assert [r.revision for r in revisions] == list(range(revision.revision, 0, -1))
        assert ctx.get_revision("handbook", revision.revision).changes == revision.changes

        ctx.delete_entry("handbook", "data/tiny.bin")
        with pytest.raises(cc.NotFound) as missing:
            ctx.get_entry("handbook", "data/tiny.bin")
        error = missing.value
        assert (error.status, error.code) == (404, "not_found")
        assert re.fullmatch(r"[\w.-]{8,}", error.request_id or "")
        with pytest.raises(cc.InvalidPath) as invalid:  # the server's rule (a bidi control)
            ctx.put_entry("handbook", "docs/\u202etxt.md", b"x")
        assert invalid.value.status == 400 and invalid.value.request_id

        ctx.delete_project("Second".lower())
        assert [p.slug for p in ctx.list_projects()] == ["handbook"]


def test_client_credentials_get_reuse_and_renew_a_token(app, live_tenant, api_key, server):
    with Client(server.url, api_key=api_key) as owner:
        owner.create_project("Shared", slug="shared")
    client_id, client_secret = make_oauth_client(app, live_tenant)
    with Client(server.url, client_id=client_id, client_secret=client_secret) as ctx:
        me = ctx.whoami()
        assert (me["type"], me["id"]) == ("oauth_client", client_id)
        ctx.put_entry("shared", "notes.md", b"by a service\n", content_type="text/markdown")
        assert ctx.get_entry("shared", "notes.md") == b"by a service\n"
        assert [p.slug for p in ctx.list_projects()] == ["shared"]
        assert ctx.credential.fetches == 1  # one token for all of it
        # A token the service refuses (revoked, rotated keys) is replaced once, transparently.
        ctx.credential._token = Token("not-a-token", expires_at=float("inf"), scope="")
        assert ctx.whoami()["id"] == client_id
        assert ctx.credential.fetches == 2
        with pytest.raises(cc.Forbidden):  # the client lacks projects:write
            ctx.create_project("Nope")

    with Client(server.url, client_id=client_id, client_secret="wrong") as bad:
        with pytest.raises(cc.OAuthError) as refused:
            bad.whoami()
    assert refused.value.error == "invalid_client" and refused.value.status == 401
    scoped = Client(
        server.url, client_id=client_id, client_secret=client_secret, scope="tenant:admin"
    )
    with scoped, pytest.raises(cc.OAuthError) as too_wide:
        scoped.whoami()
    assert too_wide.value.error == "invalid_scope"


def test_the_client_page_example_runs(server, api_key, monkeypatch, tmp_path):
    """docs/client.md's example, as written, against the live server."""
    (code,) = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    monkeypatch.setenv("CTX_API_KEY", api_key)
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code.replace("http://localhost:8000", server.url), str(DOC), "exec"), namespace)
    assert (tmp_path / "handbook" / "docs" / "adr" / "0001.md").read_text() == "# Use PostgreSQL\n"


def test_a_staged_upload_commits_with_inline_entries_as_one_revision(server, api_key, tmp_path):
    """The client's staged uploads against the real server: a large file streamed from disk
    as an upload, and a small one inline, in one commit; byte-exact afterwards."""
    data = os.urandom(BIG)
    source = tmp_path / "upload.bin"
    source.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    with Client(server.url, api_key=api_key) as ctx:
        ctx.create_project("Staging", slug="staging")
        upload = ctx.create_upload("staging")
        with source.open("rb") as file:
            sent = ctx.send_upload("staging", upload.upload_id, file, sha256=digest)
        assert (sent.size, sent.sha256) == (BIG, digest)
        revision = ctx.commit(
            "staging",
            put=[
                {"path": "data/upload.bin", "upload_id": upload.upload_id},
                {"path": "notes/a.md", "content": "# a\n"},
            ],
            parent_revision=0,
        )
        assert revision.revision == 1
        assert ctx.get_entry("staging", "data/upload.bin") == data
        with pytest.raises(cc.Conflict):  # an upload becomes one entry, once
            ctx.commit("staging", put=[{"path": "again.bin", "upload_id": upload.upload_id}])
