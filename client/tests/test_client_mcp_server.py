"""`ctx mcp` (ctxcloud_client.mcp_server) driven by the MCP SDK's own client, in process, with
the HTTP API mocked by respx: resources, every tool's request and answer, and its errors.

Async tests run on anyio's pytest plugin (it ships with anyio)."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

pytest.importorskip("mcp", reason="the mcp extra: pip install './client[mcp]'")

from mcp import Client as MCPClient
from mcp.shared.exceptions import MCPError

from ctxcloud_client.mcp_server import (
    build_server,
    entry_path,
    entry_uri,
    guess_text_type,
)

pytestmark = pytest.mark.anyio

CONTEXT = "/projects/handbook/context"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def entry_json(path: str, data: bytes, content_type: str, revision: int = 3, **extra: Any) -> dict:
    return {
        "path": path,
        "size": len(data),
        "sha256": sha(data),
        "content_type": content_type,
        "metadata": {},
        "revision": revision,
        "updated_at": "2026-11-25T18:00:00.000Z",
        **extra,
    }


def manifest_json(revision: int, *entries: dict, truncated: bool = False) -> dict:
    return {
        "project_id": "prj_1",
        "revision": revision,
        "entries": list(entries),
        "total_size": sum(e["size"] for e in entries),
        "content_truncated": truncated,
    }


def entry_response(data: bytes, content_type: str, revision: int = 3) -> httpx.Response:
    return httpx.Response(
        200,
        content=data,
        headers={
            "Content-Type": content_type,
            "Entry-SHA256": sha(data),
            "Entry-Revision": str(revision),
            "ETag": f'"r{revision}-{sha(data)[:8]}"',
        },
    )


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=["auto", "legacy"])
async def mcp(request, client) -> AsyncIterator[MCPClient]:
    """The SDK's client on the server for project `handbook`: in-process dispatch ("auto"),
    and JSON-RPC over memory streams after the initialize handshake ("legacy"), as stdio
    carries it."""
    async with MCPClient(build_server(client, "handbook"), mode=request.param) as session:
        yield session


async def call(mcp: MCPClient, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """A tool call that succeeded: its JSON text, checked against the structured copy."""
    result = await mcp.call_tool(tool, arguments)
    assert not result.is_error, result.content
    answer = json.loads(result.content[0].text)
    assert answer == result.structured_content
    return answer


async def failure(mcp: MCPClient, tool: str, arguments: dict[str, Any]) -> str:
    """A tool call that failed as a tool error (not a protocol error): its message."""
    result = await mcp.call_tool(tool, arguments)
    assert result.is_error
    return result.content[0].text


# ---- URIs ---------------------------------------------------------------------------------


def test_entry_uris_round_trip_paths_with_spaces_and_unicode():
    uri = entry_uri("handbook", "docs/a b/ünï.md")
    assert uri == "ctxcloud://handbook/docs/a%20b/%C3%BCn%C3%AF.md"
    assert entry_path("handbook", uri) == "docs/a b/ünï.md"
    assert entry_path("other", uri) is None
    assert entry_path("handbook", "ctxcloud://handbook/") is None
    assert entry_path("handbook", "file:///etc/passwd") is None


def test_a_written_entry_gets_a_text_type_from_its_extension():
    assert guess_text_type("docs/a.md") == "text/markdown"
    assert guess_text_type("conf/app.YAML") == "application/yaml"
    assert guess_text_type("page.html") == "text/html"
    assert guess_text_type("notes") == "text/plain; charset=utf-8"
    assert guess_text_type("v1.2/notes") == "text/plain; charset=utf-8"
    assert guess_text_type("image.png") == "text/plain; charset=utf-8"  # the content is text


# ---- what it offers -----------------------------------------------------------------------


async def test_the_tools_and_their_input_schemas(mcp):
    tools = {tool.name: tool for tool in (await mcp.list_tools()).tools}
    assert set(tools) == {"get_context", "read_entry", "write_entry", "list_revisions", "diff"}
    assert tools["write_entry"].input_schema["required"] == ["path", "content"]
    assert tools["read_entry"].input_schema["required"] == ["path"]
    assert tools["diff"].input_schema["required"] == ["from_revision"]
    budget = tools["get_context"].input_schema["properties"]["max_bytes"]
    assert (budget["minimum"], budget["maximum"]) == (0, 16 * 1024 * 1024)
    assert tools["read_entry"].annotations.read_only_hint
    assert tools["write_entry"].annotations.read_only_hint is False
    for tool in tools.values():
        assert tool.description


async def test_resources_are_the_manifest(mcp, api):
    api.get(CONTEXT).respond(
        200,
        json=manifest_json(
            3,
            entry_json("docs/intro.md", b"# Intro\n", "text/markdown"),
            entry_json("data/logo.png", b"\x89PNG", "image/png"),
        ),
    )
    resources = (await mcp.list_resources()).resources
    assert [(r.uri, r.name, r.mime_type, r.size) for r in resources] == [
        ("ctxcloud://handbook/docs/intro.md", "docs/intro.md", "text/markdown", 8),
        ("ctxcloud://handbook/data/logo.png", "data/logo.png", "image/png", 4),
    ]
    templates = (await mcp.list_resource_templates()).resource_templates
    assert [t.uri_template for t in templates] == ["ctxcloud://handbook/{+path}"]


async def test_reading_a_resource_gives_text_or_a_blob(mcp, api):
    api.get(f"{CONTEXT}/entries/docs/intro.md").mock(
        return_value=entry_response(b"# Intro\n", "text/markdown")
    )
    png = b"\x89PNG\r\n\x1a\n\x00\xff"
    api.get(f"{CONTEXT}/entries/data/logo.png").mock(return_value=entry_response(png, "image/png"))
    text = (await mcp.read_resource("ctxcloud://handbook/docs/intro.md")).contents[0]
    assert (text.text, text.mime_type) == ("# Intro\n", "text/markdown")
    blob = (await mcp.read_resource("ctxcloud://handbook/data/logo.png")).contents[0]
    assert base64.b64decode(blob.blob) == png and blob.mime_type == "image/png"


async def test_a_resource_path_is_percent_decoded(mcp, api):
    route = api.get(f"{CONTEXT}/entries/docs/a%20b.md").mock(
        return_value=entry_response(b"x", "text/plain")
    )
    contents = (await mcp.read_resource("ctxcloud://handbook/docs/a%20b.md")).contents
    assert contents[0].text == "x" and route.called


async def test_resource_errors_are_protocol_errors_with_the_reason(mcp, api):
    api.get(f"{CONTEXT}/entries/missing.md").respond(
        404,
        json={"status": 404, "code": "not_found", "detail": "No entry at missing.md."},
        headers={"Content-Type": "application/problem+json", "X-Request-ID": "req-1"},
    )
    with pytest.raises(MCPError, match="No entry at missing.md"):
        await mcp.read_resource("ctxcloud://handbook/missing.md")
    with pytest.raises(MCPError, match="not an entry of project handbook"):
        await mcp.read_resource("ctxcloud://other/docs/intro.md")
    api.get(CONTEXT).respond(
        403,
        json={"status": 403, "code": "forbidden", "detail": "Not for this key."},
        headers={"Content-Type": "application/problem+json"},
    )
    with pytest.raises(MCPError, match="403 forbidden: Not for this key"):
        await mcp.list_resources()


# ---- tools --------------------------------------------------------------------------------


async def test_get_context_inlines_text_up_to_the_budget_and_says_what_it_left_out(mcp, api):
    route = api.get(CONTEXT).respond(
        200,
        json=manifest_json(
            3,
            entry_json("docs/a.md", b"alpha\n", "text/markdown", content="alpha\n"),
            entry_json("docs/big.md", b"x" * 900, "text/markdown", content_omitted="budget"),
            entry_json("docs/logo.png", b"\x89PNG", "image/png", content_omitted="not_text"),
            truncated=True,
        ),
    )
    answer = await call(mcp, "get_context", {"prefix": "docs/", "max_bytes": 100})
    query = route.calls.last.request.url.params
    assert (query["prefix"], query["include_content"], query["max_bytes"]) == (
        "docs/",
        "true",
        "100",
    )
    assert answer["revision"] == 3 and answer["content_truncated"] is True
    assert answer["entries"][0]["content"] == "alpha\n"
    assert answer["entries"][1]["content_omitted"] == "budget"
    assert [(i["path"], i["reason"]) for i in answer["left_out"]] == [
        ("docs/big.md", "budget"),
        ("docs/logo.png", "not_text"),
    ]
    assert "2 of 3 entries' content left out" in answer["note"]
    assert "raise max_bytes" in answer["note"]


async def test_get_context_defaults_to_the_whole_project_and_a_64_kib_budget(mcp, api):
    route = api.get(CONTEXT).respond(200, json=manifest_json(0))
    answer = await call(mcp, "get_context", {})
    query = route.calls.last.request.url.params
    assert "prefix" not in query and query["max_bytes"] == str(64 * 1024)
    assert answer["entries"] == [] and answer["note"] == "All 0 entries are inlined."


async def test_read_entry_text_at_a_revision(mcp, api):
    route = api.get(f"{CONTEXT}/entries/docs/a.md").mock(
        return_value=entry_response("héllo\n".encode(), "text/markdown; charset=utf-8", 2)
    )
    answer = await call(mcp, "read_entry", {"path": "docs/a.md", "revision": 2})
    assert route.calls.last.request.url.params["revision"] == "2"
    assert answer["content"] == "héllo\n" and answer["truncated"] is False
    assert answer["revision"] == 2 and answer["etag"].startswith('"r2-')
    assert answer["sha256"] == sha("héllo\n".encode())


async def test_read_entry_cuts_long_text_on_a_character_boundary(mcp, api):
    data = "é" * 10  # two bytes each
    api.get(f"{CONTEXT}/entries/a.txt").mock(
        return_value=entry_response(data.encode(), "text/plain")
    )
    answer = await call(mcp, "read_entry", {"path": "a.txt", "max_bytes": 5})
    assert answer["content"] == "éé" and answer["truncated"] is True and answer["size"] == 20


async def test_read_entry_binary_is_base64_when_it_fits(mcp, api):
    data = bytes(range(256))
    api.get(f"{CONTEXT}/entries/blob.bin").mock(
        return_value=entry_response(data, "application/octet-stream")
    )
    answer = await call(mcp, "read_entry", {"path": "blob.bin"})
    assert base64.b64decode(answer["content_base64"]) == data
    small = await call(mcp, "read_entry", {"path": "blob.bin", "max_bytes": 100})
    assert "content_base64" not in small and "raise max_bytes" in small["content_omitted"]


async def test_read_entry_refuses_bytes_that_do_not_match_their_checksum(mcp, api):
    api.get(f"{CONTEXT}/entries/a.md").respond(
        200,
        content=b"tampered",
        headers={"Content-Type": "text/markdown", "Entry-SHA256": sha(b"original")},
    )
    assert "content_mismatch" in await failure(mcp, "read_entry", {"path": "a.md"})


async def test_write_entry_sends_the_text_with_its_type_and_condition(mcp, api):
    route = api.put(f"{CONTEXT}/entries/docs/new.md").respond(
        201,
        json=entry_json("docs/new.md", b"# New\n", "text/markdown", revision=5),
        headers={"ETag": '"r5-abc"'},
    )
    answer = await call(
        mcp, "write_entry", {"path": "docs/new.md", "content": "# New\n", "if_match": '"r4-x"'}
    )
    request = route.calls.last.request
    assert request.content == b"# New\n"
    assert request.headers["Content-Type"] == "text/markdown"
    assert request.headers["If-Match"] == '"r4-x"'
    assert request.headers["Content-SHA256"] == sha(b"# New\n")
    assert (answer["revision"], answer["etag"], answer["created"]) == (5, '"r5-abc"', True)

    api.put(f"{CONTEXT}/entries/notes").respond(
        200, json=entry_json("notes", b"x", "text/csv", revision=6), headers={"ETag": '"r6"'}
    )
    answer = await call(
        mcp, "write_entry", {"path": "notes", "content": "x", "content_type": "text/csv"}
    )
    assert api.calls.last.request.headers["Content-Type"] == "text/csv"
    assert "If-Match" not in api.calls.last.request.headers
    assert answer["created"] is False


async def test_list_revisions_newest_first_up_to_the_limit(mcp, api):
    def revision(number: int) -> dict:
        return {
            "revision": number,
            "created_at": "2026-11-25T18:00:00.000Z",
            "actor": "api_key:key_1",
            "message": f"change {number}",
            "changes": [{"path": "docs/a.md", "action": "put"}],
        }

    route = api.get(f"{CONTEXT}/revisions").respond(
        200, json=[revision(n) for n in (9, 8, 7)], headers={"X-Pagination": "{}"}
    )
    answer = await call(mcp, "list_revisions", {"limit": 2})
    assert route.calls.last.request.url.params["page_size"] == "3"
    assert [r["revision"] for r in answer["revisions"]] == [9, 8] and answer["more"] is True
    assert answer["revisions"][0]["changes"] == [{"path": "docs/a.md", "action": "put"}]
    assert answer["revisions"][0]["created_at"].startswith("2026-11-25T18:00:00")
    everything = await call(mcp, "list_revisions", {})
    assert len(everything["revisions"]) == 3 and everything["more"] is False


async def test_diff_lists_paths_and_shows_unified_diffs_of_text(mcp, api):
    old_a, new_a = b"one\ntwo\n", b"one\n2\n"
    old_manifest = manifest_json(
        2,
        entry_json("docs/a.md", old_a, "text/markdown", 2),
        entry_json("docs/gone.md", b"bye\n", "text/markdown", 1),
        entry_json("img.png", b"old", "image/png", 1),
    )
    new_manifest = manifest_json(
        4,
        entry_json("docs/a.md", new_a, "text/markdown", 4),
        entry_json("docs/new.md", b"hi\n", "text/markdown", 3),
        entry_json("img.png", b"new", "image/png", 4),
    )

    def manifest(request: httpx.Request) -> httpx.Response:
        revision = request.url.params.get("revision")
        return httpx.Response(200, json=old_manifest if revision == "2" else new_manifest)

    def entry(request: httpx.Request) -> httpx.Response:
        path = request.url.path.split("/entries/", 1)[1]
        bodies = {
            ("docs/a.md", "2"): old_a,
            ("docs/a.md", "4"): new_a,
            ("docs/gone.md", "2"): b"bye\n",
            ("docs/new.md", "4"): b"hi\n",
        }
        data = bodies[(path, request.url.params["revision"])]
        return entry_response(data, "text/markdown")

    manifests = api.get(CONTEXT).mock(side_effect=manifest)
    api.get(url__startswith=f"http://ctx.test/api/v1{CONTEXT}/entries/").mock(side_effect=entry)

    answer = await call(mcp, "diff", {"from_revision": 2})
    assert [c.request.url.params.get("revision") for c in manifests.calls] == ["2", None]
    assert (answer["from_revision"], answer["to_revision"]) == (2, 4)
    assert answer["added"] == ["docs/new.md"]
    assert answer["removed"] == ["docs/gone.md"]
    assert answer["changed"] == ["docs/a.md", "img.png"]
    diffs = {d["path"]: d for d in answer["diffs"]}
    assert diffs["docs/a.md"]["status"] == "changed"
    assert diffs["docs/a.md"]["diff"].splitlines() == [
        "--- a/docs/a.md@2",
        "+++ b/docs/a.md@4",
        "@@ -1,2 +1,2 @@",
        " one",
        "-two",
        "+2",
    ]
    assert "+hi" in diffs["docs/new.md"]["diff"] and "-bye" in diffs["docs/gone.md"]["diff"]
    assert answer["diffs_omitted"] == [
        {"path": "img.png", "status": "changed", "reason": "not_text"}
    ]

    bounded = await call(mcp, "diff", {"from_revision": 2, "to_revision": 4, "max_bytes": 60})
    assert [c.request.url.params.get("revision") for c in manifests.calls[-2:]] == ["2", "4"]
    shown = [d["path"] for d in bounded["diffs"]]
    budget = [o["path"] for o in bounded["diffs_omitted"] if o["reason"] == "budget"]
    assert budget and sorted(shown + budget) == ["docs/a.md", "docs/gone.md", "docs/new.md"]
    assert sum(len(d["diff"].encode()) for d in bounded["diffs"]) <= 60


# ---- errors -------------------------------------------------------------------------------


async def test_a_refused_write_is_a_tool_error_naming_the_permission(mcp, api):
    api.put(f"{CONTEXT}/entries/docs/a.md").respond(
        403,
        json={
            "status": 403,
            "code": "forbidden",
            "detail": "This credential lacks the permission context:write.",
        },
        headers={"Content-Type": "application/problem+json", "X-Request-ID": "req-403"},
    )
    message = await failure(mcp, "write_entry", {"path": "docs/a.md", "content": "x"})
    assert "403 forbidden" in message and "context:write" in message
    assert "request id req-403" in message and "lacks the permission" in message


async def test_a_stale_etag_says_to_read_again(mcp, api):
    api.put(f"{CONTEXT}/entries/a.md").respond(
        412,
        json={"status": 412, "code": "precondition_failed", "detail": "The entry changed."},
        headers={"Content-Type": "application/problem+json"},
    )
    message = await failure(mcp, "write_entry", {"path": "a.md", "content": "x", "if_match": "e"})
    assert "412 precondition_failed" in message and "current ETag" in message


async def test_a_missing_entry_or_revision_is_a_tool_error(mcp, api):
    api.get(f"{CONTEXT}/entries/nope.md").respond(
        404,
        json={"status": 404, "code": "not_found", "detail": "No entry at nope.md."},
        headers={"Content-Type": "application/problem+json"},
    )
    assert "404 not_found" in await failure(mcp, "read_entry", {"path": "nope.md"})
    api.get(CONTEXT).respond(
        404,
        json={"status": 404, "code": "not_found", "detail": "No revision 99."},
        headers={"Content-Type": "application/problem+json"},
    )
    assert "No revision 99" in await failure(mcp, "diff", {"from_revision": 99})


async def test_a_path_the_client_refuses_is_a_tool_error_before_any_request(mcp, api):
    message = await failure(mcp, "read_entry", {"path": "../etc/passwd"})
    assert "invalid_path" in message and not api.calls


@pytest.mark.parametrize(
    ("tool", "arguments", "field"),
    [
        ("read_entry", {}, "path"),
        ("read_entry", {"path": ""}, "path"),
        ("read_entry", {"path": "a.md", "revision": 0}, "revision"),
        ("read_entry", {"path": "a.md", "max_bytes": 0}, "max_bytes"),
        ("write_entry", {"path": "a.md"}, "content"),
        ("write_entry", {"path": "a.md", "content": 3}, "content"),
        ("get_context", {"max_bytes": -1}, "max_bytes"),
        ("get_context", {"max_bytes": 17 * 1024 * 1024}, "max_bytes"),
        ("list_revisions", {"limit": 0}, "limit"),
        ("diff", {"from_revision": "two"}, "from_revision"),
    ],
)
async def test_invalid_arguments_are_refused_with_the_field_named(mcp, api, tool, arguments, field):
    message = await failure(mcp, tool, arguments)
    assert f"Error executing tool {tool}" in message and field in message
    assert not api.calls


async def test_an_unknown_tool_is_a_tool_error(mcp):
    assert "Unknown tool" in await failure(mcp, "delete_everything", {})
