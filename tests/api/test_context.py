"""The context API: manifest, entries (PUT/GET/HEAD/DELETE), commits and revisions (API.md)."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import random
import threading

import flask
import pytest

from tests.api.test_core import assert_problem
from tests.support.context import (
    context_url,
    create_project,
    entry_url,
    head_revision,
    project_url,
    put_entry,
    sha256,
    stored_keys,
    temp_files,
)
from tests.support.factories import bearer, make_api_key

P = "p"  # the project's slug in every test
COMMITS = f"{context_url(P)}/commits"
REVISIONS = f"{context_url(P)}/revisions"
KiB = 1024


@pytest.fixture
def auth(app, tenant) -> dict:
    return bearer(make_api_key(app, tenant)[1])


@pytest.fixture
def project(client, auth) -> dict:
    return create_project(client, auth, name="Project", slug=P)


def put(client, auth, path, data, expect=None, **headers):
    return put_entry(client, {**auth, **headers}, P, path, data, expect=expect)


def get(client, auth, path, **headers):
    return client.get(entry_url(P, path), headers={**auth, **headers})


def manifest(client, auth, expect=200, **query):
    response = client.get(context_url(P, **query), headers=auth)
    assert response.status_code == expect, response.get_data(as_text=True)
    return response.get_json()


def assert_nothing_stored(app, client, auth, revision_before: int, keys_before: set) -> None:
    """No new revision, no new stored object, no upload leftover."""
    assert head_revision(client, auth, P) == revision_before
    assert stored_keys(app) == keys_before
    assert temp_files(app) == []


# Manifest ------------------------------------------------------------------------------------


def test_empty_manifest(client, auth, project):
    response = client.get(context_url(P), headers=auth)
    assert response.status_code == 200
    assert response.get_json() == {
        "project_id": project["id"],
        "revision": 0,
        "entries": [],
        "total_size": 0,
    }
    assert response.headers["ETag"].startswith('"')


def test_manifest_lists_live_entries_by_path(client, auth, project):
    put(client, auth, "z.txt", b"zz", 201, **{"Content-Type": "text/plain"})
    put(client, auth, "docs/b.md", b"# b", 201, **{"Entry-Metadata": '{"author": "ana"}'})
    put(client, auth, "docs/a.md", b"", 201)
    put(client, auth, "gone", b"x", 201)
    assert client.delete(entry_url(P, "gone"), headers=auth).status_code == 204

    body = manifest(client, auth)
    assert body["project_id"] == project["id"]
    assert body["revision"] == 5
    assert [e["path"] for e in body["entries"]] == ["docs/a.md", "docs/b.md", "z.txt"]
    assert body["total_size"] == 5
    b = body["entries"][1]
    assert b["size"] == 3 and b["sha256"] == sha256(b"# b")
    assert b["content_type"] == "application/octet-stream"
    assert b["metadata"] == {"author": "ana"}
    assert b["revision"] == 2
    assert b["updated_at"].endswith("Z")
    z = body["entries"][2]
    assert z["content_type"] == "text/plain" and z["revision"] == 1
    assert body["entries"][0]["size"] == 0 and body["entries"][0]["sha256"] == sha256(b"")
    assert "content" not in b and "content_truncated" not in body


@pytest.mark.every_backend
def test_manifest_at_a_past_revision(client, auth, project):
    put(client, auth, "a", b"a1", 201)  # 1
    put(client, auth, "b", b"b1", 201)  # 2
    put(client, auth, "a", b"a22", 200)  # 3
    client.delete(entry_url(P, "b"), headers=auth)  # 4
    put(client, auth, "b", b"b333", 201)  # 5

    def state(revision):
        body = manifest(client, auth, revision=revision)
        assert body["revision"] == revision
        return {e["path"]: (e["size"], e["sha256"], e["revision"]) for e in body["entries"]}

    assert state(0) == {}
    assert state(1) == {"a": (2, sha256(b"a1"), 1)}
    assert state(2) == {"a": (2, sha256(b"a1"), 1), "b": (2, sha256(b"b1"), 2)}
    assert state(3) == {"a": (3, sha256(b"a22"), 3), "b": (2, sha256(b"b1"), 2)}
    assert state(4) == {"a": (3, sha256(b"a22"), 3)}
    assert state(5) == {"a": (3, sha256(b"a22"), 3), "b": (4, sha256(b"b333"), 5)}
    assert manifest(client, auth)["entries"] == manifest(client, auth, revision=5)["entries"]
    assert manifest(client, auth, revision=2)["total_size"] == 4


def test_manifest_revision_beyond_head_is_404_and_negative_is_422(client, auth, project):
    put(client, auth, "a", b"1", 201)
    assert_problem(client.get(context_url(P, revision=2), headers=auth), 404, "not_found")
    for bad in ("-1", "x", "1.5"):
        body = assert_problem(
            client.get(context_url(P, revision=bad), headers=auth), 422, "validation_error"
        )
        assert "revision" in body["errors"]


def test_manifest_prefix(client, auth, project):
    for path in ("docs/a.md", "docs/sub/b.md", "docsx", "doc", "src/docs/c", "a_b", "axb", "a%b"):
        put(client, auth, path, b"x", 201)

    def paths(prefix):
        return [e["path"] for e in manifest(client, auth, prefix=prefix)["entries"]]

    assert paths("docs/") == ["docs/a.md", "docs/sub/b.md"]
    assert paths("docs") == ["docs/a.md", "docs/sub/b.md", "docsx"]
    assert paths("docs/sub/") == ["docs/sub/b.md"]
    assert paths("nothing/") == []
    # Prefixes are literal: no SQL wildcards.
    assert paths("a_") == ["a_b"]
    assert paths("a%") == ["a%b"]
    assert manifest(client, auth, prefix="docs/")["total_size"] == 2
    # With a past revision too.
    assert [e["path"] for e in manifest(client, auth, prefix="docs/", revision=1)["entries"]] == [
        "docs/a.md"
    ]
    for bad in ("../", "docs/../", "/docs", "a\\b"):
        assert_problem(client.get(context_url(P, prefix=bad), headers=auth), 400, "invalid_path")


def test_manifest_include_content(client, auth, project):
    put(client, auth, "a.md", b"# Title\n", 201, **{"Content-Type": "text/markdown"})
    put(client, auth, "b.json", b'{"k": 1}', 201, **{"Content-Type": "application/json"})
    put(client, auth, "c.bin", b"\x00\x01\x02", 201)  # application/octet-stream
    put(
        client,
        auth,
        "d.txt",
        "héllo".encode("latin-1"),
        201,
        **{"Content-Type": "text/plain; charset=utf-8"},
    )
    put(client, auth, "e.txt", "ünï".encode(), 201, **{"Content-Type": "text/plain"})
    put(client, auth, "f.png", b"\x89PNG\r\n", 201, **{"Content-Type": "image/png"})

    body = manifest(client, auth, include_content="true")
    entries = {e["path"]: e for e in body["entries"]}
    assert entries["a.md"]["content"] == "# Title\n"
    assert entries["b.json"]["content"] == '{"k": 1}'
    assert entries["e.txt"]["content"] == "ünï"
    assert entries["c.bin"]["content_omitted"] == "not_text" and "content" not in entries["c.bin"]
    assert entries["f.png"]["content_omitted"] == "not_text"
    assert entries["d.txt"]["content_omitted"] == "not_utf8" and "content" not in entries["d.txt"]
    assert body["content_truncated"] is False
    for inlined in ("a.md", "b.json", "e.txt"):
        assert "content_omitted" not in entries[inlined]

    # A budget: text entries are inlined in path order while they fit.
    body = manifest(client, auth, include_content="true", max_bytes=10)
    entries = {e["path"]: e for e in body["entries"]}
    assert entries["a.md"]["content"] == "# Title\n"  # 8 bytes
    assert entries["b.json"]["content_omitted"] == "budget"  # 8 more would be 16
    assert entries["e.txt"]["content_omitted"] == "budget"  # 5 more would be 13
    assert entries["c.bin"]["content_omitted"] == "not_text"
    assert body["content_truncated"] is True

    body = manifest(client, auth, include_content="true", max_bytes=0)
    assert all("content" not in e for e in body["entries"])
    assert body["content_truncated"] is True

    # Without include_content nothing is inlined and nothing is flagged.
    body = manifest(client, auth, max_bytes=10)
    assert all("content" not in e and "content_omitted" not in e for e in body["entries"])
    for bad in ("-1", str(16 * 1024 * 1024 + 1), "x"):
        assert_problem(
            client.get(context_url(P, include_content="true", max_bytes=bad), headers=auth),
            422,
            "validation_error",
        )


@pytest.mark.every_backend
def test_manifest_include_content_at_a_past_revision(client, auth, project):
    put(client, auth, "a.txt", b"old", 201, **{"Content-Type": "text/plain"})
    put(client, auth, "a.txt", b"new", 200, **{"Content-Type": "text/plain"})
    body = manifest(client, auth, include_content="true", revision=1)
    assert body["entries"][0]["content"] == "old"


def test_manifest_etag_and_if_none_match(client, auth, project):
    put(client, auth, "a", b"1", 201)
    first = client.get(context_url(P), headers=auth)
    etag = first.headers["ETag"]
    again = client.get(context_url(P), headers={**auth, "If-None-Match": etag})
    assert again.status_code == 304 and again.data == b""
    assert again.headers["ETag"] == etag
    listed = client.get(context_url(P), headers={**auth, "If-None-Match": f'"x", {etag}'})
    assert listed.status_code == 304
    assert (
        client.get(context_url(P), headers={**auth, "If-None-Match": '"other"'}).status_code == 200
    )

    # Another query is another representation.
    prefixed = client.get(context_url(P, prefix="a"), headers={**auth, "If-None-Match": etag})
    assert prefixed.status_code == 200 and prefixed.headers["ETag"] != etag

    # A change makes the old tag stale; the past revision keeps its tag.
    put(client, auth, "b", b"2", 201)
    changed = client.get(context_url(P), headers={**auth, "If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["ETag"] != etag
    past = client.get(context_url(P, revision=1), headers=auth).headers["ETag"]
    assert (
        client.get(context_url(P, revision=1), headers={**auth, "If-None-Match": past}).status_code
        == 304
    )


def test_manifest_is_one_revision_even_when_a_commit_lands_while_it_is_read(
    client, auth, project, monkeypatch
):
    """Another client commits between the manifest's read of the project (its revision number)
    and its read of the entries: the body still shows exactly the revision it names."""
    from ctxcloud.plugins.context import projects

    real_resolve = projects.resolve
    landed = []

    def resolve_then_another_client_commits(actor, ref, **kwargs):
        found = real_resolve(actor, ref, **kwargs)
        if flask.request.path.endswith("/context") and not landed:  # the manifest only
            landed.append("started")
            writer = threading.Thread(
                target=lambda: landed.append(
                    commit(
                        client, auth, put=[{"path": "c", "content": "c"}], delete=["a"]
                    ).status_code
                )
            )
            writer.start()
            writer.join()
        return found

    monkeypatch.setattr(projects, "resolve", resolve_then_another_client_commits)
    for query in ({}, {"prefix": "a"}, {"include_content": "true"}):
        put(client, auth, "a", b"a", 201)
        before = head_revision(client, auth, P)
        landed.clear()
        body = manifest(client, auth, **query)
        assert landed == ["started", 201]  # the commit did land during the read
        assert body["revision"] == before
        assert "a" in [e["path"] for e in body["entries"]]  # deleted only after `before`
        assert all(e["revision"] <= before for e in body["entries"])
        assert body == manifest(client, auth, revision=before, **query)


# PUT -----------------------------------------------------------------------------------------


@pytest.mark.every_backend
def test_put_creates_then_replaces(client, auth, project):
    created = put(client, auth, "docs/a.md", b"# one", **{"Content-Type": "text/markdown"})
    assert created.status_code == 201
    body = created.get_json()
    assert body["path"] == "docs/a.md"
    assert body["size"] == 5 and body["sha256"] == sha256(b"# one")
    assert body["content_type"] == "text/markdown"
    assert body["metadata"] == {} and body["revision"] == 1
    assert body["updated_at"].endswith("Z")
    assert created.headers["ETag"] == body["etag"]

    replaced = put(client, auth, "docs/a.md", b"# two!", **{"Content-Type": "text/markdown"})
    assert replaced.status_code == 200
    assert replaced.get_json()["revision"] == 2 and replaced.get_json()["size"] == 6
    assert replaced.headers["ETag"] != created.headers["ETag"]
    assert get(client, auth, "docs/a.md").data == b"# two!"
    assert head_revision(client, auth, P) == 2

    # Recreated after a delete: 201 again.
    assert client.delete(entry_url(P, "docs/a.md"), headers=auth).status_code == 204
    assert put(client, auth, "docs/a.md", b"3").status_code == 201


def test_same_bytes_at_another_revision_get_another_etag(client, auth, project):
    first = put(client, auth, "a", b"same", 201).headers["ETag"]
    second = put(client, auth, "a", b"same", 200).headers["ETag"]
    assert first != second
    assert get(client, auth, "a").headers["ETag"] == second


def test_if_match(app, client, auth, project):
    etag = put(client, auth, "a", b"v1", 201).headers["ETag"]
    keys = stored_keys(app)
    for stale in ('"r9-0000000000000000"', "W/" + etag, '"nope"'):
        body = assert_problem(
            put(client, auth, "a", b"lost update", **{"If-Match": stale}),
            412,
            "precondition_failed",
        )
        assert body["detail"]
    assert_nothing_stored(app, client, auth, 1, keys)
    assert get(client, auth, "a").data == b"v1"

    ok = put(client, auth, "a", b"v2", **{"If-Match": etag})
    assert ok.status_code == 200
    assert_problem(put(client, auth, "a", b"v3", **{"If-Match": etag}), 412, "precondition_failed")
    listed = put(client, auth, "a", b"v3", **{"If-Match": f'"x", {ok.headers["ETag"]}'})
    assert listed.status_code == 200
    assert put(client, auth, "a", b"v4", **{"If-Match": "*"}).status_code == 200

    # If-Match on an absent entry (any tag, or *) fails.
    keys = stored_keys(app)
    assert_problem(put(client, auth, "new", b"x", **{"If-Match": "*"}), 412, "precondition_failed")
    assert_problem(put(client, auth, "new", b"x", **{"If-Match": etag}), 412, "precondition_failed")
    assert_nothing_stored(app, client, auth, 4, keys)


def test_if_none_match_star_creates_only(app, client, auth, project):
    created = put(client, auth, "a", b"first", **{"If-None-Match": "*"})
    assert created.status_code == 201
    keys = stored_keys(app)
    assert_problem(
        put(client, auth, "a", b"second", **{"If-None-Match": "*"}), 412, "precondition_failed"
    )
    assert_problem(
        put(client, auth, "a", b"second", **{"If-None-Match": created.headers["ETag"]}),
        412,
        "precondition_failed",
    )
    assert_nothing_stored(app, client, auth, 1, keys)
    assert get(client, auth, "a").data == b"first"
    assert put(client, auth, "a", b"third", **{"If-None-Match": '"other"'}).status_code == 200


@pytest.mark.every_backend
def test_content_sha256(app, client, auth, project):
    data = os.urandom(5000)
    ok = put(client, auth, "a", data, **{"Content-SHA256": sha256(data).upper()})
    assert ok.status_code == 201
    keys = stored_keys(app)
    for path in ("a", "b"):  # a replacement and a new entry
        body = assert_problem(
            put(client, auth, path, data + b"!", **{"Content-SHA256": sha256(data)}),
            400,
            "checksum_mismatch",
        )
        assert "SHA-256" in body["detail"]
    assert_nothing_stored(app, client, auth, 1, keys)
    assert get(client, auth, "a").data == data
    assert_problem(get(client, auth, "b"), 404, "not_found")
    for malformed in ("abc", "z" * 64, sha256(data) + "00"):
        assert_problem(
            put(client, auth, "a", data, **{"Content-SHA256": malformed}), 400, "bad_request"
        )
    assert_nothing_stored(app, client, auth, 1, keys)


INVALID_PATHS = [
    "",
    "/abs",
    "//abs",
    "..",
    ".",
    "a/..",
    "../a",
    "a/../b",
    "a/./b",
    "./a",
    "a//b",
    "a/",
    "a\\b",
    "\\a",
    "a\x00b",
    "a\nb",
    "a\rb",
    "a\tb",
    "a\x1fb",
    "a\x7fb",
    "x" * 1025,
    "é" * 513,  # 513 characters, 1026 bytes
]


@pytest.mark.parametrize("path", INVALID_PATHS, ids=repr)
def test_invalid_paths_are_400_invalid_path(app, client, auth, project, path):
    keys = stored_keys(app)
    url = entry_url(P, path)
    assert_problem(client.put(url, data=b"x", headers=auth), 400, "invalid_path")
    assert_problem(client.get(url, headers=auth), 400, "invalid_path")
    assert client.head(url, headers=auth).status_code == 400
    assert_problem(client.delete(url, headers=auth), 400, "invalid_path")
    assert_nothing_stored(app, client, auth, 0, keys)


@pytest.mark.parametrize(
    "raw",
    [
        "a/%2e%2e/b",
        "%2e%2e",
        "%2E%2E/x",
        "a/%2e",
        "a%2F..%2Fb",
        "%2Fabs",
        "a%5Cb",
        "a%00b",
        "a%0Ab",
    ],
)
def test_percent_encoded_bad_paths_are_400_invalid_path(app, client, auth, project, raw):
    url = f"{project_url(P)}/context/entries/{raw}"
    assert_problem(client.put(url, data=b"x", headers=auth), 400, "invalid_path")
    assert_problem(client.get(url, headers=auth), 400, "invalid_path")
    assert manifest(client, auth)["entries"] == []


def test_path_that_is_not_utf8_is_400_invalid_path(client, auth, project):
    # What a WSGI server passes for ".../entries/a%FFb": PATH_INFO holds the raw bytes as
    # latin-1 (the werkzeug test client would decode them itself, so set it directly).
    path_info = f"{project_url(P)}/context/entries/a\xffb"
    response = client.put("/", data=b"x", headers=auth, environ_overrides={"PATH_INFO": path_info})
    body = assert_problem(response, 400, "invalid_path")
    assert "UTF-8" in body["detail"]
    assert manifest(client, auth)["entries"] == []
    # U+FFFD sent as its own UTF-8 bytes is a valid path like any other.
    put(client, auth, "a\ufffdb", b"x", 201)


@pytest.mark.parametrize(
    "path",
    [
        "a",
        "docs/adr/0001-use-postgres.md",
        "Ünïcode/日本語/файл.txt",
        "spaces in/a name.txt",
        ".hidden/.env",
        "...",
        "a..b/c.",
        "q?x=1#frag",
        "per%cent",
        "x" * 1024,
        "é" * 512,
    ],
    ids=repr,
)
def test_valid_unusual_paths_round_trip(client, auth, project, path):
    put(client, auth, path, path.encode(), 201)
    assert get(client, auth, path).data == path.encode()
    assert [e["path"] for e in manifest(client, auth)["entries"]] == [path]
    assert client.delete(entry_url(P, path), headers=auth).status_code == 204


@pytest.mark.every_backend
@pytest.mark.parametrize(
    "data",
    [
        b"",
        bytes(range(256)) * 4,
        b"\xff\xfe\xfd not utf-8 \xc3\x28",
        b"\x00" * 1000,
        "text with ünïcode\r\n\r\n".encode(),
        b"a=1&b=2",
    ],
    ids=["empty", "all-bytes", "invalid-utf8", "nuls", "crlf", "formlike"],
)
def test_bodies_are_stored_byte_exact(client, auth, project, data):
    body = put(client, auth, "blob", data, 201).get_json()
    assert body["size"] == len(data) and body["sha256"] == sha256(data)
    response = get(client, auth, "blob")
    assert response.status_code == 200
    assert response.data == data
    assert response.headers["Content-Length"] == str(len(data))


@pytest.mark.parametrize(
    "content_type",
    [
        "text/markdown; charset=utf-8",
        "application/json",
        "image/png",
        # With a parameter: meant (bare, it is curl -d's default: tests/api/test_entry_paths.py).
        "application/x-www-form-urlencoded; charset=utf-8",
        "multipart/form-data; boundary=xyz",
        "text/plain",
    ],
)
def test_content_type_is_kept_and_the_body_is_never_parsed(client, auth, project, content_type):
    data = b"a=1&b=2\r\n--xyz\r\nContent-Disposition: form-data; name=f\r\n\r\nv\r\n--xyz--\r\n"
    put(client, auth, "e", data, 201, **{"Content-Type": content_type})
    response = get(client, auth, "e")
    assert response.headers["Content-Type"] == content_type
    assert response.data == data
    assert manifest(client, auth)["entries"][0]["content_type"] == content_type


def test_content_type_defaults_to_octet_stream(client, auth, project):
    response = client.put(entry_url(P, "e"), input_stream=io.BytesIO(b"x"), headers=auth)
    assert response.status_code == 201
    assert response.get_json()["content_type"] == "application/octet-stream"
    assert get(client, auth, "e").headers["Content-Type"] == "application/octet-stream"


def test_entry_metadata_header(app, client, auth, project):
    meta = {"author": "ana", "tags": ["adr"], "n": 1, "nested": {"ok": True}}
    response = put(client, auth, "a", b"x", 201, **{"Entry-Metadata": json.dumps(meta)})
    assert response.get_json()["metadata"] == meta
    assert manifest(client, auth)["entries"][0]["metadata"] == meta
    assert json.loads(get(client, auth, "a").headers["Entry-Metadata"]) == meta

    keys = stored_keys(app)
    for bad in ("[1, 2]", '"text"', "42", "null", json.dumps({"k": "v" * 9000})):
        body = assert_problem(
            put(client, auth, "a", b"y", **{"Entry-Metadata": bad}), 422, "validation_error"
        )
        assert "Entry-Metadata" in body["errors"]
    # Not JSON at all: the strict reader's 400 (tests/api/test_bad_json.py has every rule).
    response = put(client, auth, "a", b"y", **{"Entry-Metadata": "{not json"})
    assert assert_problem(response, 400, "invalid_json")["rule"] == "syntax"
    assert_nothing_stored(app, client, auth, 1, keys)
    # A replacement without the header has no metadata.
    assert put(client, auth, "a", b"z", 200).get_json()["metadata"] == {}


def test_bad_content_type_is_422(app, client, auth, project):
    body = assert_problem(
        put(client, auth, "a", b"x", **{"Content-Type": "text/" + "x" * 300}),
        422,
        "validation_error",
    )
    assert "Content-Type" in body["errors"]
    assert manifest(client, auth)["entries"] == []


# GET / HEAD ----------------------------------------------------------------------------------


def test_get_and_head_headers(client, auth, project):
    data = b"hello world"
    etag = put(
        client,
        auth,
        "a.txt",
        data,
        201,
        **{"Content-Type": "text/plain", "Entry-Metadata": '{"k":"v"}'},
    ).headers["ETag"]
    response = get(client, auth, "a.txt")
    assert response.status_code == 200
    assert response.data == data
    assert response.headers["Content-Length"] == "11"
    assert response.headers["Accept-Ranges"] == "bytes"
    assert response.headers["ETag"] == etag
    assert response.headers["Content-Type"] == "text/plain"
    assert response.headers["Entry-Revision"] == "1"
    assert response.headers["Entry-SHA256"] == sha256(data)

    head = client.head(entry_url(P, "a.txt"), headers=auth)
    assert head.status_code == 200 and head.data == b""
    for name in ("Content-Length", "Accept-Ranges", "ETag", "Content-Type", "Entry-Revision"):
        assert head.headers[name] == response.headers[name], name

    not_modified = get(client, auth, "a.txt", **{"If-None-Match": etag})
    assert not_modified.status_code == 304 and not_modified.data == b""
    assert not_modified.headers["ETag"] == etag
    assert get(client, auth, "a.txt", **{"If-None-Match": "*"}).status_code == 304
    assert get(client, auth, "a.txt", **{"If-None-Match": "W/" + etag}).status_code == 304
    assert get(client, auth, "a.txt", **{"If-None-Match": '"stale"'}).status_code == 200
    head_304 = client.head(entry_url(P, "a.txt"), headers={**auth, "If-None-Match": etag})
    assert head_304.status_code == 304


def test_missing_entry_is_404(client, auth, project):
    assert_problem(get(client, auth, "nope"), 404, "not_found")
    assert client.head(entry_url(P, "nope"), headers=auth).status_code == 404
    put(client, auth, "dir/file", b"x", 201)
    assert_problem(get(client, auth, "dir"), 404, "not_found")


# Ranges --------------------------------------------------------------------------------------

BIG = random.Random(4).randbytes(200 * KiB + 123)  # four 64 KiB segments, the last partial
N = len(BIG)


@pytest.fixture
def big(client, auth, project) -> str:
    return put(client, auth, "big.bin", BIG, 201).headers["ETag"]


@pytest.mark.every_backend
@pytest.mark.parametrize(
    ("header", "start", "end"),
    [
        ("bytes=0-0", 0, 0),
        ("bytes=0-99", 0, 99),
        ("bytes=100-199", 100, 199),
        ("bytes=65535-65536", 65535, 65536),  # across the first segment edge
        ("bytes=65530-65545", 65530, 65545),
        ("bytes=65536-131071", 65536, 131071),  # exactly the second segment
        ("bytes=60000-140000", 60000, 140000),  # across two edges
        ("bytes=131071-196609", 131071, 196609),
        ("bytes=196608-", 196608, N - 1),  # the final, partial segment
        ("bytes=150000-", 150000, N - 1),  # open
        ("bytes=-1000", N - 1000, N - 1),  # suffix
        ("bytes=-70000", N - 70000, N - 1),  # suffix across an edge
        (f"bytes=-{N + 50}", 0, N - 1),  # suffix longer than the entry
        (f"bytes={N - 1}-{N + 1000}", N - 1, N - 1),  # end clamped
        ("bytes=0-", 0, N - 1),
    ],
)
def test_range_reads(client, auth, big, header, start, end):
    response = get(client, auth, "big.bin", Range=header)
    assert response.status_code == 206
    assert response.headers["Content-Range"] == f"bytes {start}-{end}/{N}"
    assert response.headers["Content-Length"] == str(end - start + 1)
    assert response.headers["ETag"] == big
    assert response.data == BIG[start : end + 1]


@pytest.mark.parametrize("header", [f"bytes={N}-", f"bytes={N + 10}-{N + 20}", "bytes=-0"])
def test_unsatisfiable_range_is_416(client, auth, big, header):
    response = get(client, auth, "big.bin", Range=header)
    assert_problem(response, 416, "range_not_satisfiable")
    assert response.headers["Content-Range"] == f"bytes */{N}"


@pytest.mark.parametrize(
    "header",
    [
        "bytes=0-1,5-6",
        "bytes=0-10, 100-",
        "lines=1-2",
        "bytes=x-y",
        "bytes=-",
        "bytes=10-5",
        "bytes=\u0661-\u0662",  # Arabic-Indic digits
        "bytes=" + "9" * 5000 + "-",
    ],
    ids=lambda header: header[:20],
)
def test_multi_or_unsupported_range_gets_the_whole_entry(client, auth, big, header):
    response = get(client, auth, "big.bin", Range=header)
    assert response.status_code == 200
    assert "Content-Range" not in response.headers
    assert response.data == BIG


def test_if_range(client, auth, big):
    current = get(client, auth, "big.bin", Range="bytes=10-19", **{"If-Range": big})
    assert current.status_code == 206 and current.data == BIG[10:20]
    stale = get(client, auth, "big.bin", Range="bytes=10-19", **{"If-Range": '"r0-stale"'})
    assert stale.status_code == 200 and stale.data == BIG
    put(client, auth, "big.bin", b"changed", 200)
    old = get(client, auth, "big.bin", Range="bytes=0-1", **{"If-Range": big})
    assert old.status_code == 200 and old.data == b"changed"


def test_range_on_a_small_and_an_empty_entry(client, auth, project):
    put(client, auth, "s", b"0123456789", 201)
    response = get(client, auth, "s", Range="bytes=3-5")
    assert response.status_code == 206 and response.data == b"345"
    assert response.headers["Content-Range"] == "bytes 3-5/10"
    put(client, auth, "empty", b"", 201)
    response = get(client, auth, "empty", Range="bytes=0-")
    assert_problem(response, 416, "range_not_satisfiable")
    assert response.headers["Content-Range"] == "bytes */0"
    assert get(client, auth, "empty").data == b""


@pytest.mark.every_backend
def test_range_of_a_past_revision(client, auth, big):
    put(client, auth, "big.bin", b"short now", 200)
    response = client.get(
        entry_url(P, "big.bin", revision=1), headers={**auth, "Range": "bytes=70000-70009"}
    )
    assert response.status_code == 206 and response.data == BIG[70000:70010]


# Past revisions --------------------------------------------------------------------------------


@pytest.mark.every_backend
def test_reads_at_a_revision(client, auth, project):
    v1 = put(client, auth, "a", b"one", 201).headers["ETag"]  # 1
    put(client, auth, "other", b"x", 201)  # 2
    v3 = put(client, auth, "a", b"three", 200).headers["ETag"]  # 3
    client.delete(entry_url(P, "a"), headers=auth)  # 4

    def read(revision):
        return client.get(entry_url(P, "a", revision=revision), headers=auth)

    assert read(1).data == b"one" and read(1).headers["ETag"] == v1
    assert read(2).data == b"one"
    assert read(3).data == b"three" and read(3).headers["ETag"] == v3
    assert read(3).headers["Entry-Revision"] == "3"
    assert_problem(read(0), 404, "not_found")
    assert_problem(read(4), 404, "not_found")  # deleted at 4
    assert_problem(get(client, auth, "a"), 404, "not_found")
    assert_problem(read(5), 404, "not_found")  # beyond the head
    head = client.head(entry_url(P, "a", revision=1), headers=auth)
    assert head.status_code == 200 and head.headers["Content-Length"] == "3"
    for bad in ("-1", "x"):
        body = assert_problem(read(bad), 422, "validation_error")
        assert "revision" in body["errors"]


# DELETE --------------------------------------------------------------------------------------


@pytest.mark.every_backend
def test_delete(app, client, auth, project):
    etag = put(client, auth, "a", b"x", 201).headers["ETag"]
    assert_problem(
        client.delete(entry_url(P, "a"), headers={**auth, "If-Match": '"stale"'}),
        412,
        "precondition_failed",
    )
    assert head_revision(client, auth, P) == 1
    response = client.delete(entry_url(P, "a"), headers={**auth, "If-Match": etag})
    assert response.status_code == 204 and response.data == b""
    assert head_revision(client, auth, P) == 2
    assert_problem(get(client, auth, "a"), 404, "not_found")
    assert_problem(client.delete(entry_url(P, "a"), headers=auth), 404, "not_found")
    assert_problem(client.delete(entry_url(P, "never"), headers=auth), 404, "not_found")
    assert head_revision(client, auth, P) == 2
    detail = client.get(f"{REVISIONS}/2", headers=auth).get_json()
    assert detail["changes"] == [{"path": "a", "action": "delete"}]
    # The deleted version stays readable in the past.
    assert client.get(entry_url(P, "a", revision=1), headers=auth).data == b"x"


# Commits -------------------------------------------------------------------------------------


def commit(client, auth, **body):
    return client.post(COMMITS, json=body, headers=auth)


@pytest.mark.every_backend
def test_commit_applies_puts_and_deletes_as_one_revision(client, auth, project):
    put(client, auth, "old.md", b"old", 201)
    put(client, auth, "keep.md", b"keep", 201)
    binary = bytes(range(256))
    response = commit(
        client,
        auth,
        message="Record the decision",
        parent_revision=2,
        put=[
            {"path": "docs/adr.md", "content": "# ADR ü\n", "content_type": "text/markdown"},
            {"path": "img/logo.bin", "content_base64": base64.b64encode(binary).decode()},
            {"path": "plain.txt", "content": "p", "metadata": {"author": "ana"}},
            {"path": "keep.md", "content": "kept, changed"},
        ],
        delete=["old.md"],
    )
    assert response.status_code == 201, response.get_data(as_text=True)
    body = response.get_json()
    assert body["revision"] == 3
    assert body["message"] == "Record the decision"
    assert body["actor"]
    assert body["created_at"].endswith("Z")
    assert sorted((c["path"], c["action"]) for c in body["changes"]) == [
        ("docs/adr.md", "put"),
        ("img/logo.bin", "put"),
        ("keep.md", "put"),
        ("old.md", "delete"),
        ("plain.txt", "put"),
    ]
    entries = {e["path"]: e for e in manifest(client, auth)["entries"]}
    assert sorted(entries) == ["docs/adr.md", "img/logo.bin", "keep.md", "plain.txt"]
    assert all(e["revision"] == 3 for e in entries.values())
    assert entries["docs/adr.md"]["content_type"] == "text/markdown"
    assert entries["img/logo.bin"]["content_type"] == "application/octet-stream"
    assert entries["plain.txt"]["content_type"].startswith("text/plain")
    assert entries["plain.txt"]["metadata"] == {"author": "ana"}
    assert get(client, auth, "docs/adr.md").data == "# ADR ü\n".encode()
    assert get(client, auth, "img/logo.bin").data == binary
    assert get(client, auth, "keep.md").data == b"kept, changed"
    assert head_revision(client, auth, P) == 3
    # A commit of deletes only, and one of puts only.
    assert commit(client, auth, delete=["plain.txt"]).get_json()["revision"] == 4
    assert commit(client, auth, put=[{"path": "n", "content": ""}]).get_json()["revision"] == 5
    assert get(client, auth, "n").data == b""


def assert_commit_refused(app, client, auth, response, status, code, revision, keys):
    body = assert_problem(response, status, code)
    assert_nothing_stored(app, client, auth, revision, keys)
    return body


def test_commit_with_stale_parent_revision_is_409(app, client, auth, project):
    put(client, auth, "a", b"1", 201)
    put(client, auth, "a", b"2", 200)
    keys = stored_keys(app)
    for parent in (0, 1, 3):
        assert_commit_refused(
            app,
            client,
            auth,
            commit(client, auth, parent_revision=parent, put=[{"path": "b", "content": "x"}]),
            409,
            "conflict",
            2,
            keys,
        )
    assert (
        commit(client, auth, parent_revision=2, put=[{"path": "b", "content": "x"}]).status_code
        == 201
    )


def test_commit_deleting_an_absent_entry_changes_nothing(app, client, auth, project):
    put(client, auth, "a", b"1", 201)
    keys = stored_keys(app)
    body = assert_commit_refused(
        app,
        client,
        auth,
        commit(client, auth, put=[{"path": "b", "content": "new"}], delete=["a", "missing"]),
        409,
        "conflict",
        1,
        keys,
    )
    assert "missing" in body["detail"]
    assert get(client, auth, "a").data == b"1"
    assert_problem(get(client, auth, "b"), 404, "not_found")


@pytest.mark.every_backend
def test_commit_with_a_bad_item_changes_nothing(app, client, auth, project):
    put(client, auth, "a", b"1", 201)
    keys = stored_keys(app)
    good = {"path": "good", "content": "fine"}
    cases = [
        ([good, {"path": "../escape", "content": "x"}], 400, "invalid_path"),
        ([good, {"path": "", "content": "x"}], 400, "invalid_path"),
        ([good, {"path": "a//b", "content": "x"}], 400, "invalid_path"),
        ([good, {"path": "x", "content": "y", "content_base64": "eQ=="}], 422, "validation_error"),
        ([good, {"path": "x"}], 422, "validation_error"),
        ([good, {"path": "x", "content_base64": "not base64!"}], 422, "validation_error"),
        ([good, {"path": "x", "content_base64": "YQ"}], 422, "validation_error"),  # bad padding
        ([good, {"path": "x", "content": 5}], 422, "validation_error"),
        ([good, {"content": "no path"}], 422, "validation_error"),
        ([good, {"path": "x", "content": "y", "bogus": 1}], 422, "validation_error"),
        ([good, {"path": "x", "content": "y", "metadata": [1]}], 422, "validation_error"),
        ([good, {"path": "x", "content": "y", "content_type": ""}], 422, "validation_error"),
    ]
    for puts, status, code in cases:
        response = commit(client, auth, put=puts)
        assert_commit_refused(app, client, auth, response, status, code, 1, keys)
    assert_problem(get(client, auth, "good"), 404, "not_found")


def test_commit_validation_errors_name_the_item(client, auth, project):
    body = assert_problem(
        commit(client, auth, put=[{"path": "x", "content": "y", "content_base64": "eQ=="}]),
        422,
        "validation_error",
    )
    assert "put" in body["errors"]
    body = assert_problem(
        commit(client, auth, put=[{"path": "x", "content_base64": "%%%"}]), 422, "validation_error"
    )
    assert "put" in body["errors"]


@pytest.mark.parametrize(
    "body",
    [
        {"put": [{"path": "a", "content": "1"}, {"path": "a", "content": "2"}]},
        {"put": [{"path": "a", "content": "1"}], "delete": ["a"]},
        {"delete": ["a", "a"]},
    ],
)
def test_commit_with_duplicate_paths_is_422(app, client, auth, project, body):
    put(client, auth, "a", b"0", 201)
    keys = stored_keys(app)
    response = client.post(COMMITS, json=body, headers=auth)
    errors = assert_commit_refused(app, client, auth, response, 422, "validation_error", 1, keys)
    assert '"a"' in json.dumps(errors["errors"])


@pytest.mark.parametrize(
    "body",
    [{}, {"put": [], "delete": []}, {"message": "nothing"}, {"bogus": 1}, {"put": "x"}, []],
)
def test_empty_or_malformed_commit_is_422(app, client, auth, project, body):
    response = client.post(COMMITS, json=body, headers=auth)
    assert_commit_refused(app, client, auth, response, 422, "validation_error", 0, set())


def test_commit_to_unknown_project_is_404(client, auth, project):
    response = client.post(
        f"{context_url('nope')}/commits",
        json={"put": [{"path": "a", "content": "x"}]},
        headers=auth,
    )
    assert_problem(response, 404, "not_found")


# Revisions -----------------------------------------------------------------------------------


@pytest.mark.every_backend
def test_revisions_list_and_detail(client, auth, project):
    put(client, auth, "a", b"1", 201)
    put(client, auth, "b", b"2", 201)
    commit(client, auth, message="both", put=[{"path": "a", "content": "3"}], delete=["b"])
    client.delete(entry_url(P, "a"), headers=auth)
    for i in range(3):
        put(client, auth, f"n{i}", b"x", 201)

    response = client.get(REVISIONS, headers=auth)
    assert response.status_code == 200
    listed = response.get_json()
    assert [r["revision"] for r in listed] == [7, 6, 5, 4, 3, 2, 1]
    assert json.loads(response.headers["X-Pagination"])["total"] == 7
    third = listed[4]
    assert third["message"] == "both"
    assert sorted((c["path"], c["action"]) for c in third["changes"]) == [
        ("a", "put"),
        ("b", "delete"),
    ]
    assert listed[3]["changes"] == [{"path": "a", "action": "delete"}]
    assert listed[-1]["changes"] == [{"path": "a", "action": "put"}]
    assert all(r["actor"] and r["created_at"].endswith("Z") for r in listed)

    page = client.get(f"{REVISIONS}?page=2&page_size=3", headers=auth)
    assert [r["revision"] for r in page.get_json()] == [4, 3, 2]
    pagination = json.loads(page.headers["X-Pagination"])
    assert pagination["total_pages"] == 3 and pagination["page"] == 2
    assert client.get(f"{REVISIONS}?page_size=1000", headers=auth).status_code == 200
    assert_problem(client.get(f"{REVISIONS}?page_size=1001", headers=auth), 422, "validation_error")

    detail = client.get(f"{REVISIONS}/3", headers=auth)
    assert detail.status_code == 200 and detail.get_json() == third
    for missing in ("0", "8", "999999"):
        assert_problem(client.get(f"{REVISIONS}/{missing}", headers=auth), 404, "not_found")
    assert client.get(f"{REVISIONS}/-1", headers=auth).status_code == 404
    assert_problem(client.get(f"{context_url('nope')}/revisions", headers=auth), 404, "not_found")


# Streaming bodies: short, too large, chunked ---------------------------------------------------


class ReadTracker(io.RawIOBase):
    """A request body that counts how much of it the server read."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:  # the werkzeug test client measures the stream
        return True

    def tell(self) -> int:
        return self._data.tell()

    def seek(self, *args) -> int:
        return self._data.seek(*args)

    def readinto(self, buffer) -> int:
        count = self._data.readinto(buffer)
        self.read_bytes += count
        return count


@pytest.mark.every_backend
def test_body_shorter_than_content_length_is_400_and_stores_nothing(app, client, auth, project):
    put(client, auth, "a", b"original", 201)
    keys = stored_keys(app)
    for path in ("a", "b"):
        response = client.put(
            entry_url(P, path),
            input_stream=io.BytesIO(b"x" * 3000),
            headers=auth,
            environ_overrides={"CONTENT_LENGTH": "10000"},
        )
        assert_problem(response, 400, "bad_request")
    assert_nothing_stored(app, client, auth, 1, keys)
    assert get(client, auth, "a").data == b"original"


@pytest.fixture
def small_limit(app_config):
    app_config["MAX_ENTRY_BYTES"] = 1000


def test_declared_length_over_the_limit_is_413_before_reading(
    small_limit, app, client, auth, project
):
    body = ReadTracker(b"x" * 1001)
    response = client.put(entry_url(P, "a"), input_stream=body, headers=auth)
    problem = assert_problem(response, 413, "entry_too_large")
    assert "1000" in problem["detail"]
    assert body.read_bytes == 0
    assert_nothing_stored(app, client, auth, 0, set())
    # At the limit is fine.
    assert put(client, auth, "a", b"x" * 1000).status_code == 201


@pytest.mark.every_backend
def test_chunked_body_over_the_limit_is_413_while_streaming(
    small_limit, app, client, auth, project
):
    def chunked(data: bytes):
        return client.put(
            entry_url(P, "a"),
            input_stream=ReadTracker(data),
            headers=auth,
            # What gunicorn passes for Transfer-Encoding: chunked: no length, terminated input.
            environ_overrides={"HTTP_TRANSFER_ENCODING": "chunked", "wsgi.input_terminated": True},
        )

    assert_problem(chunked(b"x" * 5000), 413, "entry_too_large")
    assert_problem(chunked(b"x" * 1001), 413, "entry_too_large")
    assert_nothing_stored(app, client, auth, 0, set())
    ok = chunked(b"y" * 1000)
    assert ok.status_code == 201 and ok.get_json()["size"] == 1000
    assert get(client, auth, "a").data == b"y" * 1000


class Generated(io.RawIOBase):
    """`size` bytes made as they are read (a different MiB each time), with their SHA-256.

    Seekable only as far as the werkzeug test client needs to measure it (to the end and back).
    """

    def __init__(self, size: int) -> None:
        self.size, self.made, self.position = size, 0, 0
        self.digest = hashlib.sha256()
        self.seed = os.urandom(KiB * KiB)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self.position = offset + (self.size if whence == io.SEEK_END else 0)
        return self.position

    def readinto(self, buffer) -> int:
        assert self.position == self.made, "read from where the bytes were made only"
        count = min(len(buffer), self.size - self.made, len(self.seed))
        piece = hashlib.sha256(self.digest.digest()).digest() + self.seed[32:count]
        buffer[:count] = piece[:count]
        self.digest.update(piece[:count])
        self.made += count
        self.position += count
        return count


@pytest.mark.every_backend
def test_64_mib_up_and_down_streamed_byte_exact(app, client, auth, project):
    size = 64 * KiB * KiB
    body = Generated(size)
    created = client.put(
        entry_url(P, "big.bin"),
        input_stream=body,
        headers=auth,
    )
    assert created.status_code == 201, created.get_json()
    assert created.get_json()["size"] == size
    response = client.get(entry_url(P, "big.bin"), headers=auth, buffered=False)
    assert response.status_code == 200 and response.content_length == size
    digest, largest, received = hashlib.sha256(), 0, 0
    for chunk in response.response:  # the body as the server streams it, piece by piece
        digest.update(chunk)
        largest, received = max(largest, len(chunk)), received + len(chunk)
    response.close()
    assert (received, digest.hexdigest()) == (size, body.digest.hexdigest())
    assert largest <= KiB * KiB  # streamed in bounded pieces, never the whole entry at once


def test_commit_entry_over_the_limit_is_413(small_limit, app, client, auth, project):
    response = commit(
        client, auth, put=[{"path": "a", "content": "ok"}, {"path": "b", "content": "x" * 1001}]
    )
    assert_commit_refused(app, client, auth, response, 413, "entry_too_large", 0, set())
    at_limit = base64.b64encode(b"\x00" * 1000).decode()
    assert commit(client, auth, put=[{"path": "b", "content_base64": at_limit}]).status_code == 201
