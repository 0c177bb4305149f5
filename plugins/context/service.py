"""Context rules: revisions raised by exactly one per change, conditional writes, atomic commits.

Bytes are stored (encrypted) before the metadata transaction, and the transaction re-checks
every precondition under the project's row lock; whatever fails after the bytes were stored
deletes them again, so no entry, revision or object is left half-made.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any

import peewee

from ctxcloud import (
    Actor,
    Conflict,
    NotFound,
    PreconditionFailed,
    PreparedSelect,
    PreparedWrite,
    ValidationFailed,
    database,
    objects,
    tenancy,
    utcnow,
)
from ctxcloud.plugins.context import hot_rows, projects, uploads, watch, write_rules
from ctxcloud.plugins.context.models import Entry, EntryVersion, Project, Revision
from ctxcloud.plugins.context.options import DEFAULT_CONTENT_TYPE
from ctxcloud.plugins.context.paths import UnsafePath, existing_path, quoted, validate_path
from ctxcloud.plugins.context.problems import ChecksumMismatch, InvalidPath
from ctxcloud.plugins.context.write_rules import EntryWrite

TEXT_TYPES = {
    "application/json",
    "application/xml",
    "application/yaml",
    "application/x-yaml",
    "application/toml",
    "application/javascript",
    "application/x-ndjson",
}


@dataclass(frozen=True)
class Preconditions:
    """If-Match / If-None-Match as parsed from the request (None: header absent)."""

    if_match: tuple[str, ...] | None = None
    if_none_match: tuple[str, ...] | None = None

    @property
    def given(self) -> bool:
        return self.if_match is not None or self.if_none_match is not None

    def check(self, current: EntryVersion | None) -> None:
        """412 unless the entry's current state satisfies both headers."""
        if self.if_match is not None:
            if current is None:
                raise PreconditionFailed("The entry does not exist (If-Match).")
            if "*" not in self.if_match and current.etag not in self.if_match:
                raise PreconditionFailed("The entry changed since that ETag (If-Match).")
        if self.if_none_match is not None and current is not None:
            if "*" in self.if_none_match:
                raise PreconditionFailed("The entry already exists (If-None-Match: *).")
            if current.etag in self.if_none_match:
                raise PreconditionFailed("The entry still has that ETag (If-None-Match).")


def is_text(content_type: str) -> bool:
    base = content_type.split(";", 1)[0].strip().lower()
    return (
        base.startswith("text/")
        or base in TEXT_TYPES
        or base.endswith("+json")
        or base.endswith("+xml")
    )


def _changed(project: Project) -> None:
    """After a write committed: every process reads the tenant's rows again (hot_rows), and
    the project's waiters wake (docs/changes.md)."""
    hot_rows.changed(project.tenant_id)
    watch.changed(project.id)


# Reads -----------------------------------------------------------------------------------


_HEAD = PreparedSelect(
    EntryVersion,
    lambda project_id, path: (
        EntryVersion.select()
        .join(Entry, on=(Entry.version == EntryVersion.id))
        .where(Entry.project == project_id, Entry.path == path)
    ),
)


def head_entry(project: Project, path: str) -> EntryVersion | None:
    """The path's head version as the database has it now (None: no live entry)."""
    return _HEAD.first(project.id, path)


def entry_at(project: Project, path: str, revision: int | None = None) -> EntryVersion | None:
    """The path's version at `revision` (head when None, from this process's cache of hot rows
    when still exact); None if absent or deleted then. Writes read `head_entry` under the
    project's lock instead."""
    if revision is None:
        return hot_rows.entry_head(
            project.tenant_id, project.id, path, lambda: head_entry(project, path)
        )
    check_revision(project, revision)
    version = (
        EntryVersion.select()
        .where(
            EntryVersion.project == project.id,
            EntryVersion.path == path,
            EntryVersion.revision <= revision,
        )
        .order_by(EntryVersion.revision.desc())
        .first()
    )
    return None if version is None or version.deleted else version


def check_revision(project: Project, revision: int) -> None:
    if revision > project.revision:
        raise NotFound(f"No revision {revision}: the head is {project.revision}.")
    if revision < project.history_starts_at:
        raise NotFound(
            f"Revision {revision} was pruned: history starts at {project.history_starts_at}."
        )


def manifest(project: Project, revision: int | None, prefix: str) -> list[EntryVersion]:
    """Live entries at `revision` (`project.revision` when None) whose path starts with `prefix`,
    by path."""
    if revision is None:
        head = _with_prefix(
            EntryVersion.select()
            .join(Entry, on=(Entry.version == EntryVersion.id))
            .where(Entry.project == project.id),
            prefix,
        )
        versions = sorted(head, key=lambda version: version.path)
        # The head rows are the state at `project.revision` only if no change landed since the
        # project was read; otherwise answer for that revision, so the body matches its number
        # (and the ETag made from it).
        if _head_revision(project) == project.revision:
            return versions
        revision = project.revision
    check_revision(project, revision)
    latest = EntryVersion.alias()
    newest = latest.select(peewee.fn.MAX(latest.revision)).where(
        latest.project == EntryVersion.project,
        latest.path == EntryVersion.path,
        latest.revision <= revision,
    )
    query = EntryVersion.select().where(
        EntryVersion.project == project.id,
        EntryVersion.revision == newest,
        EntryVersion.deleted == False,  # noqa: E712 (SQL, not Python)
    )
    return sorted(_with_prefix(query, prefix), key=lambda version: version.path)


def _with_prefix(query: peewee.ModelSelect, prefix: str) -> peewee.ModelSelect:
    if not prefix:
        return query
    return query.where(peewee.fn.SUBSTR(EntryVersion.path, 1, len(prefix)) == prefix)


def _head_revision(project: Project) -> int:
    """The project's head revision as committed now (the row may have been read earlier)."""
    return Project.select(Project.revision).where(Project.id == project.id).scalar() or 0


def inline_contents(
    tenant_id: str, project: Project, versions: list[EntryVersion], budget: int
) -> tuple[dict[str, str], dict[str, str]]:
    """Text contents that fit the budget, in path order; and why each other entry was left out."""
    contents: dict[str, str] = {}
    omitted: dict[str, str] = {}
    for version in versions:
        if not is_text(version.content_type):
            omitted[version.path] = "not_text"
            continue
        if version.size > budget:
            omitted[version.path] = "budget"
            continue
        data = b"".join(objects.read(tenant_id, project.id, version.object_key, version.size))
        try:
            contents[version.path] = data.decode("utf-8")
        except UnicodeDecodeError:
            omitted[version.path] = "not_utf8"
            continue
        budget -= version.size
    return contents, omitted


def revisions(project: Project, page: int, page_size: int) -> tuple[list[Revision], int]:
    query = Revision.select().where(Revision.project == project.id)
    total = query.count()
    items = list(query.order_by(Revision.number.desc()).paginate(page, page_size))
    return items, total


def revision_detail(project: Project, number: int) -> Revision:
    found = (
        Revision.select().where(Revision.project == project.id, Revision.number == number).first()
    )
    if found is None:
        raise NotFound(f"No revision {number}.")
    return found


# Writes ----------------------------------------------------------------------------------


# Every write runs these, so their SQL is built once (app.db.PreparedWrite): building it is
# most of a small write's CPU.
_RAISE_HEAD = PreparedWrite(
    lambda number, now, project_id: Project.update(revision=number, updated_at=now).where(
        Project.id == project_id
    ),
    [None, Project.updated_at, None],
)
_INSERT_REVISION = PreparedWrite(
    lambda project_id, number, now, actor, message, changes: Revision.insert(
        project=project_id,
        number=number,
        created_at=now,
        actor=actor,
        message=message,
        changes=changes,
    ),
    [None, None, Revision.created_at, None, None, Revision.changes],
)
_INSERT_VERSION = PreparedWrite(
    lambda project_id, path, revision, deleted, key, size, sha256, content_type, metadata, now: (
        EntryVersion.insert(
            project=project_id,
            path=path,
            revision=revision,
            deleted=deleted,
            object_key=key,
            size=size,
            sha256=sha256,
            content_type=content_type,
            metadata=metadata,
            created_at=now,
        )
    ),
    [
        None,
        None,
        None,
        EntryVersion.deleted,
        None,
        None,
        None,
        None,
        EntryVersion.metadata,
        EntryVersion.created_at,
    ],
)
_POINT_ENTRY = PreparedWrite(
    lambda version_id, project_id, path: Entry.update(version=version_id).where(
        Entry.project == project_id, Entry.path == path
    ),
    [None, None, None],
)
_INSERT_ENTRY = PreparedWrite(
    lambda project_id, path, version_id: Entry.insert(
        project=project_id, path=path, version=version_id
    ),
    [None, None, None],
)


def _new_revision(project: Project, actor: Actor, message: str, changes: list[dict]) -> int:
    """Raise the head by one (the caller holds the project's row lock)."""
    number = project.revision + 1
    now = utcnow()
    _RAISE_HEAD.execute(number, now, project.id)
    project.revision = number
    _INSERT_REVISION.execute(project.id, number, now, actor.log_name, message, changes)
    return number


def _record_put(
    project: Project, revision: int, write: EntryWrite, stored: objects.StoredObject
) -> EntryVersion:
    now = utcnow()
    fields = {
        "project": project.id,
        "path": write.path,
        "revision": revision,
        "deleted": False,
        "object_key": stored.key,
        "size": stored.size,
        "sha256": stored.sha256,
        "content_type": write.content_type,
        "metadata": write.metadata,
        "created_at": now,
    }
    version_id = _INSERT_VERSION.execute(*fields.values())
    if not _POINT_ENTRY.execute(version_id, project.id, write.path):
        _INSERT_ENTRY.execute(project.id, write.path, version_id)
    return EntryVersion(id=version_id, **fields)


def _record_delete(project: Project, revision: int, path: str) -> None:
    EntryVersion.create(project=project.id, path=path, revision=revision, deleted=True)
    Entry.delete().where(Entry.project == project.id, Entry.path == path).execute()


def put_entry(
    actor: Actor,
    project: Project,
    write: EntryWrite,
    preconditions: Preconditions,
    expected_sha256: str | None = None,
) -> tuple[EntryVersion, bool]:
    """Store one entry as a new revision of `project`; returns (version, created)."""
    [write] = write_rules.admit(actor.tenant, [write])
    if preconditions.given:
        preconditions.check(head_entry(project, write.path))  # fail before the upload if we can
    stored = objects.store(actor.tenant_id, project.id, write.chunks)
    try:
        if expected_sha256 is not None and stored.sha256 != expected_sha256:
            raise ChecksumMismatch("The body's SHA-256 does not match Content-SHA256.")
        with database.atomic():
            project = projects.locked(actor, project)
            current = head_entry(project, write.path)
            preconditions.check(current)
            tenancy.add_storage(actor.tenant, stored.size)
            number = _new_revision(project, actor, "", [{"path": write.path, "action": "put"}])
            version = _record_put(project, number, write, stored)
    except BaseException:
        objects.delete_quietly([stored.key])
        raise
    _changed(project)  # committed: before answering
    return version, current is None


def delete_entry(actor: Actor, project: Project, path: str, preconditions: Preconditions) -> int:
    """Delete one entry as a new revision of `project`; 404 if it does not exist."""
    with database.atomic():
        project = projects.locked(actor, project)
        path = existing_path(path, lambda normal: head_entry(project, normal) is not None)
        current = head_entry(project, path)
        if current is None:
            raise NotFound("No such entry.")
        preconditions.check(current)
        number = _new_revision(project, actor, "", [{"path": path, "action": "delete"}])
        _record_delete(project, number, path)
    _changed(project)  # committed: before answering
    return number


def decode_commit_puts(
    puts: list[dict[str, Any]], default_type: str = DEFAULT_CONTENT_TYPE
) -> list[EntryWrite]:
    """Commit entries as EntryWrites; content is text (UTF-8), base64 bytes or a staged
    upload's (`upload_id`), exactly one.

    Bytes without a content_type get `default_type` (the tenant's setting); text gets
    text/plain."""
    errors: dict[str, Any] = {}
    writes = []
    for index, item in enumerate(puts):
        has_text, has_b64 = "content" in item, "content_base64" in item
        has_upload = "upload_id" in item
        if has_text + has_b64 + has_upload != 1:
            errors[str(index)] = ["Give exactly one of content, content_base64 and upload_id."]
            continue
        if has_upload:
            writes.append(
                EntryWrite(
                    path=item["path"],
                    chunks=(),
                    content_type=item.get("content_type") or default_type,
                    metadata=item.get("metadata") or {},
                    upload_id=item["upload_id"],
                )
            )
            continue
        if has_b64:
            try:
                data = base64.b64decode(item["content_base64"], validate=True)
            except (binascii.Error, ValueError):
                errors[str(index)] = ["content_base64 is not valid base64."]
                continue
        else:
            data = item["content"].encode("utf-8")
        writes.append(
            EntryWrite(
                path=item["path"],
                chunks=[data],
                content_type=item.get("content_type")
                or ("text/plain; charset=utf-8" if has_text else default_type),
                metadata=item.get("metadata") or {},
                size_hint=len(data),
            )
        )
    if errors:
        raise ValidationFailed({"put": errors})
    return writes


def commit(
    actor: Actor,
    project: Project,
    *,
    message: str,
    parent_revision: int | None,
    puts: list[EntryWrite],
    deletes: list[str],
) -> Revision:
    """Apply every put and delete as one revision, or nothing at all.

    Paths are compared in NFC: the two spellings of one path are one path (a duplicate)."""
    if not puts and not deletes:
        raise ValidationFailed({"put": ["Nothing to commit: give put and/or delete."]})
    puts = write_rules.admit(actor.tenant, puts, named=True)
    # A delete may name an entry stored before the character rules (UnsafePath): it must exist.
    legacy: dict[str, UnsafePath] = {}
    normal_deletes = []
    for path in deletes:
        try:
            normal_deletes.append(_commit_path(path))
        except UnsafePath as exc:
            legacy[exc.path] = exc
            normal_deletes.append(exc.path)
    deletes = normal_deletes
    paths = [write.path for write in puts] + deletes
    duplicates = sorted({p for p in paths if paths.count(p) > 1})
    if duplicates:
        raise ValidationFailed(
            {"paths": {p: ["The path appears more than once in this commit."] for p in duplicates}}
        )
    for normal, refused in legacy.items():
        if head_entry(project, normal) is None:
            raise InvalidPath(refused.detail)
    upload_ids = [write.upload_id for write in puts if write.upload_id is not None]
    if len(set(upload_ids)) != len(upload_ids):
        raise ValidationFailed({"put": ["An upload can become one entry only."]})
    _check_parent(project, parent_revision)
    stored: dict[int, objects.StoredObject] = {}  # the bytes this commit stores itself
    try:
        for index, write in enumerate(puts):
            if write.upload_id is None:
                stored[index] = objects.store(actor.tenant_id, project.id, write.chunks)
        with database.atomic():
            project = projects.locked(actor, project)
            _check_parent(project, parent_revision)
            missing = [path for path in deletes if head_entry(project, path) is None]
            if missing:
                raise Conflict(f"Cannot delete {missing[0]!r}: no such entry.")
            # Staged bytes were counted when they were stored; inline ones count now.
            staged = iter(uploads.take(actor, project, upload_ids)) if upload_ids else iter(())
            tenancy.add_storage(actor.tenant, sum(obj.size for obj in stored.values()))
            changes = [{"path": w.path, "action": "put"} for w in puts] + [
                {"path": path, "action": "delete"} for path in deletes
            ]
            number = _new_revision(project, actor, message, changes)
            for index, write in enumerate(puts):
                obj = stored[index] if write.upload_id is None else next(staged)
                _record_put(project, number, write, obj)
            for path in deletes:
                _record_delete(project, number, path)
            revision = Revision.get(Revision.project == project.id, Revision.number == number)
    except BaseException:
        objects.delete_quietly([obj.key for obj in stored.values()])
        raise
    _changed(project)  # committed: before answering
    return revision


def _commit_path(path: str) -> str:
    """The path in NFC; invalid, the same answer as for an entry URL (API.md): 400
    invalid_path, naming the path (an UnsafePath stays one, for deletes of old entries)."""
    try:
        return validate_path(path)
    except UnsafePath as exc:
        raise UnsafePath(f"{quoted(path)}: {exc.detail}", exc.path) from None
    except InvalidPath as exc:
        raise InvalidPath(f"{quoted(path)}: {exc.detail}") from None


def _check_parent(project: Project, parent_revision: int | None) -> None:
    if parent_revision is not None and parent_revision != project.revision:
        raise Conflict(f"parent_revision is {parent_revision} but the head is {project.revision}.")


def delete_project_context(project: Project) -> list[str]:
    """Remove every row of the project's context, freeing its bytes; return its object keys."""
    stored = list(
        EntryVersion.select(EntryVersion.object_key, EntryVersion.size)
        .where(EntryVersion.project == project.id, EntryVersion.object_key.is_null(False))
        .tuples()
    )
    keys = [key for key, _ in stored] + uploads.delete_project_uploads(project)
    tenancy.release_storage(project.tenant_id, sum(size for _, size in stored))
    Entry.delete().where(Entry.project == project.id).execute()
    EntryVersion.delete().where(EntryVersion.project == project.id).execute()
    Revision.delete().where(Revision.project == project.id).execute()
    return keys


def usage(tenant_id: str) -> dict[str, int]:
    """Live entries of every project of the tenant."""
    entries = (
        Entry.select()
        .join(Project, on=(Entry.project == Project.id))
        .where(Project.tenant_id == tenant_id)
        .count()
    )
    return {"entries": entries}
