"""Each method's request shape (method, URL, query, headers, body) and its typed result."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json

import httpx
import pytest

from ctxcloud_client import (
    Client,
    CommitPut,
    CtxcloudError,
    InvalidPath,
    Manifest,
    NotModified,
    Project,
    Revision,
    __version__,
)

PROJECT = {
    "id": "prj_1",
    "slug": "handbook",
    "name": "Handbook",
    "description": "",
    "metadata": {"team": "platform"},
    "revision": 3,
    "history_starts_at": 0,
    "created_at": "2026-11-25T18:00:00.000Z",
    "updated_at": "2026-11-25T18:00:00.000Z",
}
ENTRY = {
    "path": "docs/a.md",
    "size": 5,
    "sha256": hashlib.sha256(b"hello").hexdigest(),
    "content_type": "text/markdown",
    "metadata": {},
    "revision": 4,
    "updated_at": "2026-11-25T18:00:00.000Z",
    "etag": '"r4-abc"',
}
REVISION = {
    "revision": 4,
    "created_at": "2026-11-25T18:00:00.000Z",
    "actor": "api_key:key_1",
    "message": "why",
    "changes": [{"path": "docs/a.md", "action": "put"}],
}


def pagination(page: int, total_pages: int, total: int) -> dict[str, str]:
    info = {"total": total, "total_pages": total_pages, "page": page, "first_page": 1}
    info["last_page"] = total_pages
    if page < total_pages:
        info["next_page"] = page + 1
    return {"X-Pagination": json.dumps(info)}


def test_exactly_one_credential_form():
    with pytest.raises(ValueError, match="exactly one"):
        Client("http://x")
    with pytest.raises(ValueError, match="exactly one"):
        Client("http://x", api_key="a", token="b")
    with pytest.raises(ValueError, match="go together"):
        Client("http://x", client_id="a")
    with Client("http://x/", token="tok-SECRET") as client:
        assert client.base_url == "http://x"
        assert "tok-SECRET" not in repr(client)


def test_an_api_key_is_a_bearer_and_the_client_names_itself(api, client):
    route = api.get("/auth/whoami").respond(200, json={"type": "api_key", "id": "key_1"})
    assert client.whoami()["id"] == "key_1"
    request = route.calls.last.request
    assert str(request.url) == "http://ctx.test/api/v1/auth/whoami"
    assert request.headers["Authorization"] == "Bearer ctx_test_key"
    assert request.headers["User-Agent"] == f"ctxcloud-client/{__version__}"


def test_projects_are_listed_across_pages_lazily(api, client):
    first = [{**PROJECT, "id": f"prj_{n}"} for n in range(2)]
    second = [{**PROJECT, "id": "prj_2"}]
    route = api.get("/projects").mock(
        side_effect=[
            httpx.Response(200, json=first, headers=pagination(1, 2, 3)),
            httpx.Response(200, json=second, headers=pagination(2, 2, 3)),
        ]
    )
    projects = client.list_projects(page_size=2)
    assert route.call_count == 0  # nothing is asked before the first item is wanted
    assert next(projects).id == "prj_0"
    assert route.call_count == 1
    assert [p.id for p in projects] == ["prj_1", "prj_2"]
    assert [dict(call.request.url.params) for call in route.calls] == [
        {"page": "1", "page_size": "2"},
        {"page": "2", "page_size": "2"},
    ]


def test_a_list_without_pagination_header_is_one_page(api, client):
    api.get("/projects").respond(200, json=[])
    assert list(client.list_projects()) == []


def test_project_crud(api, client):
    created = api.post("/projects").respond(201, json=PROJECT)
    project = client.create_project("Handbook", slug="handbook", metadata={"team": "platform"})
    assert isinstance(project, Project) and project.slug == "handbook"
    assert project.created_at == datetime.datetime(2026, 11, 25, 18, tzinfo=datetime.UTC)
    assert json.loads(created.calls.last.request.content) == {
        "name": "Handbook",
        "slug": "handbook",
        "metadata": {"team": "platform"},
    }
    api.get("/projects/handbook").respond(200, json=PROJECT)
    assert client.get_project("handbook").revision == 3
    patched = api.patch("/projects/handbook").respond(200, json={**PROJECT, "name": "H"})
    assert client.update_project("handbook", name="H").name == "H"
    assert json.loads(patched.calls.last.request.content) == {"name": "H"}
    with pytest.raises(ValueError):
        client.update_project("handbook")
    deleted = api.delete("/projects/handbook").respond(204)
    assert client.delete_project("handbook") is None
    assert deleted.called


def test_a_project_reference_is_one_url_segment(api, client):
    route = api.get("/projects/a%2Fb").respond(200, json=PROJECT)
    client.get_project("a/b")
    assert route.called


def test_the_manifest_with_its_query_and_etag(api, client):
    body = {
        "project_id": "prj_1",
        "revision": 4,
        "entries": [{**ENTRY, "content": "hello"}],
        "total_size": 5,
        "content_truncated": False,
    }
    route = api.get("/projects/handbook/context").respond(200, json=body, headers={"ETag": '"m1"'})
    manifest = client.manifest(
        "handbook", revision=4, prefix="docs/", include_content=True, max_bytes=100
    )
    assert isinstance(manifest, Manifest)
    assert dict(route.calls.last.request.url.params) == {
        "revision": "4",
        "prefix": "docs/",
        "include_content": "true",
        "max_bytes": "100",
    }
    assert manifest.etag == '"m1"' and manifest.revision == 4 and manifest.total_size == 5
    (entry,) = manifest.entries
    assert (entry.path, entry.size, entry.content, entry.revision) == ("docs/a.md", 5, "hello", 4)
    assert manifest.get("docs/a.md") == entry and manifest.get("nope") is None
    assert manifest.paths == ["docs/a.md"] and len(manifest) == 1

    client.manifest("handbook")
    assert dict(route.calls.last.request.url.params) == {}


def test_an_unchanged_manifest_is_not_modified(api, client):
    route = api.get("/projects/handbook/context").respond(304, headers={"ETag": '"m1"'})
    result = client.manifest("handbook", if_none_match='"m1"')
    assert isinstance(result, NotModified) and not result and result.etag == '"m1"'
    assert route.calls.last.request.headers["If-None-Match"] == '"m1"'


def test_entry_paths_are_quoted_with_slashes_kept(api, client):
    route = api.get(url__regex=r"/entries/").respond(200, content=b"x")
    client.get_entry("handbook", "docs/ü ber/a?b#c%.md")
    raw = route.calls.last.request.url.raw_path.decode()
    assert raw == ("/api/v1/projects/handbook/context/entries/docs/%C3%BC%20ber/a%3Fb%23c%25.md")


@pytest.mark.parametrize("path", ["", "/abs", "a//b", "a/./b", "../x", "a/..", "a\\b", "a\nb"])
def test_paths_a_url_would_change_are_refused_before_sending(api, client, path):
    with pytest.raises(InvalidPath):
        client.get_entry("handbook", path)
    with pytest.raises(InvalidPath):
        client.delete_entry("handbook", path)
    assert not api.calls


def test_get_entry_returns_the_bytes_of_a_revision(api, client):
    route = api.get("/projects/handbook/context/entries/docs/a.md").respond(
        200,
        content=b"hello",
        headers={"Entry-SHA256": ENTRY["sha256"], "ETag": '"r4"', "Entry-Revision": "4"},
    )
    assert client.get_entry("handbook", "docs/a.md", revision=2) == b"hello"
    assert dict(route.calls.last.request.url.params) == {"revision": "2"}


def test_put_entry_from_bytes_sends_type_metadata_conditions_and_checksum(api, client):
    route = api.put("/projects/handbook/context/entries/docs/a.md").respond(
        201, json=ENTRY, headers={"ETag": '"r4-abc"'}
    )
    written = client.put_entry(
        "handbook",
        "docs/a.md",
        b"hello",
        content_type="text/markdown",
        metadata={"author": "ana"},
        if_match='"r3-x"',
    )
    request = route.calls.last.request
    assert request.content == b"hello"
    assert request.headers["Content-Type"] == "text/markdown"
    assert request.headers["Content-Length"] == "5"
    assert request.headers["Content-SHA256"] == hashlib.sha256(b"hello").hexdigest()
    assert json.loads(request.headers["Entry-Metadata"]) == {"author": "ana"}
    assert request.headers["If-Match"] == '"r3-x"'
    assert "If-None-Match" not in request.headers
    assert written.created and written.etag == '"r4-abc"' and written.revision == 4

    route.respond(200, json=ENTRY)
    written = client.put_entry("handbook", "docs/a.md", b"hello", if_none_match="*")
    request = route.calls.last.request
    assert request.headers["If-None-Match"] == "*" and "Content-Type" not in request.headers
    assert not written.created


def test_delete_entry(api, client):
    route = api.delete("/projects/handbook/context/entries/docs/a.md").respond(204)
    client.delete_entry("handbook", "docs/a.md", if_match='"r4"')
    assert route.calls.last.request.headers["If-Match"] == '"r4"'


def test_commit_sends_every_kind_of_put(api, client):
    route = api.post("/projects/handbook/context/commits").respond(201, json=REVISION)
    revision = client.commit(
        "handbook",
        put=[
            {"path": "a.md", "content": "# A\n", "content_type": "text/markdown"},
            CommitPut.binary("b.bin", b"\x00\x01", metadata={"k": 1}),
            CommitPut.upload("big.bin", "upl_1"),
        ],
        delete=["old.md"],
        message="why",
        parent_revision=3,
    )
    assert isinstance(revision, Revision) and revision.revision == 4
    assert revision.changes[0].path == "docs/a.md" and revision.actor == "api_key:key_1"
    assert json.loads(route.calls.last.request.content) == {
        "put": [
            {"path": "a.md", "content": "# A\n", "content_type": "text/markdown"},
            {
                "path": "b.bin",
                "content_base64": base64.b64encode(b"\x00\x01").decode(),
                "metadata": {"k": 1},
            },
            {"path": "big.bin", "upload_id": "upl_1"},
        ],
        "delete": ["old.md"],
        "message": "why",
        "parent_revision": 3,
    }


@pytest.mark.parametrize(
    "item",
    [{"path": "a"}, {"path": "a", "content": "x", "upload_id": "u"}, {"path": "a", "body": "x"}],
)
def test_a_put_item_says_one_thing(item, client, api):
    with pytest.raises(ValueError):
        client.commit("handbook", put=[item])
    assert not api.calls


def test_uploads_are_staged_then_sent_streamed(api, client):
    created = api.post("/projects/handbook/context/uploads").respond(
        201, json={"upload_id": "upl_1", "expires_at": "2026-11-25T19:00:00.000Z"}
    )
    upload = client.create_upload("handbook")
    assert upload.upload_id == "upl_1" and upload.expires_at.hour == 19
    assert created.calls.last.request.content == b""
    data = b"x" * 200_000
    digest = hashlib.sha256(data).hexdigest()
    sent = api.put("/projects/handbook/context/uploads/upl_1").respond(
        200, json={"upload_id": "upl_1", "size": len(data), "sha256": digest}
    )
    result = client.send_upload("handbook", "upl_1", iter([data[:100_000], data[100_000:]]))
    request = sent.calls.last.request
    assert request.headers["Transfer-Encoding"] == "chunked"
    assert "Content-SHA256" not in request.headers  # not known for an iterator
    assert (result.size, result.sha256) == (len(data), digest)
    client.send_upload("handbook", "upl_1", data, sha256=digest)
    assert sent.calls.last.request.headers["Content-SHA256"] == digest


def test_revisions_are_listed_across_pages_and_read_one_by_one(api, client):
    route = api.get("/projects/handbook/context/revisions").mock(
        side_effect=[
            httpx.Response(200, json=[REVISION], headers=pagination(1, 2, 2)),
            httpx.Response(200, json=[{**REVISION, "revision": 3}], headers=pagination(2, 2, 2)),
        ]
    )
    assert [r.revision for r in client.list_revisions("handbook", page_size=1)] == [4, 3]
    assert route.call_count == 2
    api.get("/projects/handbook/context/revisions/4").respond(200, json=REVISION)
    assert client.get_revision("handbook", 4).message == "why"


def feed(since: int, head: int, changes: list[tuple[int, str, str]]) -> dict:
    items = []
    for number, path, action in changes:
        item = {"revision": number, "path": path, "action": action}
        if action == "put":
            item.update(size=len(path), sha256="0" * 64)
        items.append(item)
    return {"from_revision": since, "revision": head, "history_starts_at": 0, "changes": items}


def test_changes_wait_once_and_read_every_page(api, client):
    route = api.get("/projects/handbook/context/changes").mock(
        side_effect=[
            httpx.Response(
                200,
                json=feed(3, 5, [(4, "a.md", "put"), (4, "b.md", "delete")]),
                headers=pagination(1, 2, 3),
            ),
            httpx.Response(200, json=feed(3, 5, [(5, "a.md", "put")]), headers=pagination(2, 2, 3)),
        ]
    )
    answer = client.changes("handbook", 3, wait=20, page_size=2)
    assert (answer.from_revision, answer.revision, len(answer)) == (3, 5, 3)
    assert [(c.revision, c.path, c.action) for c in answer] == [
        (4, "a.md", "put"),
        (4, "b.md", "delete"),
        (5, "a.md", "put"),
    ]
    assert (answer.changes[0].size, answer.changes[1].size) == (4, None)
    first, second = (call.request for call in route.calls)
    assert dict(first.url.params) == {"since": "3", "page": "1", "page_size": "2", "wait": "20"}
    assert "wait" not in second.url.params  # only the first page waits
    assert first.extensions["timeout"]["read"] == 50.0  # the wait and a margin, not 60 s flat


def test_a_wait_that_ends_with_nothing_is_an_empty_answer(api, client):
    api.get("/projects/handbook/context/changes").respond(200, json=feed(7, 7, []))
    answer = client.changes("handbook", 7, wait=1)
    assert not answer and answer.revision == 7


def test_a_pruned_history_is_an_error_with_its_code(api, client):
    api.get("/projects/handbook/context/changes").respond(
        410,
        json={"status": 410, "code": "history_pruned", "detail": "pruned", "request_id": "r9"},
    )
    with pytest.raises(CtxcloudError) as raised:
        client.changes("handbook", 1)
    assert (raised.value.status, raised.value.code, raised.value.request_id) == (
        410,
        "history_pruned",
        "r9",
    )
