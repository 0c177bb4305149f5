"""`ctx mcp --project P`: one project's context served to an agent over MCP (stdio).

The entries are resources (`ctxcloud://{project}/{path}`; the list is the manifest), and five
tools read, write, list revisions and diff. Everything goes through one `Client`, so the
service decides what the credential may do: a refusal (a read-only key's write, say) comes back
as a tool error the model can read, never a crash. Needs the `mcp` extra
(`pip install 'ctxcloud-client[mcp]'`).
"""

from __future__ import annotations

import base64
import codecs
import difflib
import hashlib
import itertools
import mimetypes
from collections.abc import Callable
from typing import Annotated, Any, TypeVar
from urllib.parse import quote, unquote

try:
    import anyio.to_thread
    from mcp.server.lowlevel.helper_types import ReadResourceContents
    from mcp.server.mcpserver import MCPServer
    from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError, ToolError
    from mcp.shared.exceptions import MCPError
    from mcp_types import INTERNAL_ERROR, Resource, ResourceTemplate, ToolAnnotations
    from pydantic import Field
except ImportError as exc:  # pragma: no cover - depends on how the client was installed
    raise ImportError("`ctx mcp` needs the MCP SDK: pip install 'ctxcloud-client[mcp]'") from exc

from ctxcloud_client import errors
from ctxcloud_client.client import Client
from ctxcloud_client.diff import diff_manifests
from ctxcloud_client.models import Entry, Manifest, NotModified

URI_SCHEME = "ctxcloud"

# Bounds, in bytes. The manifest's inlining budget is the service's own bound (16 MiB).
DEFAULT_CONTEXT_BYTES = 64 * 1024
MAX_CONTEXT_BYTES = 16 * 1024 * 1024
DEFAULT_READ_BYTES = 256 * 1024
MAX_READ_BYTES = 16 * 1024 * 1024
MAX_RESOURCE_BYTES = 16 * 1024 * 1024
DEFAULT_DIFF_BYTES = 64 * 1024
MAX_DIFF_BYTES = 4 * 1024 * 1024
DIFF_ENTRY_LIMIT = 1024 * 1024  # a side larger than this is not fetched to be diffed
DEFAULT_REVISIONS = 20
MAX_REVISIONS = 1000
MAX_PATH_CHARS = 1024

# What the service inlines as text (plugins/context/service.py `is_text`), and what it means.
TEXT_TYPES = frozenset(
    {
        "application/json",
        "application/xml",
        "application/yaml",
        "application/x-yaml",
        "application/toml",
        "application/javascript",
        "application/x-ndjson",
    }
)
OMITTED_REASONS = {
    "budget": "over the byte budget (raise max_bytes or narrow the prefix)",
    "not_text": "not text (read_entry gives it as base64, or read its resource)",
    "not_utf8": "text that is not UTF-8 (read_entry gives it as base64)",
}
# Content types guessed from a path's extension when write_entry is given none.
TEXT_EXTENSIONS = {
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".txt": "text/plain",
    ".json": "application/json",
    ".yaml": "application/yaml",
    ".yml": "application/yaml",
    ".toml": "application/toml",
    ".xml": "application/xml",
    ".ndjson": "application/x-ndjson",
    ".js": "application/javascript",
}
DEFAULT_TEXT_TYPE = "text/plain; charset=utf-8"

T = TypeVar("T")

PathArg = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_PATH_CHARS,
        description="The entry's path in the project, e.g. docs/intro.md (no leading slash)",
    ),
]
RevisionArg = Annotated[int, Field(ge=1, description="A revision number of the project")]


def is_text(content_type: str) -> bool:
    """Whether the service treats `content_type` as text (the same rule as its manifest)."""
    base = content_type.split(";", 1)[0].strip().lower()
    return (
        base.startswith("text/")
        or base in TEXT_TYPES
        or base.endswith("+json")
        or base.endswith("+xml")
    )


def entry_uri(project: str, path: str) -> str:
    """The resource URI of an entry: `ctxcloud://{project}/{path}`, path percent-encoded."""
    return f"{URI_SCHEME}://{quote(project, safe='')}/{quote(path, safe='/')}"


def entry_path(project: str, uri: str) -> str | None:
    """The entry path a resource URI of `project` names, or None when it names none."""
    prefix = f"{URI_SCHEME}://{quote(project, safe='')}/"
    if not uri.startswith(prefix) or len(uri) == len(prefix):
        return None
    return unquote(uri[len(prefix) :])


def refusal(action: str, error: errors.CtxcloudError) -> str:
    """A service error as a sentence the model can act on."""
    text = f"{action}: {error}".rstrip()
    if not text.endswith("."):
        text += "."
    if isinstance(error, errors.Unauthorized):
        return text + " The credential `ctx mcp` runs with was refused (check CTX_API_KEY)."
    if isinstance(error, errors.QuotaExceeded | errors.TenantSuspended):
        return text
    if isinstance(error, errors.Forbidden):
        return text + " The credential `ctx mcp` runs with lacks the permission for this."
    if isinstance(error, errors.PreconditionFailed):
        return text + " Read the entry again for its current ETag before writing."
    return text


class ProjectContext:
    """The tools' and resources' behaviour for one project, over a (synchronous) Client.

    Every method returns JSON-serialisable data or raises `ToolError`/`ResourceError` with a
    sentence for the model; the MCP layer around it only runs it in a worker thread.
    """

    def __init__(self, client: Client, project: str) -> None:
        self.client = client
        self.project = project

    def _call(self, action: str, call: Callable[[], T]) -> T:
        try:
            return call()
        except errors.CtxcloudError as error:
            raise ToolError(refusal(action, error)) from error
        except ValueError as error:  # the client refused an argument before sending
            raise ToolError(f"{action}: {error}") from error

    def _manifest(self, action: str, **kwargs: Any) -> Manifest:
        manifest = self._call(action, lambda: self.client.manifest(self.project, **kwargs))
        if isinstance(manifest, NotModified):  # never: no If-None-Match is sent
            raise ToolError(f"{action}: the service answered 304 Not Modified unasked")
        return manifest

    # ---- tools ------------------------------------------------------------------------

    def get_context(self, prefix: str = "", max_bytes: int = DEFAULT_CONTEXT_BYTES) -> dict:
        manifest = self._manifest(
            "get_context",
            prefix=prefix or None,
            include_content=True,
            max_bytes=max_bytes,
        )
        entries, left_out = [], []
        for entry in manifest.entries:
            item = _entry_json(entry)
            if entry.content is not None:
                item["content"] = entry.content
            else:
                reason = entry.content_omitted or "unspecified"
                item["content_omitted"] = reason
                left_out.append({"path": entry.path, "size": entry.size, "reason": reason})
            entries.append(item)
        return {
            "project": self.project,
            "revision": manifest.revision,
            "prefix": prefix,
            "max_bytes": max_bytes,
            "total_size": manifest.total_size,
            "content_truncated": manifest.content_truncated,
            "entries": entries,
            "left_out": left_out,
            "note": _left_out_note(len(entries), left_out),
        }

    def read_entry(
        self, path: str, revision: int | None = None, max_bytes: int = DEFAULT_READ_BYTES
    ) -> dict:
        action = f"read_entry {path!r}"
        stream = self._call(action, lambda: self.client.stream_entry(self.project, path, revision))
        with stream:
            entry = stream.entry
            text = is_text(entry.content_type)
            if not text and entry.size > max_bytes:
                return {
                    **_entry_json(entry),
                    "content_omitted": f"{entry.size} bytes of binary content, more than "
                    f"max_bytes ({max_bytes}); raise max_bytes to read it as base64",
                }
            data, complete = self._call(action, lambda: _read_up_to(stream, max_bytes, entry))
        answer = {**_entry_json(entry), "truncated": not complete}
        if text:
            decoder = codecs.getincrementaldecoder("utf-8")()
            try:
                answer["content"] = decoder.decode(data, final=complete)
                return answer
            except UnicodeDecodeError:
                if not complete:
                    answer["content_omitted"] = (
                        f"text that is not UTF-8, larger than max_bytes ({max_bytes}); "
                        "raise max_bytes to read it whole as base64"
                    )
                    return answer
        answer["content_base64"] = base64.b64encode(data).decode("ascii")
        return answer

    def write_entry(
        self,
        path: str,
        content: str,
        content_type: str | None = None,
        if_match: str | None = None,
    ) -> dict:
        chosen = content_type or guess_text_type(path)
        written = self._call(
            f"write_entry {path!r}",
            lambda: self.client.put_entry(
                self.project,
                path,
                content.encode("utf-8"),
                content_type=chosen,
                if_match=if_match or None,
            ),
        )
        return {**_entry_json(written), "created": written.created}

    def list_revisions(self, limit: int = DEFAULT_REVISIONS) -> dict:
        def fetch() -> list:
            revisions = self.client.list_revisions(self.project, page_size=min(limit + 1, 1000))
            return list(itertools.islice(revisions, limit + 1))

        found = self._call("list_revisions", fetch)
        return {
            "project": self.project,
            "revisions": [
                {
                    "revision": r.revision,
                    "created_at": r.created_at.isoformat() if r.created_at else None,
                    "actor": r.actor,
                    "message": r.message,
                    "changes": [{"path": c.path, "action": c.action} for c in r.changes],
                }
                for r in found[:limit]
            ],
            "more": len(found) > limit,
        }

    def diff(
        self,
        from_revision: int,
        to_revision: int | None = None,
        prefix: str = "",
        max_bytes: int = DEFAULT_DIFF_BYTES,
    ) -> dict:
        old = self._manifest("diff", revision=from_revision, prefix=prefix or None)
        new = self._manifest("diff", revision=to_revision, prefix=prefix or None)
        change = diff_manifests(old, new)
        status = {p: "added" for p in change.added}
        status |= {p: "removed" for p in change.removed}
        status |= {p: "changed" for p in change.changed}
        diffs, omitted, budget = [], [], max_bytes
        for path in sorted(status):
            before, after = old.get(path), new.get(path)
            reason = _undiffable(before, after, budget)
            if reason is None:
                old_text = self._text_at(path, before, old.revision)
                new_text = self._text_at(path, after, new.revision)
                if old_text is None or new_text is None:
                    reason = "not_utf8"
                else:
                    text = _unified(path, old_text, new_text, old.revision, new.revision)
                    size = len(text.encode("utf-8"))
                    if size <= budget:
                        budget -= size
                        diffs.append({"path": path, "status": status[path], "diff": text})
                        continue
                    reason = "budget"
            omitted.append({"path": path, "status": status[path], "reason": reason})
        return {
            "project": self.project,
            "from_revision": old.revision,
            "to_revision": new.revision,
            "prefix": prefix,
            "added": list(change.added),
            "removed": list(change.removed),
            "changed": list(change.changed),
            "diffs": diffs,
            "diffs_omitted": omitted,
        }

    def _text_at(self, path: str, entry: Entry | None, revision: int) -> str | None:
        if entry is None:
            return ""
        data = self._call(
            f"diff: reading {path!r} at revision {revision}",
            lambda: self.client.get_entry(self.project, path, revision),
        )
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return None

    # ---- resources --------------------------------------------------------------------

    def resources(self) -> list[Resource]:
        try:
            manifest = self._manifest("resources/list")
        except ToolError as error:  # resources/list has no error result of its own
            raise MCPError(code=INTERNAL_ERROR, message=str(error)) from error
        return [
            Resource(
                uri=entry_uri(self.project, entry.path),
                name=entry.path,
                mime_type=entry.content_type or None,
                size=entry.size,
            )
            for entry in manifest.entries
        ]

    def resource_template(self) -> ResourceTemplate:
        return ResourceTemplate(
            uri_template=f"{URI_SCHEME}://{quote(self.project, safe='')}/{{+path}}",
            name="entry",
            description=f"An entry of project {self.project} by its path",
        )

    def read_resource(self, uri: str) -> ReadResourceContents:
        path = entry_path(self.project, uri)
        if path is None:
            raise ResourceNotFoundError(
                f"{uri} is not an entry of project {self.project}: "
                f"expected {entry_uri(self.project, '<path>')}"
            )
        try:
            with self.client.stream_entry(self.project, path) as stream:
                entry = stream.entry
                if entry.size > MAX_RESOURCE_BYTES:
                    raise ResourceError(
                        f"{path} holds {entry.size} bytes, more than a resource read serves "
                        f"({MAX_RESOURCE_BYTES}); use the read_entry tool with max_bytes"
                    )
                data, _ = _read_up_to(stream, MAX_RESOURCE_BYTES, entry)
        except errors.NotFound as error:
            raise ResourceNotFoundError(refusal(f"resources/read {uri}", error)) from error
        except errors.CtxcloudError as error:
            raise ResourceError(refusal(f"resources/read {uri}", error)) from error
        if is_text(entry.content_type):
            try:
                return ReadResourceContents(data.decode("utf-8"), mime_type=entry.content_type)
            except UnicodeDecodeError:
                pass
        return ReadResourceContents(data, mime_type=entry.content_type or None)


class ProjectServer(MCPServer):
    """MCPServer whose resources are the project's entries as the service lists them now."""

    def __init__(self, context: ProjectContext, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.context = context

    async def list_resources(self) -> list[Resource]:
        return await anyio.to_thread.run_sync(self.context.resources)

    async def list_resource_templates(self) -> list[ResourceTemplate]:
        return [self.context.resource_template()]

    async def read_resource(self, uri: Any, context: Any = None) -> list[ReadResourceContents]:
        return [await anyio.to_thread.run_sync(self.context.read_resource, str(uri))]


def build_server(client: Client, project: str) -> ProjectServer:
    """The MCP server for `project` (not started): tools and resources over `client`."""
    context = ProjectContext(client, project)
    server = ProjectServer(
        context,
        name="ctxcloud",
        title=f"ctxcloud: {project}",
        instructions=(
            f"The versioned context of project {project!r} in ctxcloud. Start with get_context "
            "(the manifest with text inlined up to a budget); read_entry reads one entry, "
            "write_entry writes one (pass the ETag you read as if_match to not overwrite "
            "someone else's change); list_revisions and diff show history."
        ),
        version=_version(),
        log_level="WARNING",
    )
    reading = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)

    @server.tool(annotations=reading)
    def get_context(
        prefix: Annotated[
            str,
            Field(max_length=MAX_PATH_CHARS, description="Only entries under this, e.g. docs/"),
        ] = "",
        max_bytes: Annotated[
            int,
            Field(
                ge=0,
                le=MAX_CONTEXT_BYTES,
                description="Budget for the inlined text, in bytes, across all entries",
            ),
        ] = DEFAULT_CONTEXT_BYTES,
    ) -> dict[str, Any]:
        """The project's manifest at its head (every entry's path, size, type, revision), with
        the text of text entries inlined up to `max_bytes` in all; `left_out` names each entry
        whose content is absent and why (over the budget, or not text)."""
        return context.get_context(prefix, max_bytes)

    @server.tool(annotations=reading)
    def read_entry(
        path: PathArg,
        revision: Annotated[
            int | None, Field(ge=1, description="Read it as it was at this revision")
        ] = None,
        max_bytes: Annotated[
            int,
            Field(ge=1, le=MAX_READ_BYTES, description="Return at most this many bytes"),
        ] = DEFAULT_READ_BYTES,
    ) -> dict[str, Any]:
        """One entry: its text as `content` (cut at `max_bytes`, then `truncated` is true), or
        binary content as `content_base64`; with its `etag` for a later write_entry."""
        return context.read_entry(path, revision, max_bytes)

    @server.tool(
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=True, idempotent_hint=True
        )
    )
    def write_entry(
        path: PathArg,
        content: Annotated[str, Field(description="The entry's whole new text (UTF-8)")],
        content_type: Annotated[
            str | None,
            Field(
                max_length=255,
                description="e.g. text/markdown; default: guessed from the path's extension, "
                "else text/plain",
            ),
        ] = None,
        if_match: Annotated[
            str | None,
            Field(
                max_length=255,
                description="The ETag the entry had when you read it: the write is refused "
                "if it changed since",
            ),
        ] = None,
    ) -> dict[str, Any]:
        """Create or replace one entry with text; each write is a new revision of the project.
        Returns the new `revision` and `etag`."""
        return context.write_entry(path, content, content_type, if_match)

    @server.tool(annotations=reading)
    def list_revisions(
        limit: Annotated[
            int, Field(ge=1, le=MAX_REVISIONS, description="How many, newest first")
        ] = DEFAULT_REVISIONS,
    ) -> dict[str, Any]:
        """The project's latest revisions, newest first: number, time, who, message and the
        paths each put or deleted; `more` says whether older ones exist."""
        return context.list_revisions(limit)

    @server.tool(annotations=reading)
    def diff(
        from_revision: RevisionArg,
        to_revision: Annotated[
            int | None, Field(ge=1, description="The later revision (default: the head)")
        ] = None,
        prefix: Annotated[
            str, Field(max_length=MAX_PATH_CHARS, description="Only paths under this")
        ] = "",
        max_bytes: Annotated[
            int,
            Field(ge=0, le=MAX_DIFF_BYTES, description="Budget for the unified diffs, in bytes"),
        ] = DEFAULT_DIFF_BYTES,
    ) -> dict[str, Any]:
        """What changed between two revisions: added, removed and changed paths, and unified
        diffs of text entries up to `max_bytes` in all (`diffs_omitted` says which are not
        shown and why)."""
        return context.diff(from_revision, to_revision, prefix, max_bytes)

    return server


def serve_stdio(client: Client, project: str) -> None:
    """Serve `project` over MCP on stdin/stdout until the agent closes the connection."""
    build_server(client, project).run("stdio")


def guess_text_type(path: str) -> str:
    """A text content type for `path` from its extension, else text/plain (UTF-8)."""
    dot = path.rfind(".")
    extension = path[dot:].lower() if dot > path.rfind("/") else ""
    if extension in TEXT_EXTENSIONS:
        return TEXT_EXTENSIONS[extension]
    guessed, _ = mimetypes.guess_type(path, strict=False)
    return guessed if guessed and is_text(guessed) else DEFAULT_TEXT_TYPE


def _version() -> str:
    from ctxcloud_client import __version__

    return __version__


def _entry_json(entry: Entry) -> dict[str, Any]:
    item: dict[str, Any] = {
        "path": entry.path,
        "size": entry.size,
        "content_type": entry.content_type,
        "revision": entry.revision,
        "sha256": entry.sha256,
    }
    if entry.etag:
        item["etag"] = entry.etag
    if entry.metadata:
        item["metadata"] = entry.metadata
    return item


def _left_out_note(count: int, left_out: list[dict[str, Any]]) -> str:
    if not left_out:
        return f"All {count} entries are inlined."
    reasons: dict[str, int] = {}
    for item in left_out:
        reasons[item["reason"]] = reasons.get(item["reason"], 0) + 1
    parts = [f"{n} {OMITTED_REASONS.get(reason, reason)}" for reason, n in sorted(reasons.items())]
    return f"{len(left_out)} of {count} entries' content left out: " + "; ".join(parts) + "."


def _read_up_to(stream: Any, limit: int, entry: Entry) -> tuple[bytes, bool]:
    """At most `limit` bytes of an entry stream, and whether that is all of it (then checked
    against the SHA-256 the service sent)."""
    buffer = bytearray()
    complete = True
    for chunk in stream:
        if len(buffer) + len(chunk) > limit:
            buffer.extend(chunk[: limit - len(buffer)])
            complete = False
            break
        buffer.extend(chunk)
    data = bytes(buffer)
    if complete and entry.sha256 and hashlib.sha256(data).hexdigest() != entry.sha256.lower():
        raise errors.ContentMismatch(
            f"{entry.path}: received bytes do not hash to the SHA-256 the service sent."
        )
    return data, complete


def _undiffable(before: Entry | None, after: Entry | None, budget: int) -> str | None:
    """Why a path's change is not shown as a unified diff (None: it can be)."""
    sides = [e for e in (before, after) if e is not None]
    if not all(is_text(e.content_type) for e in sides):
        return "not_text"
    if any(e.size > DIFF_ENTRY_LIMIT for e in sides):
        return "too_large"
    if budget <= 0:
        return "budget"
    return None


def _unified(path: str, old: str, new: str, old_rev: int, new_rev: int) -> str:
    lines = difflib.unified_diff(
        old.splitlines(keepends=True),
        new.splitlines(keepends=True),
        fromfile=f"a/{path}@{old_rev}",
        tofile=f"b/{path}@{new_rev}",
    )
    return "".join(
        line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines
    )
