"""GET .../context/diff: added, removed and changed paths between two kept revisions, unified
diffs of text within max_bytes, binary entries by digest (docs/diff-and-render.md)."""

from __future__ import annotations

import json

import pytest

from tests.api.test_core import assert_problem
from tests.support.context import context_url, create_project, entry_url, put_entry, sha256
from tests.support.factories import bearer, make_api_key

P = "p"
NO_EOL = "\\ No newline at end of file\n"
DIFF = f"{context_url(P)}/diff"


@pytest.fixture
def auth(owner_key):
    return bearer(owner_key)


@pytest.fixture
def project(client, auth):
    return create_project(client, auth, slug=P)


def put(client, auth, path, data, content_type="text/markdown", **headers):
    response = put_entry(client, {**auth, "Content-Type": content_type, **headers}, P, path, data)
    assert response.status_code in (200, 201), response.get_data(as_text=True)
    return response.get_json()["revision"]


def commit(client, auth, put=(), delete=()):
    response = client.post(
        f"{context_url(P)}/commits", json={"put": list(put), "delete": list(delete)}, headers=auth
    )
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()["revision"]


def get_diff(client, auth, expect=200, **query):
    response = client.get(DIFF, query_string=query, headers=auth)
    assert response.status_code == expect, response.get_data(as_text=True)
    return response


def test_added_removed_changed_with_a_unified_diff(client, auth, project):
    put(client, auth, "a.md", b"one\ntwo\nthree\n")  # r1
    put(client, auth, "gone.md", b"bye\n")  # r2
    put(client, auth, "same.md", b"same\n")  # r3
    commit(
        client,
        auth,
        put=[
            {"path": "a.md", "content": "one\n2\nthree\n", "content_type": "text/markdown"},
            {"path": "b/new.md", "content": "new\n", "content_type": "text/markdown"},
            {"path": "aa.md", "content": "x", "content_type": "text/markdown"},
        ],
        delete=["gone.md"],
    )  # r4
    body = get_diff(client, auth, **{"from": 3, "to": 4}).get_json()
    assert body["from"] == 3 and body["to"] == 4 and body["truncated"] is False
    assert body["counts"] == {"added": 2, "removed": 1, "changed": 1}
    assert body["added"] == [
        {"path": "aa.md", "size": 1, "sha256": sha256(b"x")},
        {"path": "b/new.md", "size": 4, "sha256": sha256(b"new\n")},
    ]
    assert body["removed"] == [{"path": "gone.md", "size": 4, "sha256": sha256(b"bye\n")}]
    [change] = body["changed"]
    assert change["path"] == "a.md" and change["binary"] is False
    assert change["from_sha256"] == sha256(b"one\ntwo\nthree\n")
    assert change["to_sha256"] == sha256(b"one\n2\nthree\n")
    assert change["diff_truncated"] is False and "diff_omitted" not in change
    assert change["diff"] == (
        "--- a/a.md@1\n+++ b/a.md@4\n@@ -1,3 +1,3 @@\n one\n-two\n+2\n three\n"
    )


def test_to_defaults_to_the_head_and_either_order_works(client, auth, project):
    put(client, auth, "a.md", b"v1\n")  # r1
    put(client, auth, "a.md", b"v2")  # r2: no newline at the end
    forward = get_diff(client, auth, **{"from": 1}).get_json()
    assert forward["to"] == 2
    assert forward["changed"][0]["diff"] == (
        "--- a/a.md@1\n+++ b/a.md@2\n@@ -1 +1 @@\n-v1\n+v2\n\\ No newline at end of file\n"
    )
    backward = get_diff(client, auth, **{"from": 2, "to": 1}).get_json()
    assert backward["changed"][0]["from_sha256"] == sha256(b"v2")
    assert backward["changed"][0]["diff"].startswith("--- a/a.md@2\n+++ b/a.md@1\n")
    # from 0: everything is added; the same revision: nothing.
    assert [i["path"] for i in get_diff(client, auth, **{"from": 0}).get_json()["added"]] == [
        "a.md"
    ]
    same = get_diff(client, auth, **{"from": 2, "to": 2}).get_json()
    assert same["added"] == same["removed"] == same["changed"] == []
    put(client, auth, "a.md", b"")  # r3: emptied
    emptied = get_diff(client, auth, **{"from": 2}).get_json()["changed"][0]
    assert emptied["to_size"] == 0 and emptied["diff"].endswith("@@ -1 +0,0 @@\n-v2\n" + NO_EOL)


def test_binary_entries_are_changed_with_both_digests(client, auth, project):
    put(client, auth, "logo.png", b"\x89PNG\x00\x01", content_type="image/png")  # r1
    put(client, auth, "bad.txt", b"\xff\xfe text", content_type="text/plain")  # r2
    put(client, auth, "logo.png", b"\x89PNG\x00\x02", content_type="image/png")  # r3
    put(client, auth, "bad.txt", b"\xff\xfe other", content_type="text/plain")  # r4
    body = get_diff(client, auth, **{"from": 2, "to": 4}).get_json()
    by_path = {c["path"]: c for c in body["changed"]}
    assert [c["path"] for c in body["changed"]] == ["bad.txt", "logo.png"]
    for path, old, new in (
        ("logo.png", b"\x89PNG\x00\x01", b"\x89PNG\x00\x02"),
        ("bad.txt", b"\xff\xfe text", b"\xff\xfe other"),  # a text type, bytes not UTF-8
    ):
        change = by_path[path]
        assert change["binary"] is True and "diff" not in change
        assert change["from_sha256"] == sha256(old) and change["to_sha256"] == sha256(new)


def test_prefix_narrows_the_diff(client, auth, project):
    put(client, auth, "docs/a.md", b"a\n")
    put(client, auth, "src/b.py", b"b\n", content_type="text/x-python")
    body = get_diff(client, auth, **{"from": 0, "prefix": "docs/"}).get_json()
    assert [i["path"] for i in body["added"]] == ["docs/a.md"]
    get_diff(client, auth, expect=400, **{"from": 0, "prefix": "a/\u202eb"})


def response_size(response) -> int:
    return len(response.get_data())


def test_max_bytes_bounds_the_whole_response_and_says_what_was_cut(client, auth, project):
    old = "".join(f"line {i}\n" for i in range(400))
    new = "".join(f"line {i} changed\n" for i in range(400))
    commit(
        client,
        auth,
        put=[
            {"path": f"f{n}.md", "content": old, "content_type": "text/markdown"} for n in range(3)
        ],
    )  # r1
    commit(
        client,
        auth,
        put=[
            {"path": f"f{n}.md", "content": new, "content_type": "text/markdown"} for n in range(3)
        ],
    )  # r2
    whole = get_diff(client, auth, **{"from": 1, "to": 2, "max_bytes": 1024 * 1024})
    assert all(not c["diff_truncated"] for c in whole.get_json()["changed"])
    whole_diffs = [c["diff"] for c in whole.get_json()["changed"]]
    for max_bytes in (1024, 3000, 15000, 25000):
        response = get_diff(client, auth, **{"from": 1, "to": 2, "max_bytes": max_bytes})
        assert response_size(response) <= max_bytes
        body = response.get_json()
        assert body["truncated"] is False and len(body["changed"]) == 3
        cut = [c["diff_truncated"] for c in body["changed"]]
        assert True in cut, max_bytes
        first_cut = cut.index(True)
        for index, change in enumerate(body["changed"]):
            if index < first_cut:  # whole
                assert change["diff"] == whole_diffs[index]
            elif index == first_cut and "diff" in change:  # cut at a line, a prefix
                assert change["diff"].endswith("\n") and change["diff"] != whole_diffs[index]
                assert whole_diffs[index].startswith(change["diff"])
            else:
                assert "diff" not in change and change["diff_omitted"] == "budget"
                assert change["diff_truncated"] is True


def test_lists_too_long_for_max_bytes_are_cut_with_their_counts(client, auth, project):
    commit(
        client,
        auth,
        put=[
            {"path": f"n/{i:03}.md", "content": f"{i}\n", "content_type": "text/markdown"}
            for i in range(30)
        ],
    )
    response = get_diff(client, auth, **{"from": 0, "max_bytes": 2048})
    assert response_size(response) <= 2048
    body = response.get_json()
    assert body["truncated"] is True and body["counts"]["added"] == 30
    paths = [i["path"] for i in body["added"]]
    assert 0 < len(paths) < 30 and paths == [f"n/{i:03}.md" for i in range(len(paths))]


def test_entries_past_the_per_entry_cap_or_the_read_limit_are_not_read(
    app, client, auth, project, monkeypatch
):
    app.config["DIFF_MAX_ENTRY_BYTES"] = 1000
    put(client, auth, "big.md", b"a\n" * 600)  # r1: 1200 bytes
    put(client, auth, "small.md", b"a\n")  # r2
    put(client, auth, "big.md", b"b\n" * 600)  # r3
    put(client, auth, "small.md", b"b\n")  # r4
    from ctxcloud import objects

    reads = []
    real_read = objects.read

    def counting_read(tenant_id, project_id, key, size, *args):
        reads.append(size)
        return real_read(tenant_id, project_id, key, size, *args)

    monkeypatch.setattr(objects, "read", counting_read)
    body = get_diff(client, auth, **{"from": 2, "to": 4}).get_json()
    by_path = {c["path"]: c for c in body["changed"]}
    assert by_path["big.md"]["diff_omitted"] == "too_large" and "diff" not in by_path["big.md"]
    assert by_path["big.md"]["binary"] is False
    assert by_path["small.md"]["diff"].endswith("-a\n+b\n")
    assert reads and max(reads) <= 1000  # the big versions were never read
    # DIFF_MAX_READ_BYTES bounds the bytes one diff reads in all.
    app.config["DIFF_MAX_READ_BYTES"] = 4
    put(client, auth, "other.md", b"2\n")  # r5
    put(client, auth, "other.md", b"3\n")  # r6
    put(client, auth, "x.md", b"x\n")  # r7
    put(client, auth, "small.md", b"c\n")  # r8
    body = get_diff(client, auth, **{"from": 5, "to": 8}).get_json()
    other, small = body["changed"]  # other.md's 2 + 2 bytes use up the 4
    assert "diff" in other and small["diff_omitted"] == "read_limit" and "diff" not in small


BAD_QUERIES = [
    {},
    {"from": "x"},
    {"from": -1},
    {"from": 1, "to": "2.5"},
    {"from": 1, "max_bytes": 10},
    {"from": 1, "max_bytes": 100 * 1024**2},
    {"from": 2**63},
]


def test_bad_parameters_are_refused(client, auth, project):
    put(client, auth, "a.md", b"a")
    for query in BAD_QUERIES:
        response = client.get(DIFF, query_string=query, headers=auth)
        assert_problem(response, 422, "validation_error")


def test_unknown_revisions_are_404s_and_pruned_ones_410s(app, client, auth, project):
    for i in range(4):
        put(client, auth, "a.md", f"v{i}\n".encode())
    result = app.test_cli_runner().invoke(args=["context", "prune", "--keep", "2", "--json"])
    assert result.exit_code == 0, result.output
    response = client.get(DIFF, query_string={"from": 1}, headers=auth)
    body = assert_problem(response, 410, "history_pruned")
    assert body["history_starts_at"] == 3 and body["revision"] == 4 and "pruned" in body["detail"]
    response = client.get(DIFF, query_string={"from": 3, "to": 9}, headers=auth)
    assert_problem(response, 404, "not_found")
    assert "head is 4" in response.get_json()["detail"]
    assert get_diff(client, auth, **{"from": 3, "to": 4}).get_json()["changed"][0]["diff"]


def test_permission_and_isolation(app, client, auth, project, other_tenant):
    put(client, auth, "a.md", b"a\n")
    stranger = bearer(make_api_key(app, other_tenant)[1])
    response = client.get(DIFF, query_string={"from": 0}, headers=stranger)
    assert_problem(response, 404, "not_found")
    no_read = bearer(make_api_key(app, other_tenant, scopes=["projects:read"])[1])
    assert client.get(DIFF, query_string={"from": 0}, headers=no_read).status_code in (403, 404)
    writer_only = {"Authorization": "Bearer " + make_api_key(app, _tenant_of(app, project))[1]}
    assert client.get(DIFF, query_string={"from": 0}, headers=writer_only).status_code == 200
    assert client.get(DIFF, query_string={"from": 0}).status_code == 401
    key = bearer(make_api_key(app, _tenant_of(app, project), scopes=["projects:read"])[1])
    response = client.get(DIFF, query_string={"from": 0}, headers=key)
    assert_problem(response, 403, "forbidden")


def _tenant_of(app, project):
    from types import SimpleNamespace

    from ctxcloud.plugins.context.models import Project

    with app.app_context():
        return SimpleNamespace(id=Project.get_by_id(project["id"]).tenant_id)


def test_etag_and_not_modified(client, auth, project):
    put(client, auth, "a.md", b"1\n")
    put(client, auth, "a.md", b"2\n")
    first = get_diff(client, auth, **{"from": 1})
    etag = first.headers["ETag"]
    headers = {**auth, "If-None-Match": etag}
    same = client.get(DIFF, query_string={"from": 1, "to": 2}, headers=headers)
    assert same.status_code == 304 and same.headers["ETag"] == etag
    assert get_diff(client, auth, **{"from": 1, "max_bytes": 4096}).headers["ETag"] != etag
    put(client, auth, "a.md", b"3\n")  # the head moved: "to" now means 3
    assert client.get(DIFF, query_string={"from": 1}, headers=headers).status_code == 200
    # A pruned or unknown revision is never a 304.
    assert client.get(DIFF, query_string={"from": 1, "to": 9}, headers=headers).status_code == 404


def test_the_response_is_compact_json_within_the_default_budget(client, auth, project):
    put(client, auth, "a.md", "é\n".encode())
    put(client, auth, "a.md", "ü\n".encode())
    response = get_diff(client, auth, **{"from": 1})
    assert response.mimetype == "application/json"
    assert json.loads(response.get_data())["changed"][0]["diff"].endswith("-é\n+ü\n")
    assert client.get(entry_url(P, "a.md"), headers=auth).data == "ü\n".encode()


def apply_unified(old: str, diff: str) -> str:
    """The new text, from the old one and a unified diff of it (as `patch` would)."""
    from ctxcloud.plugins.context.diff import _lines

    a, lines = _lines(old), _lines(diff)[2:]
    result: list[str] = []
    position, k = 0, 0
    while k < len(lines):
        old_range = lines[k].split()[1][1:]
        start, _, count = old_range.partition(",")
        position_to = int(start) - 1 if count != "0" else int(start)
        result.extend(a[position:position_to])
        position, k = position_to, k + 1
        while k < len(lines) and not lines[k].startswith("@@"):
            mark, text = lines[k][0], lines[k][1:]
            if mark == "\\":
                if lines[k - 1][0] == "+":
                    result[-1] = result[-1][:-1]
            elif mark == " ":
                result.append(a[position])
                position += 1
            elif mark == "-":
                position += 1
            else:
                result.append(text)
            k += 1
    return "".join(result + a[position:])


def test_the_line_matching_gives_a_correct_diff_for_any_edit():
    """Patience diff with difflib for small gaps: every diff turns the old text into the new
    one, its blocks really are equal lines, and scattered edits of a long text stay cheap."""
    import random

    from ctxcloud.plugins.context.diff import _lines, matching_blocks, unified

    rng = random.Random(19)
    for _ in range(400):
        vocabulary = [f"l{n}\n" for n in range(rng.randint(1, 12))]
        old = [rng.choice(vocabulary) for _ in range(rng.randint(0, 30))]
        new = list(old)
        for _ in range(rng.randint(1, 5)):
            roll = rng.random()
            if roll < 0.3 and new:
                new.pop(rng.randrange(len(new)))
            elif roll < 0.6:
                new.insert(rng.randint(0, len(new)), rng.choice([*vocabulary, "new\n"]))
            elif new:
                new[rng.randrange(len(new))] = "changed\n"
        a, b = "".join(old), "".join(new)
        if rng.random() < 0.2:
            b = b.rstrip("\n")
        if a == b:
            continue
        blocks = matching_blocks(_lines(a), _lines(b))
        for i, j, n in blocks:
            assert _lines(a)[i : i + n] == _lines(b)[j : j + n]
        assert apply_unified(a, "".join(unified("x", a, b, 1, 2))) == b
    # 20,000 lines, every seventh changed (plain difflib: tens of seconds), still exact.
    old = "".join(f"line {n} {rng.random()}\n" for n in range(20000))
    new = "".join(("x" + line if n % 7 == 0 else line) for n, line in enumerate(_lines(old)))
    diff = "".join(unified("x", old, new, 1, 2))
    assert apply_unified(old, diff) == new
    body = _lines(diff)[2:]
    removed = [line for line in body if line.startswith("-")]
    added = [line for line in body if line.startswith("+")]
    assert len(removed) == len(added) == len(range(0, 20000, 7))
