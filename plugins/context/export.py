"""Project export: every kept revision of a project and its entries as one tar, streamed
(docs/export-import.md).

Members, in this order (each a regular file):

- `project.json`: the format marker, the project (name, slug, description, metadata) and
  which revisions follow (`history_starts_at`, `revision`);
- for each kept revision, oldest first: `revisions/NNNNNNNN.json` (its whole manifest: path ->
  sha256, size, content type, metadata and the revision that wrote that version), then
  `blobs/<sha256>` for each version's bytes not written before (plaintext, once per digest);
- `index.json`: the project and each revision's number, message, actor, time and changes,
  the blobs, and the sha256 and size of every other member.

The metadata (revisions, versions) is read before the first byte goes out, so the archive is
the project at one head revision; the bytes are read through the context's decrypting read
path one entry at a time (never a whole entry in memory) and checked against their digest.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import flask

from ctxcloud import objects
from ctxcloud.plugins.context import archive_crypto
from ctxcloud.plugins.context.export_format import (
    FORMAT,
    INDEX_MEMBER,
    PROJECT_MEMBER,
    VERSION,
    blob_member,
    revision_member,
)
from ctxcloud.plugins.context.models import EntryVersion, Project, Revision

BLOCK = 512


class ExportFailed(Exception):
    """A stored entry did not read back as its recorded digest (the stream stops there)."""


def _time(value: datetime.datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.UTC)
    return value.astimezone(datetime.UTC).isoformat().replace("+00:00", "Z")


def _json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()


def tar_header(name: str, size: int, mtime: float) -> bytes:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = int(mtime)
    info.mode = 0o644
    info.type = tarfile.REGTYPE
    return info.tobuf(format=tarfile.PAX_FORMAT, encoding="utf-8", errors="strict")


def tar_padding(size: int) -> bytes:
    return b"\0" * (-size % BLOCK)


TAR_END = b"\0" * (2 * BLOCK)


@dataclass(frozen=True)
class _Version:
    path: str
    revision: int
    deleted: bool
    object_key: str | None
    size: int
    sha256: str | None
    content_type: str
    metadata: dict
    created_at: datetime.datetime | None

    def manifest_item(self) -> dict[str, Any]:
        return {
            "sha256": self.sha256,
            "size": self.size,
            "content_type": self.content_type,
            "metadata": self.metadata,
            "revision": self.revision,
            "updated_at": _time(self.created_at),
        }


@dataclass(frozen=True)
class ExportPlan:
    """What an export of one project at one head holds, read before any byte is sent."""

    project: Project
    head: int
    first: int  # the oldest kept revision (0 when the project has none)
    revisions: list[Revision]
    versions: list[_Version]  # by revision, then path

    @property
    def filename(self) -> str:
        return f"{self.project.slug}-r{self.head}.tar"


def plan(project: Project) -> ExportPlan:
    head = project.revision
    first = max(project.history_starts_at, 1) if head else 0
    revisions = list(
        Revision.select()
        .where(Revision.project == project.id, Revision.number >= first, Revision.number <= head)
        .order_by(Revision.number)
    )
    rows = (
        EntryVersion.select()
        .where(EntryVersion.project == project.id, EntryVersion.revision <= head)
        .order_by(EntryVersion.revision, EntryVersion.path)
    )
    versions = [
        _Version(
            v.path,
            v.revision,
            v.deleted,
            v.object_key,
            v.size,
            v.sha256,
            v.content_type,
            v.metadata or {},
            v.created_at,
        )
        for v in rows.iterator()
    ]
    return ExportPlan(project, head, first, revisions, versions)


def _project_fields(project: Project) -> dict[str, Any]:
    return {
        "name": project.name,
        "slug": project.slug,
        "description": project.description,
        "metadata": project.metadata or {},
        "created_at": _time(project.created_at),
    }


class _Writer:
    """Tar members as bytes, each member's sha256 and size remembered for the index."""

    def __init__(self) -> None:
        self.files: dict[str, dict[str, Any]] = {}

    def small(self, name: str, data: bytes, mtime: float) -> Iterator[bytes]:
        self.files[name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
        yield tar_header(name, len(data), mtime)
        yield data
        yield tar_padding(len(data))


def archive(app: flask.Flask, tenant_id: str, export: ExportPlan) -> Iterator[bytes]:
    """The plaintext tar of `export`, in pieces (headers, JSON members, entry chunks)."""
    project = export.project
    now = time.time()
    writer = _Writer()
    header = {
        "format": FORMAT,
        "version": VERSION,
        "exported_at": _time(datetime.datetime.now(datetime.UTC)),
        "project": _project_fields(project),
        "history_starts_at": project.history_starts_at,
        "revision": export.head,
    }
    yield from writer.small(PROJECT_MEMBER, _json(header), now)
    state: dict[str, _Version] = {}
    written: set[str] = set()
    pending = iter(export.versions)
    upcoming = next(pending, None)
    index_revisions = []
    for revision in export.revisions:
        while upcoming is not None and upcoming.revision <= revision.number:
            if upcoming.deleted:
                state.pop(upcoming.path, None)
            else:
                state[upcoming.path] = upcoming
            upcoming = next(pending, None)
        manifest = {path: state[path].manifest_item() for path in sorted(state)}
        member = revision_member(revision.number)
        mtime = revision.created_at.replace(tzinfo=datetime.UTC).timestamp()
        yield from writer.small(
            member, _json({"number": revision.number, "manifest": manifest}), mtime
        )
        index_revisions.append(
            {
                "number": revision.number,
                "message": revision.message,
                "actor": revision.actor,
                "created_at": _time(revision.created_at),
                "changes": revision.changes or [],
                "manifest": member,
                "entries": len(manifest),
            }
        )
        for path in sorted(state):
            version = state[path]
            if version.sha256 in written:
                continue
            written.add(version.sha256)
            yield from _blob(app, tenant_id, project.id, version, writer, mtime)
    index = {
        "format": FORMAT,
        "version": VERSION,
        "project": _project_fields(project),
        "history_starts_at": header["history_starts_at"],
        "revision": export.head,
        "revisions": index_revisions,
        "blobs": sorted(written),
        "files": writer.files,
    }
    data = _json(index)
    yield tar_header(INDEX_MEMBER, len(data), now)
    yield data
    yield tar_padding(len(data))
    yield TAR_END


def _blob(
    app: flask.Flask,
    tenant_id: str,
    project_id: str,
    version: _Version,
    writer: _Writer,
    mtime: float,
) -> Iterator[bytes]:
    name = blob_member(version.sha256 or "")
    yield tar_header(name, version.size, mtime)
    digest = hashlib.sha256()
    size = 0
    if version.size:
        # The app's context only while the object is opened (objects.read takes the keys, store
        # and bulkhead from it then): none is held across a yield, so an archive its reader
        # abandons needs no context popped when it is collected.
        with app.app_context():
            chunks = objects.read(tenant_id, project_id, version.object_key, version.size)
        for chunk in chunks:
            digest.update(chunk)
            size += len(chunk)
            yield chunk
    if size != version.size or digest.hexdigest() != version.sha256:
        raise ExportFailed(f"The stored bytes of {version.path!r} do not match their digest.")
    writer.files[name] = {"sha256": version.sha256, "size": version.size}
    yield tar_padding(version.size)


def export_chunks(
    tenant_id: str, export: ExportPlan, passphrase: bytes | None = None
) -> Iterator[bytes]:
    """The archive as it is sent or written: plaintext tar, or encrypted with `passphrase`.
    Called in the app's context; the chunks need none (a response streams them after the
    request's context is gone)."""
    chunks = archive(flask.current_app._get_current_object(), tenant_id, export)
    if passphrase is None:
        return _coalesced(chunks)
    return archive_crypto.encrypt(passphrase, chunks)


COALESCE = 256 * 1024


def _coalesced(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """Tar headers and small members go out together, not one write each."""
    pending: list[bytes] = []
    size = 0
    for chunk in chunks:
        pending.append(chunk)
        size += len(chunk)
        if size >= COALESCE:
            yield b"".join(pending)
            pending, size = [], 0
    if pending:
        yield b"".join(pending)


def find_project(tenant_id: str, ref: str) -> Project | None:
    """The tenant's project by id or slug (the command line's lookup)."""
    field = Project.id if ref.startswith("prj_") else Project.slug
    return Project.of_tenant(tenant_id).where(field == ref).first()
