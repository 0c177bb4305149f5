"""Project import: an archive of `export.py` becomes a new project of the importing tenant,
with the same revision numbers, messages, actors and times, and the same bytes at every
revision, encrypted under that tenant's key (docs/export-import.md).

All or nothing: the archive is read once, as it streams; each entry's bytes are stored
(encrypted, under the new project's id) as they arrive and checked against their digest, and
the rows are written in one transaction only after the whole archive was read and found
consistent. Whatever fails (a tampered or cut archive, a quota, a slug clash) deletes every
object stored so far and leaves no row.

What is refused, as 400 `invalid_archive` unless said otherwise: a member that is not a
regular file (links, devices, directories), an unknown, duplicate or misplaced member name,
a member past its size bound, a digest or size that does not match, an index that disagrees
with the members (revisions, manifests, blobs, changes), a manifest that names bytes the
archive does not hold, invalid JSON, paths or types; a wrong passphrase (`wrong_passphrase`);
a body past CTXCLOUD_MAX_IMPORT_BYTES (413), an entry past the tenant's max_entry_bytes
(413 `entry_too_large`), past the tenant's projects or storage quota (403), a type the tenant
does not allow (415), a slug the tenant has (409).
"""

from __future__ import annotations

import datetime
import hashlib
import io
import json
import re
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import peewee

from ctxcloud import (
    CHUNK_SIZE,
    SLUG_PATTERN,
    Conflict,
    PayloadTooLarge,
    ProblemError,
    UnsupportedMediaType,
    ValidationFailed,
    database,
    new_id,
    objects,
    read_json,
    tenancy,
)
from ctxcloud.plugins.context import archive_crypto, hot_rows, options, write_rules
from ctxcloud.plugins.context.export_format import (
    BLOB_MEMBER,
    FORMAT,
    INDEX_MEMBER,
    MAX_JSON_MEMBER,
    MAX_PROJECT_MEMBER,
    PROJECT_MEMBER,
    REVISION_MEMBER,
    VERSION,
    InvalidArchive,
    PassphraseRequired,
    WrongPassphrase,
    revision_member,
)
from ctxcloud.plugins.context.models import Entry, EntryVersion, Project, Revision
from ctxcloud.plugins.context.paths import validate_path
from ctxcloud.plugins.context.problems import EntryTooLarge

_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_SLUG = re.compile(SLUG_PATTERN)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_METADATA_BYTES = 64 * 1024
MAX_REVISION = 2**62
INSERT_BATCH = 500


class BoundedReader(io.RawIOBase):
    """A binary stream read at most `limit` bytes far: past it, PayloadTooLarge."""

    def __init__(self, stream: BinaryIO, limit: int) -> None:
        self._stream = stream
        self._limit = limit
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer)
        data = self._stream.read(len(view))
        if not data:
            return 0
        self.read_bytes += len(data)
        if self.read_bytes > self._limit:
            raise PayloadTooLarge(f"The archive is larger than the limit of {self._limit} bytes.")
        view[: len(data)] = data
        return len(data)


class ChunkReader(io.RawIOBase):
    """A binary stream over an iterator of byte chunks (the decrypted archive)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._pending = b""
        self._at = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer)
        while self._at >= len(self._pending):
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._pending, self._at = chunk, 0
        size = min(len(view), len(self._pending) - self._at)
        view[:size] = self._pending[self._at : self._at + size]
        self._at += size
        return size


def _decrypted(passphrase: bytes, stream: BinaryIO) -> Iterator[bytes]:
    try:
        yield from archive_crypto.decrypt(passphrase, stream)
    except archive_crypto.ArchiveCryptoError as exc:
        if exc.reason == "wrong_passphrase":
            raise WrongPassphrase(str(exc)) from None
        raise InvalidArchive(str(exc)) from None


def plaintext(stream: BinaryIO, passphrase: bytes | None) -> BinaryIO:
    """The archive's tar bytes: decrypted when it is encrypted (a passphrase then required)."""
    buffered = io.BufferedReader(stream, buffer_size=CHUNK_SIZE)  # type: ignore[arg-type]
    head = buffered.peek(len(archive_crypto.MAGIC))[: len(archive_crypto.MAGIC)]
    if not head:
        raise InvalidArchive("The body is empty: send a project archive.")
    if archive_crypto.is_encrypted(head):
        if passphrase is None:
            raise PassphraseRequired("The archive is encrypted: give its passphrase.")
        return io.BufferedReader(ChunkReader(_decrypted(passphrase, buffered)), CHUNK_SIZE)
    if passphrase is not None:
        # An archive swapped for a plaintext one must not pass as the encrypted one.
        raise InvalidArchive("A passphrase was given but the archive is not encrypted.")
    return buffered  # type: ignore[return-value]


@dataclass
class _Row:
    path: str
    revision: int
    deleted: bool
    sha256: str | None = None
    size: int = 0
    content_type: str = ""
    metadata: dict = field(default_factory=dict)
    object_key: str | None = None
    created_at: datetime.datetime | None = None


@dataclass
class _Import:
    """What the archive said so far, checked as it streams."""

    tenant: Any
    project_id: str
    slug: str | None
    header: dict | None = None
    first: int = 0
    head: int = 0
    next_number: int = 0
    previous: dict[str, dict] = field(default_factory=dict)
    rows: list[_Row] = field(default_factory=list)
    revisions: list[dict] = field(default_factory=list)  # number, member, entries, diff
    referenced: set[str] = field(default_factory=set)
    staged: dict[str, objects.StoredObject] = field(default_factory=dict)
    files: dict[str, dict] = field(default_factory=dict)  # member -> sha256, size
    index: dict | None = None
    stored_keys: list[str] = field(default_factory=list)
    total_bytes: int = 0


def import_archive(
    tenant: Any,
    stream: BinaryIO,
    *,
    max_bytes: int,
    slug: str | None = None,
    passphrase: bytes | None = None,
) -> Project:
    """Read an archive from `stream` into a new project of `tenant`; the project, or a
    refusal with nothing kept."""
    if slug is not None and not _SLUG.match(slug):
        raise ValidationFailed({"slug": ["Not a valid slug."]})
    with database.atomic():
        tenancy.check_quota(tenant, "max_projects", Project.of_tenant(tenant.id).count)
    if slug is not None:
        _check_free(tenant, slug)
    state = _Import(tenant=tenant, project_id=new_id("prj"), slug=slug)
    try:
        tar_bytes = plaintext(BoundedReader(stream, max_bytes), passphrase)  # type: ignore[arg-type]
        _read_members(state, tar_bytes)
        _check_index(state)
        _store_copies(state)
        project = _write_rows(state)
    except BaseException:
        objects.delete_quietly(state.stored_keys)
        raise
    hot_rows.changed(project.tenant_id)  # a cached "no such project" under its slug is wrong
    return project


def _check_free(tenant: Any, slug: str) -> None:
    if Project.of_tenant(tenant.id).where(Project.slug == slug).exists():
        raise Conflict(
            f"A project with the slug {slug!r} exists: import under another slug "
            "(`slug` query parameter, `--slug`)."
        )


# The tar module reads a pax or GNU long-name header whole, before any member is seen: such a
# header is refused past this size (a member name here is at most 80 bytes).
MAX_EXTENDED_HEADER = 64 * 1024
_EXTENDED = {
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
}


class _BoundedTarInfo(tarfile.TarInfo):
    def _proc_member(self, tarfile_: tarfile.TarFile) -> tarfile.TarInfo:
        if self.type in _EXTENDED and self.size > MAX_EXTENDED_HEADER:
            raise InvalidArchive(f"An extended tar header of {self.size} bytes is refused.")
        return super()._proc_member(tarfile_)


def _read_members(state: _Import, stream: BinaryIO) -> None:
    try:
        with tarfile.open(fileobj=stream, mode="r|", errorlevel=2, tarinfo=_BoundedTarInfo) as tar:
            for member in tar:
                _member(state, tar, member)
        # Read to the end: an encrypted archive's last segment is checked there (a cut one
        # fails), and bytes past the bound are refused even after the tar's end.
        while stream.read(CHUNK_SIZE):
            pass
    except (tarfile.TarError, EOFError) as exc:
        raise InvalidArchive(f"The body is not a readable tar archive ({exc}).") from None
    if state.index is None:
        raise InvalidArchive("The archive ends without its index.json: it was cut short.")


def _member(state: _Import, tar: tarfile.TarFile, member: tarfile.TarInfo) -> None:
    name = member.name
    shown = name[:120]
    if member.type not in (tarfile.REGTYPE, tarfile.AREGTYPE) or member.issparse():
        raise InvalidArchive(
            f"The member {shown!r} is not a regular file (links, devices and "
            "directories are refused)."
        )
    if state.index is not None:
        raise InvalidArchive(f"The member {shown!r} follows index.json, which must be last.")
    if name in state.files:
        raise InvalidArchive(f"The member {shown!r} appears twice.")
    if state.header is None and name != PROJECT_MEMBER:
        raise InvalidArchive("The archive must begin with project.json.")
    if name == PROJECT_MEMBER:
        data = _read_small(tar, member, MAX_PROJECT_MEMBER)
        state.files[name] = _digest(data)
        _project(state, _parse(data, name))
    elif name == INDEX_MEMBER:
        data = _read_small(tar, member, MAX_JSON_MEMBER)
        state.index = _parse(data, name)
    elif matched := REVISION_MEMBER.match(name):
        data = _read_small(tar, member, MAX_JSON_MEMBER)
        state.files[name] = _digest(data)
        _revision(state, name, int(matched.group(1)), _parse(data, name))
    elif matched := BLOB_MEMBER.match(name):
        _blob(state, tar, member, matched.group(1))
    else:
        raise InvalidArchive(f"Unknown member {shown!r} in the archive.")


def _digest(data: bytes) -> dict:
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def _read_small(tar: tarfile.TarFile, member: tarfile.TarInfo, limit: int) -> bytes:
    if member.size > limit:
        raise InvalidArchive(f"The member {member.name!r} is larger than {limit} bytes.")
    reader = tar.extractfile(member)
    assert reader is not None
    data = reader.read()
    if len(data) != member.size:
        raise InvalidArchive(f"The member {member.name!r} is cut short.")
    return data


def _parse(data: bytes, name: str) -> dict:
    try:
        value = read_json(data, what=name)
    except ProblemError as exc:
        raise InvalidArchive(exc.detail) from None
    if not isinstance(value, dict):
        raise InvalidArchive(f"{name} is not a JSON object.")
    return value


def _want(condition: bool, message: str) -> None:
    if not condition:
        raise InvalidArchive(message)


def _is_int(value: Any, low: int = 0, high: int = MAX_REVISION) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _project(state: _Import, header: dict) -> None:
    _want(header.get("format") == FORMAT, "project.json does not mark a ctxcloud project export.")
    _want(
        header.get("version") == VERSION,
        f"Unknown archive version {str(header.get('version'))[:20]} (this service reads 1).",
    )
    project = header.get("project")
    _want(isinstance(project, dict), "project.json holds no project.")
    _want(
        isinstance(project.get("name"), str) and 0 < len(project["name"]) <= 200,
        "The project's name is missing or too long.",
    )
    _want(
        isinstance(project.get("slug"), str) and bool(_SLUG.match(project["slug"])),
        "The project's slug is not valid.",
    )
    _want(isinstance(project.get("description"), str), "The project's description is missing.")
    _want(isinstance(project.get("metadata"), dict), "The project's metadata is not an object.")
    starts, head = header.get("history_starts_at"), header.get("revision")
    _want(_is_int(head) and _is_int(starts, 0, head), "project.json's revisions are not valid.")
    state.header = header
    state.head = head
    state.first = max(starts, 1) if head else 0
    state.next_number = state.first
    if state.slug is None:
        _check_free(state.tenant, project["slug"])


def _revision(state: _Import, name: str, number: int, data: dict) -> None:
    _want(
        state.head > 0 and number == state.next_number and name == revision_member(number),
        f"{name[:120]} is out of order: revision {state.next_number} was due.",
    )
    _want(data.get("number") == number, f"{name} names another revision.")
    manifest = data.get("manifest")
    _want(isinstance(manifest, dict), f"{name} holds no manifest.")
    tenant = state.tenant
    first = number == state.first
    puts, deletes = [], []
    for path, item in manifest.items():
        if state.previous.get(path) == item:
            _want(
                item["revision"] != number,
                f"{name}: {path!r} has a new version but the same state.",
            )
            continue
        _entry(state, name, number, path, item)
        _want(
            first or item["revision"] == number,
            f"{name}: {path!r} changed without a new version.",
        )
        puts.append(path)
        state.rows.append(
            _Row(
                path,
                item["revision"],
                False,
                item["sha256"],
                item["size"],
                item["content_type"],
                item["metadata"],
                created_at=_timestamp(item["updated_at"], f"{name}: {path!r}"),
            )
        )
        state.total_bytes += item["size"]
        state.referenced.add(item["sha256"])
        if not options.allows_content_type(tenant, item["content_type"]):
            base = item["content_type"].split(";", 1)[0].strip()
            raise UnsupportedMediaType(
                f"The tenant allows no entries of type {base!r} ({path!r}).",
                allowed=tenant.setting("allowed_content_types"),
            )
    if not first:
        for path in state.previous:
            if path not in manifest:
                deletes.append(path)
                state.rows.append(_Row(path, number, True))
    state.previous = manifest
    state.revisions.append(
        {
            "number": number,
            "member": name,
            "entries": len(manifest),
            "puts": sorted(p for p in puts if manifest[p]["revision"] == number),
            "deletes": sorted(deletes),
            "first": first,
        }
    )
    state.next_number += 1


def _entry(state: _Import, name: str, number: int, path: Any, item: Any) -> None:
    _want(isinstance(item, dict), f"{name}: a manifest item is not an object.")
    try:
        normal = validate_path(path) if isinstance(path, str) else None
    except ProblemError:
        normal = None
    _want(normal == path, f"{name}: {str(path)[:120]!r} is not a valid entry path.")
    _want(
        set(item) == {"sha256", "size", "content_type", "metadata", "revision", "updated_at"},
        f"{name}: {path!r} has unknown or missing fields.",
    )
    _want(
        isinstance(item["sha256"], str) and bool(_SHA256.match(item["sha256"])),
        f"{name}: {path!r} has no valid sha256.",
    )
    _want(_is_int(item["size"], 0, 2**62), f"{name}: {path!r} has no valid size.")
    content_type = item["content_type"]
    _want(
        isinstance(content_type, str)
        and 0 < len(content_type) <= 255
        and not _CONTROL.search(content_type),
        f"{name}: {path!r} has no valid content_type.",
    )
    _want(isinstance(item["metadata"], dict), f"{name}: {path!r} has metadata that is no object.")
    encoded = json.dumps(item["metadata"], separators=(",", ":"), ensure_ascii=False).encode()
    _want(len(encoded) <= MAX_METADATA_BYTES, f"{name}: {path!r} has too much metadata.")
    _want(_is_int(item["revision"], 1, number), f"{name}: {path!r} has no valid revision.")
    limit = write_rules.entry_limit(state.tenant)
    if item["size"] > limit:
        raise EntryTooLarge(f"{path!r} is larger than the tenant's limit of {limit} bytes.")


def _blob(state: _Import, tar: tarfile.TarFile, member: tarfile.TarInfo, sha256: str) -> None:
    limit = write_rules.entry_limit(state.tenant)
    if member.size > limit:
        raise EntryTooLarge(f"An entry of the archive is larger than the limit of {limit} bytes.")
    space = tenancy.storage_left(state.tenant)
    staged = sum(obj.size for obj in state.staged.values())
    if space is not None and staged + member.size > space:
        raise tenancy.no_space(state.tenant, staged + member.size)
    reader = tar.extractfile(member)
    assert reader is not None

    def chunks() -> Iterator[bytes]:
        remaining = member.size
        while remaining:
            chunk = reader.read(min(CHUNK_SIZE, remaining))
            if not chunk:
                raise InvalidArchive(f"The member {member.name!r} is cut short.")
            remaining -= len(chunk)
            yield chunk

    stored = objects.store(state.tenant.id, state.project_id, chunks())
    state.stored_keys.append(stored.key)
    if stored.sha256 != sha256 or stored.size != member.size:
        raise InvalidArchive(f"The archive was changed: {member.name} does not match its SHA-256.")
    state.staged[sha256] = stored
    state.files[member.name] = {"sha256": sha256, "size": stored.size}


def _check_index(state: _Import) -> None:
    index, header = state.index, state.header
    assert index is not None and header is not None
    _want(
        index.get("format") == FORMAT and index.get("version") == VERSION,
        "index.json does not mark a ctxcloud project export of version 1.",
    )
    for key in ("project", "history_starts_at", "revision"):
        _want(index.get(key) == header.get(key), f"index.json and project.json disagree on {key}.")
    _want(
        state.next_number == (state.head + 1 if state.head else 0),
        f"The archive holds revisions up to {state.next_number - 1}, not {state.head}.",
    )
    files = index.get("files")
    _want(isinstance(files, dict), "index.json lists no files.")
    _want(
        set(files) == set(state.files),
        "index.json lists other files than the archive holds: "
        + ", ".join(sorted(set(files) ^ set(state.files))[:5]),
    )
    for name, seen in state.files.items():
        _want(files[name] == seen, f"The archive was changed: {name} does not match its SHA-256.")
    blobs = index.get("blobs")
    _want(
        isinstance(blobs, list)
        and set(blobs) == set(state.staged)
        and len(blobs) == len(set(blobs)),
        "index.json lists other blobs than the archive holds.",
    )
    missing = state.referenced - set(state.staged)
    _want(not missing, f"A manifest names bytes the archive does not hold: {sorted(missing)[:1]}.")
    unused = set(state.staged) - state.referenced
    _want(not unused, f"The archive holds bytes no manifest names: {sorted(unused)[:1]}.")
    revisions = index.get("revisions")
    _want(
        isinstance(revisions, list) and len(revisions) == len(state.revisions),
        "index.json lists other revisions than the archive holds.",
    )
    for listed, seen in zip(revisions, state.revisions, strict=True):
        _revision_entry(listed, seen)


def _revision_entry(listed: Any, seen: dict) -> None:
    number = seen["number"]
    _want(isinstance(listed, dict), "index.json: a revision is not an object.")
    _want(
        listed.get("number") == number
        and listed.get("manifest") == seen["member"]
        and listed.get("entries") == seen["entries"],
        f"index.json disagrees with {seen['member']}.",
    )
    _want(isinstance(listed.get("message"), str), f"index.json: revision {number} has no message.")
    actor = listed.get("actor")
    _want(
        isinstance(actor, str) and 0 < len(actor) <= 200,
        f"index.json: revision {number} has no valid actor.",
    )
    listed["_created_at"] = _timestamp(listed.get("created_at"), number)
    changes = listed.get("changes")
    _want(
        isinstance(changes, list)
        and all(
            isinstance(c, dict)
            and set(c) == {"path", "action"}
            and isinstance(c["path"], str)
            and c["action"] in ("put", "delete")
            for c in changes
        ),
        f"index.json: revision {number} has malformed changes.",
    )
    puts = sorted(c["path"] for c in changes if c["action"] == "put")
    deletes = sorted(c["path"] for c in changes if c["action"] == "delete")
    if seen["first"]:
        # The state before the oldest kept revision is not in the archive: what it put must
        # be there, what it deleted must not.
        _want(
            set(puts) <= set(seen["puts"]) and not set(deletes) & set(seen["puts"]),
            f"index.json: revision {number}'s changes disagree with its manifest.",
        )
    else:
        _want(
            puts == seen["puts"] and deletes == seen["deletes"],
            f"index.json: revision {number}'s changes disagree with its manifest.",
        )


def _timestamp(value: Any, where: Any) -> datetime.datetime:
    problem = f"index.json: revision {where} has no valid time."
    if isinstance(where, str):
        problem = f"{where} has no valid time."
    try:
        parsed = datetime.datetime.fromisoformat(str(value)[:40].replace("Z", "+00:00"))
    except ValueError:
        raise InvalidArchive(problem) from None
    _want(isinstance(value, str) and parsed.tzinfo is not None, problem)
    return parsed.astimezone(datetime.UTC).replace(tzinfo=None)


def _store_copies(state: _Import) -> None:
    """Each version gets an object of its own (pruning deletes a version's object with it):
    the first version of a digest takes the staged object, the others a copy of it."""
    space = tenancy.storage_left(state.tenant)
    if space is not None and state.total_bytes > space:
        raise tenancy.no_space(state.tenant, state.total_bytes)
    used: set[str] = set()
    for row in state.rows:
        if row.deleted:
            continue
        staged = state.staged[row.sha256]
        if row.sha256 not in used:
            used.add(row.sha256)
            row.object_key = staged.key
            continue
        chunks = objects.read(state.tenant.id, state.project_id, staged.key, staged.size)
        copy = objects.store(state.tenant.id, state.project_id, chunks)
        state.stored_keys.append(copy.key)
        row.object_key = copy.key


def _write_rows(state: _Import) -> Project:
    header = state.header
    assert header is not None and state.index is not None
    fields = header["project"]
    slug = state.slug or fields["slug"]
    try:
        with database.atomic():
            tenancy.check_quota(
                state.tenant, "max_projects", Project.of_tenant(state.tenant.id).count
            )
            project = Project.create(
                id=state.project_id,
                tenant_id=state.tenant.id,
                slug=slug,
                name=fields["name"],
                description=fields["description"],
                metadata=fields["metadata"],
                revision=state.head,
                history_starts_at=header["history_starts_at"],
            )
            tenancy.add_storage(state.tenant, state.total_bytes)
            revisions = [
                {
                    "project": project.id,
                    "number": listed["number"],
                    "created_at": listed["_created_at"],
                    "actor": listed["actor"],
                    "message": listed["message"],
                    "changes": listed["changes"],
                }
                for listed in state.index["revisions"]
            ]
            for start in range(0, len(revisions), INSERT_BATCH):
                Revision.insert_many(revisions[start : start + INSERT_BATCH]).execute()
            created = {listed["number"]: listed["created_at"] for listed in revisions}
            versions = [
                {
                    "project": project.id,
                    "path": row.path,
                    "revision": row.revision,
                    "deleted": row.deleted,
                    "object_key": row.object_key,
                    "size": row.size,
                    "sha256": row.sha256,
                    "content_type": row.content_type or "application/octet-stream",
                    "metadata": row.metadata,
                    "created_at": row.created_at or created[row.revision],
                }
                for row in state.rows
            ]
            for start in range(0, len(versions), INSERT_BATCH):
                EntryVersion.insert_many(versions[start : start + INSERT_BATCH]).execute()
            heads = {path: item["revision"] for path, item in state.previous.items()}
            ids = {
                (path, revision): version_id
                for version_id, path, revision in EntryVersion.select(
                    EntryVersion.id, EntryVersion.path, EntryVersion.revision
                )
                .where(EntryVersion.project == project.id)
                .tuples()
            }
            entries = [
                {"project": project.id, "path": path, "version": ids[(path, revision)]}
                for path, revision in sorted(heads.items())
            ]
            for start in range(0, len(entries), INSERT_BATCH):
                Entry.insert_many(entries[start : start + INSERT_BATCH]).execute()
    except peewee.IntegrityError:
        raise Conflict(
            f"A project with the slug {slug!r} exists: import under another slug "
            "(`slug` query parameter, `--slug`)."
        ) from None
    return Project.get_by_id(project.id)
