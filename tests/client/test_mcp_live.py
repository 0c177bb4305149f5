"""`ctx mcp` (ctxcloud_client.mcp_server) against a real server: gunicorn on the stack under
test (embedded, or CTXCLOUD_TEST_STACK=production), driven by the MCP SDK's own client in
process, and once over stdio in a subprocess as an agent would start it. An owner's key reads
and writes; a read-only key reads, and its write comes back as the service's 403 in a tool
error."""

from __future__ import annotations

import base64
import json
import os
import sys
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("mcp", reason="the client's mcp extra: pip install './client[mcp]'")

from ctxcloud_client import Client, CommitPut, Manifest
from ctxcloud_client.mcp_server import build_server
from mcp import Client as MCPClient
from mcp import StdioServerParameters

from tests.support.factories import make_api_key, make_tenant
from tests.support.server import Server, gunicorn

pytestmark = [pytest.mark.server, pytest.mark.anyio]

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def server(app, app_config, tmp_path) -> Iterator[Server]:
    env = {f"CTXCLOUD_{name}": str(value) for name, value in app_config.items()}
    with gunicorn(env, tmp_path / "logs", workers=2) as served:
        yield served


@pytest.fixture
def keys(app) -> dict[str, str]:
    tenant = make_tenant(app, slug="acme", name="ACME")
    return {
        "owner": make_api_key(app, tenant, name="mcp-owner")[1],
        "reader": make_api_key(app, tenant, scopes=["projects:read", "context:read"])[1],
    }


@pytest.fixture
def handbook(server, keys) -> int:
    """Project `handbook`: revision 1 puts two entries, revision 2 changes one and adds one."""
    with Client(server.url, api_key=keys["owner"]) as ctx:
        ctx.create_project("Handbook", slug="handbook")
        ctx.commit(
            "handbook",
            put=[
                CommitPut.text("docs/intro.md", "# Intro\nfirst\n", content_type="text/markdown"),
                CommitPut.binary("data/logo.png", PNG, content_type="image/png"),
            ],
            message="Start",
        )
        revision = ctx.commit(
            "handbook",
            put=[
                CommitPut.text("docs/intro.md", "# Intro\nsecond\n", content_type="text/markdown"),
                CommitPut.text("docs/adr/0001.md", "# ADR 1\n", content_type="text/markdown"),
            ],
            message="Second",
        )
        return revision.revision


async def call(mcp: MCPClient, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    result = await mcp.call_tool(tool, arguments)
    assert not result.is_error, result.content
    return json.loads(result.content[0].text)


async def test_an_agent_reads_writes_and_diffs_the_project(server, keys, handbook):
    with Client(server.url, api_key=keys["owner"]) as ctx:
        async with MCPClient(build_server(ctx, "handbook")) as mcp:
            resources = {r.name: r for r in (await mcp.list_resources()).resources}
            head = ctx.manifest("handbook")
            assert isinstance(head, Manifest)
            assert (
                sorted(resources)
                == head.paths
                == [
                    "data/logo.png",
                    "docs/adr/0001.md",
                    "docs/intro.md",
                ]
            )
            intro = resources["docs/intro.md"]
            assert intro.uri == "ctxcloud://handbook/docs/intro.md"
            assert intro.mime_type == "text/markdown" and intro.size == len("# Intro\nsecond\n")
            text = (await mcp.read_resource(intro.uri)).contents[0]
            assert text.text == "# Intro\nsecond\n"
            blob = (await mcp.read_resource(resources["data/logo.png"].uri)).contents[0]
            assert base64.b64decode(blob.blob) == PNG and blob.mime_type == "image/png"

            context = await call(mcp, "get_context", {"prefix": "docs/", "max_bytes": 12})
            assert context["revision"] == handbook
            contents = {e["path"]: e.get("content") for e in context["entries"]}
            assert contents == {"docs/adr/0001.md": "# ADR 1\n", "docs/intro.md": None}
            assert context["left_out"] == [
                {"path": "docs/intro.md", "size": len("# Intro\nsecond\n"), "reason": "budget"}
            ]
            whole = await call(mcp, "get_context", {})
            reasons = {e["path"]: e.get("content_omitted") for e in whole["entries"]}
            assert reasons == {
                "data/logo.png": "not_text",
                "docs/adr/0001.md": None,
                "docs/intro.md": None,
            }

            first = await call(mcp, "read_entry", {"path": "docs/intro.md", "revision": 1})
            assert first["content"] == "# Intro\nfirst\n" and first["revision"] == 1
            current = await call(mcp, "read_entry", {"path": "docs/intro.md"})

            written = await call(
                mcp,
                "write_entry",
                {
                    "path": "docs/intro.md",
                    "content": "# Intro\nthird\n",
                    "if_match": current["etag"],
                },
            )
            assert written["revision"] == handbook + 1 and written["etag"]
            assert written["content_type"] == "text/markdown" and written["created"] is False
            assert ctx.get_entry("handbook", "docs/intro.md") == b"# Intro\nthird\n"
            stale = await mcp.call_tool(
                "write_entry",
                {"path": "docs/intro.md", "content": "lost", "if_match": current["etag"]},
            )
            assert stale.is_error and "412 precondition_failed" in stale.content[0].text
            assert ctx.get_entry("handbook", "docs/intro.md") == b"# Intro\nthird\n"
            new = await call(mcp, "write_entry", {"path": "notes/todo.md", "content": "- [ ] x\n"})
            assert new["created"] is True and new["revision"] == handbook + 2

            log = await call(mcp, "list_revisions", {"limit": 2})
            assert [r["revision"] for r in log["revisions"]] == [handbook + 2, handbook + 1]
            assert log["more"] is True
            assert log["revisions"][1]["changes"] == [{"path": "docs/intro.md", "action": "put"}]

            diff = await call(mcp, "diff", {"from_revision": 1})
            assert diff["to_revision"] == handbook + 2
            assert diff["added"] == ["docs/adr/0001.md", "notes/todo.md"]
            assert diff["removed"] == [] and diff["changed"] == ["docs/intro.md"]
            shown = {d["path"]: d["diff"] for d in diff["diffs"]}
            assert "-first\n+third\n" in shown["docs/intro.md"]
            assert "+- [ ] x" in shown["notes/todo.md"]
            assert diff["diffs_omitted"] == []

            missing = await mcp.call_tool("read_entry", {"path": "docs/none.md"})
            assert missing.is_error and "404 not_found" in missing.content[0].text


async def test_a_read_only_key_reads_and_its_write_is_refused(server, keys, handbook):
    with Client(server.url, api_key=keys["reader"]) as ctx:
        async with MCPClient(build_server(ctx, "handbook")) as mcp:
            assert len((await mcp.list_resources()).resources) == 3
            text = await mcp.read_resource("ctxcloud://handbook/docs/intro.md")
            assert text.contents[0].text == "# Intro\nsecond\n"
            assert (await call(mcp, "list_revisions", {}))["revisions"][0]["revision"] == handbook

            refused = await mcp.call_tool(
                "write_entry", {"path": "docs/intro.md", "content": "# Mine\n"}
            )
            assert refused.is_error
            message = refused.content[0].text
            assert "403" in message and "lacks the permission" in message
            assert "request id" in message
    with Client(server.url, api_key=keys["owner"]) as owner:
        assert owner.get_entry("handbook", "docs/intro.md") == b"# Intro\nsecond\n"


async def test_served_over_stdio_as_an_agent_starts_it(server, keys, handbook):
    code = (
        "import os\n"
        "from ctxcloud_client import Client\n"
        "from ctxcloud_client.mcp_server import serve_stdio\n"
        "client = Client(os.environ['CTX_URL'], api_key=os.environ['CTX_API_KEY'])\n"
        "serve_stdio(client, 'handbook')\n"
    )
    parameters = StdioServerParameters(
        command=sys.executable,
        args=["-c", code],
        env={**os.environ, "CTX_URL": server.url, "CTX_API_KEY": keys["reader"]},
    )
    async with MCPClient(parameters) as mcp:
        tools = {tool.name for tool in (await mcp.list_tools()).tools}
        assert tools == {"get_context", "read_entry", "write_entry", "list_revisions", "diff"}
        uris = [r.uri for r in (await mcp.list_resources()).resources]
        assert "ctxcloud://handbook/docs/adr/0001.md" in uris
        context = await call(mcp, "get_context", {"prefix": "docs/adr/"})
        assert context["entries"][0]["content"] == "# ADR 1\n"
        refused = await mcp.call_tool("write_entry", {"path": "x.md", "content": "x"})
        assert refused.is_error and "403" in refused.content[0].text
