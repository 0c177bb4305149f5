"""The `ctx` commands against a mocked service (respx): the requests a push and a pull make
(and do not make), exit codes, stderr's problem details and the one JSON object of --json."""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import sys
import types

import httpx
import pytest

from ctxcloud_client import cli, commands, sync
from ctxcloud_client.state import FolderState, load_state, save_state

ROOT = "http://ctx.test"  # conftest.py's service root

PROJECT_ID = "prj_1"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def entry(path: str, data: bytes, revision: int = 1) -> dict:
    return {
        "path": path,
        "size": len(data),
        "sha256": sha(data),
        "content_type": "application/octet-stream",
        "metadata": {},
        "revision": revision,
        "updated_at": "2026-11-25T18:00:00.000Z",
    }


def manifest(revision: int, files: dict[str, bytes]) -> dict:
    return {
        "project_id": PROJECT_ID,
        "revision": revision,
        "entries": [entry(p, d) for p, d in sorted(files.items())],
        "total_size": sum(len(d) for d in files.values()),
    }


def revision(number: int, changes: list[tuple[str, str]]) -> dict:
    return {
        "revision": number,
        "created_at": "2026-11-25T18:00:00.000Z",
        "actor": "api_key:key_1",
        "message": "",
        "changes": [{"path": p, "action": a} for p, a in changes],
    }


@pytest.fixture(autouse=True)
def ctx_env(monkeypatch, tmp_path):
    monkeypatch.setenv("CTX_URL", ROOT)
    monkeypatch.setenv("CTX_API_KEY", "ctx_test_key")
    monkeypatch.setenv("CTX_CONFIG_DIR", str(tmp_path / "no-config"))


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "work"
    root.mkdir()
    return root


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_push_sends_one_commit_inline_and_staged_then_remembers(api, folder, capsys, monkeypatch):
    monkeypatch.setattr(sync, "LARGE_FILE", 10)
    (folder / "docs").mkdir()
    (folder / "docs" / "a.md").write_bytes(b"# a\n")
    (folder / "b.bin").write_bytes(b"\xff\x00")
    big = b"0123456789abcdef"
    (folder / "big.dat").write_bytes(big)
    (folder / ".ctxignore").write_text("*.tmp\n")
    (folder / "skip.tmp").write_bytes(b"no")
    api.get("/projects/notes/context").respond(200, json=manifest(3, {}))
    api.post("/projects/notes/context/uploads").respond(
        201, json={"upload_id": "upl_1", "expires_at": "2026-11-26T18:00:00.000Z"}
    )
    sent = api.put("/projects/notes/context/uploads/upl_1").respond(
        200, json={"upload_id": "upl_1", "size": len(big), "sha256": sha(big)}
    )
    changes = [("b.bin", "put"), ("big.dat", "put"), ("docs/a.md", "put")]
    commit = api.post("/projects/notes/context/commits").respond(201, json=revision(4, changes))
    code, out, err = run(capsys, "push", "notes", str(folder), "-m", "first", "--json")
    assert code == 0, err
    answer = json.loads(out)  # exactly one JSON object
    assert answer["revisions"] == [4] and answer["revision"] == 4
    assert answer["plan"]["add"] == ["b.bin", "big.dat", "docs/a.md"]
    body = json.loads(commit.calls.last.request.content)
    assert body["parent_revision"] == 3 and body["message"] == "first" and body["delete"] == []
    puts = {p["path"]: p for p in body["put"]}
    assert puts["docs/a.md"]["content"] == "# a\n"
    assert puts["docs/a.md"]["content_type"] == "text/markdown"
    assert base64.b64decode(puts["b.bin"]["content_base64"]) == b"\xff\x00"
    assert puts["big.dat"]["upload_id"] == "upl_1"
    assert sent.calls.last.request.content == big
    assert sent.calls.last.request.headers["Content-SHA256"] == sha(big)
    state = load_state(folder)
    assert state.revision == 4 and state.project_id == PROJECT_ID
    assert set(state.files) == {"b.bin", "big.dat", "docs/a.md"}


def test_a_push_with_nothing_changed_writes_nothing(api, folder, capsys):
    (folder / "a.md").write_bytes(b"a")
    save_state(folder, FolderState(PROJECT_ID, 2, {"a.md": sha(b"a")}))
    api.get("/projects/notes/context").respond(200, json=manifest(2, {"a.md": b"a"}))
    code, out, _ = run(capsys, "push", "notes", str(folder))
    assert code == 0 and "nothing to push" in out
    assert [call.request.method for call in api.calls] == ["GET"]


def test_a_stale_parent_is_a_conflict_exit_3_with_the_request_id(api, folder, capsys):
    (folder / "a.md").write_bytes(b"new")
    save_state(folder, FolderState(PROJECT_ID, 2, {"a.md": sha(b"a")}))
    api.get("/projects/notes/context").respond(200, json=manifest(2, {"a.md": b"a"}))
    api.post("/projects/notes/context/commits").respond(
        409,
        json={
            "status": 409,
            "code": "conflict",
            "detail": "parent_revision is 2 but the head is 3.",
            "request_id": "req-409",
        },
    )
    code, out, err = run(capsys, "push", "notes", str(folder), "--json")
    assert code == 3
    assert "someone else pushed" in err and "ctx pull" in err and "req-409" in err
    answer = json.loads(out)
    assert answer["exit_code"] == 3 and answer["error"]["code"] == "conflict"
    assert load_state(folder).revision == 2  # nothing remembered


def test_a_planned_conflict_sends_nothing(api, folder, capsys):
    (folder / "a.md").write_bytes(b"mine")
    save_state(folder, FolderState(PROJECT_ID, 2, {"a.md": sha(b"a")}))
    api.get("/projects/notes/context").respond(200, json=manifest(3, {"a.md": b"theirs"}))
    code, _, err = run(capsys, "push", "notes", str(folder))
    assert code == 3 and "conflict: a.md" in err
    assert [call.request.method for call in api.calls] == ["GET"]


def test_dry_run_and_max_delete_change_nothing(api, folder, capsys):
    save_state(folder, FolderState(PROJECT_ID, 2, {"a.md": sha(b"a"), "b.md": sha(b"b")}))
    api.get("/projects/notes/context").respond(200, json=manifest(2, {"a.md": b"a", "b.md": b"b"}))
    code, out, _ = run(capsys, "push", "notes", str(folder), "--delete", "--dry-run")
    assert code == 0 and "D a.md" in out and "D b.md" in out and "dry run" in out
    code, out, err = run(capsys, "push", "notes", str(folder), "--delete", "--max-delete", "1")
    assert code == 1 and "more than --max-delete 1" in err
    code, out, err = run(capsys, "push", "notes", str(folder))  # no --delete: left alone
    assert code == 0 and "push --delete" in out
    assert {call.request.method for call in api.calls} == {"GET"}
    with pytest.raises(SystemExit) as usage:
        cli.main(["push", "notes", str(folder), "--max-delete", "1"])
    assert usage.value.code == 2


def test_pull_writes_checked_files_and_leaves_others_alone(api, folder, capsys):
    files = {"docs/a.md": b"# a\n", "b.bin": b"\x00\x01"}
    (folder / "mine.txt").write_bytes(b"not the project's")
    api.get("/projects/notes/context").respond(200, json=manifest(5, files))
    for path, data in files.items():
        api.get(f"/projects/notes/context/entries/{path}", params={"revision": "5"}).respond(
            200, content=data, headers={"Entry-SHA256": sha(data)}
        )
    code, _out, err = run(capsys, "pull", "notes", str(folder))
    assert code == 0, err
    assert (folder / "docs" / "a.md").read_bytes() == b"# a\n"
    assert (folder / "b.bin").read_bytes() == b"\x00\x01"
    assert (folder / "mine.txt").read_bytes() == b"not the project's"
    assert load_state(folder).files == {p: sha(d) for p, d in files.items()}


def test_a_pull_that_gets_wrong_bytes_leaves_no_file_and_no_state(api, folder, capsys):
    api.get("/projects/notes/context").respond(200, json=manifest(5, {"a.md": b"right"}))
    api.get("/projects/notes/context/entries/a.md").respond(200, content=b"wrong")
    code, _, err = run(capsys, "pull", "notes", str(folder))
    assert code == 1 and "hash" in err
    assert sorted(p.name for p in folder.iterdir()) == []


def test_a_pull_over_unpushed_edits_is_exit_3(api, folder, capsys):
    (folder / "a.md").write_bytes(b"edited")
    save_state(folder, FolderState(PROJECT_ID, 1, {"a.md": sha(b"a")}))
    api.get("/projects/notes/context").respond(200, json=manifest(2, {"a.md": b"theirs"}))
    code, out, _err = run(capsys, "pull", "notes", str(folder), "--json")
    assert code == 3 and (folder / "a.md").read_bytes() == b"edited"
    assert json.loads(out)["error"]["plan"]["conflicts"][0]["path"] == "a.md"


def test_errors_print_the_problem_detail_and_request_id(api, capsys):
    api.get("/projects/nope/context").respond(
        404,
        json={
            "status": 404,
            "code": "not_found",
            "detail": "No such project.",
            "request_id": "r-7",
        },
    )
    code, out, err = run(capsys, "ls", "nope")
    assert code == 1 and out == ""
    assert "404 not_found: No such project." in err and "r-7" in err


@pytest.mark.parametrize(
    ("argv", "route", "payload", "keys"),
    [
        (["projects"], ("GET", "/projects"), [], {"projects"}),
        (["ls", "notes"], ("GET", "/projects/notes/context"), manifest(1, {"a": b"a"}), None),
        (["log", "notes"], ("GET", "/projects/notes/context/revisions"), [revision(1, [])], None),
    ],
)
def test_json_is_exactly_one_object(api, capsys, argv, route, payload, keys):
    api.route(method=route[0], path=route[1]).respond(200, json=payload)
    code, out, _ = run(capsys, *argv, "--json")
    assert code == 0
    answer = json.loads(out)  # one object, nothing else on stdout
    assert isinstance(answer, dict) and out.count("\n") == 1
    if keys:
        assert set(answer) == keys


def test_cat_streams_an_entry_at_a_revision(api, capsys):
    api.get("/projects/notes/context/entries/docs/a@b.md", params={"revision": "2"}).respond(
        200, content=b"old", headers={"Entry-SHA256": sha(b"old")}
    )
    code, out, _ = run(capsys, "cat", "notes", "docs/a@b.md@2")
    assert code == 0 and out == "old"


def test_diff_lists_paths_and_a_unified_diff(api, capsys):
    old = {"a.md": b"one\n", "gone.md": b"x"}
    new = {"a.md": b"one\ntwo\n", "new.md": b"y"}
    api.get("/projects/notes/context", params={"revision": "1"}).respond(200, json=manifest(1, old))
    api.get("/projects/notes/context", params={"revision": "2"}).respond(200, json=manifest(2, new))
    for rev, data in (("1", old["a.md"]), ("2", new["a.md"])):
        api.get("/projects/notes/context/entries/a.md", params={"revision": rev}).respond(
            200, content=data, headers={"Entry-SHA256": sha(data)}
        )
    code, out, _ = run(capsys, "diff", "notes", "1", "2", "--json")
    answer = json.loads(out)
    assert code == 0
    assert (answer["added"], answer["removed"]) == (["new.md"], ["gone.md"])
    assert answer["changed"][0]["path"] == "a.md" and "+two\n" in answer["changed"][0]["diff"]


def test_missing_credentials_are_exit_1(monkeypatch, capsys):
    monkeypatch.delenv("CTX_API_KEY")
    code, _, err = run(capsys, "projects")
    assert code == 1 and "CTX_API_KEY" in err


def test_mcp_without_the_extra_says_how_to_install_it(monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ctxcloud_client.mcp_server", None)  # import fails
    code, _, err = run(capsys, "mcp", "--project", "notes")
    assert code == 1 and "ctxcloud-client[mcp]" in err


def test_mcp_serves_the_project_with_the_profile_client(monkeypatch, capsys):
    served = []
    fake = types.ModuleType("ctxcloud_client.mcp_server")
    fake.serve_stdio = lambda client, project: served.append((client.base_url, project))
    monkeypatch.setitem(sys.modules, "ctxcloud_client.mcp_server", fake)
    assert run(capsys, "mcp", "--project", "notes")[0] == 0
    assert served == [(ROOT, "notes")]


def test_a_broken_connection_is_exit_1(api, capsys, monkeypatch):
    quick = functools.partial(commands.Client, sleep=lambda seconds: None)  # no real waits
    monkeypatch.setattr(commands, "Client", quick)
    api.get("/projects").mock(side_effect=httpx.ConnectError("refused"))
    code, _, err = run(capsys, "projects")
    assert code == 1 and "connection_failed" in err


def changes_feed(since: int, head: int, items: list[tuple[int, str, str]]) -> dict:
    changes = []
    for number, path, action in items:
        change = {"revision": number, "path": path, "action": action}
        if action == "put":
            change.update(size=3, sha256=sha(b"new"))
        changes.append(change)
    return {"from_revision": since, "revision": head, "history_starts_at": 0, "changes": changes}


def test_watch_long_polls_from_the_head_and_prints_what_arrives(api, capsys):
    api.get("/projects/notes").respond(
        200, json={"id": PROJECT_ID, "slug": "notes", "name": "Notes", "revision": 4}
    )
    feed = api.get("/projects/notes/context/changes").mock(
        side_effect=[
            httpx.Response(200, json=changes_feed(4, 4, [])),  # the wait ended: nothing
            httpx.Response(
                200, json=changes_feed(4, 5, [(5, "a.md", "put"), (5, "b.md", "delete")])
            ),
        ]
    )
    code, out, _ = run(capsys, "watch", "notes", "--wait", "2", "--once")
    assert code == 0
    assert out.splitlines() == [
        "Watching notes after revision 4 (Ctrl-C to stop).",
        "r5     P a.md  (3 bytes)",
        "r5     D b.md",
    ]
    sent = [dict(call.request.url.params) for call in feed.calls]
    assert [(p["since"], p["wait"]) for p in sent] == [("4", "2.0"), ("4", "2.0")]


def test_watch_json_is_one_object_per_answer_and_ctrl_c_ends_it(api, capsys):
    answers = iter(
        [
            httpx.Response(200, json=changes_feed(2, 3, [(3, "a.md", "put")])),
            httpx.Response(
                200, json=changes_feed(3, 5, [(4, "a.md", "delete"), (5, "c.md", "put")])
            ),
        ]
    )

    asked = []

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.params["since"])
        for response in answers:
            return response
        raise KeyboardInterrupt  # Ctrl-C during the third long-poll

    api.get("/projects/notes/context/changes").mock(side_effect=answer)
    code, out, _ = run(capsys, "watch", "notes", "--since", "2", "--json")
    assert code == 0  # interrupted: the end of watching, not an error
    lines = [json.loads(line) for line in out.splitlines()]
    assert [(line["from_revision"], line["revision"]) for line in lines] == [(2, 3), (3, 5)]
    assert lines[0]["changes"] == [
        {"revision": 3, "path": "a.md", "action": "put", "size": 3, "sha256": sha(b"new")}
    ]
    assert lines[1]["changes"][0] == {"revision": 4, "path": "a.md", "action": "delete"}
    assert asked == ["2", "3", "5"]  # each poll continues from the last answer's head


def test_watch_of_a_pruned_history_is_exit_1_with_the_reason(api, capsys):
    api.get("/projects/notes/context/changes").respond(
        410,
        json={
            "status": 410,
            "code": "history_pruned",
            "detail": "Revisions before 9 were pruned.",
            "request_id": "req_9",
        },
    )
    code, _, err = run(capsys, "watch", "notes", "--since", "1")
    assert code == 1 and "history_pruned" in err and "req_9" in err


@pytest.mark.parametrize("wait", ["0", "61", "soon"])
def test_watch_wait_is_bounded_like_the_server_s(wait, capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["watch", "notes", "--wait", wait])
    assert exited.value.code == 2
