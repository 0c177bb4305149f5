"""Schema of projects and their context, frozen as of each migration.

The ids keep the names of the two plugins these tables came from (``projects.*``,
``context.*``): a database records the ids it applied.
"""

from __future__ import annotations

import json
import logging
import math
import unicodedata
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import peewee

from ctxcloud import Migration

log = logging.getLogger("ctxcloud.migrations")


def _projects_initial(migrator, db) -> None:
    class Project(peewee.Model):
        id = peewee.CharField(primary_key=True, max_length=32)
        tenant_id = peewee.CharField(max_length=64, index=True)
        slug = peewee.CharField(max_length=63)
        name = peewee.CharField(max_length=200)
        description = peewee.TextField(default="")
        metadata = peewee.TextField(default="{}")
        revision = peewee.BigIntegerField(default=0)
        created_at = peewee.DateTimeField()
        updated_at = peewee.DateTimeField()

        class Meta:
            database = db
            table_name = "project"
            indexes = ((("tenant_id", "slug"), True),)

    db.create_tables([Project])


def _projects_history_start(migrator, db) -> None:
    migrator.migrate(
        migrator.add_column("project", "history_starts_at", peewee.BigIntegerField(default=0))
    )


def _initial(migrator, db) -> None:
    class Project(peewee.Model):
        id = peewee.CharField(primary_key=True, max_length=32)

        class Meta:
            database = db
            table_name = "project"

    class EntryVersion(peewee.Model):
        id = peewee.BigAutoField()
        project = peewee.ForeignKeyField(Project, column_name="project_id", on_delete="CASCADE")
        path = peewee.TextField()
        revision = peewee.BigIntegerField()
        deleted = peewee.BooleanField(default=False)
        object_key = peewee.CharField(max_length=128, null=True)
        size = peewee.BigIntegerField(default=0)
        sha256 = peewee.CharField(max_length=64, null=True)
        content_type = peewee.CharField(max_length=255)
        metadata = peewee.TextField(default="{}")
        created_at = peewee.DateTimeField()

        class Meta:
            database = db
            table_name = "context_entry_version"
            indexes = ((("project", "path", "revision"), True), (("project", "revision"), False))

    class Entry(peewee.Model):
        id = peewee.BigAutoField()
        project = peewee.ForeignKeyField(Project, column_name="project_id", on_delete="CASCADE")
        path = peewee.TextField()
        version = peewee.ForeignKeyField(EntryVersion, column_name="version_id")

        class Meta:
            database = db
            table_name = "context_entry"
            indexes = ((("project", "path"), True),)

    class Revision(peewee.Model):
        id = peewee.BigAutoField()
        project = peewee.ForeignKeyField(Project, column_name="project_id", on_delete="CASCADE")
        number = peewee.BigIntegerField()
        created_at = peewee.DateTimeField()
        actor = peewee.CharField(max_length=200)
        message = peewee.TextField(default="")
        changes = peewee.TextField(default="[]")

        class Meta:
            database = db
            table_name = "context_revision"
            indexes = ((("project", "number"), True),)

    db.create_tables([EntryVersion, Entry, Revision])


def _count_stored_bytes(migrator, db) -> None:
    """Count the bytes already stored per tenant into the usage rows quota checks lock."""
    db.execute_sql(
        "INSERT INTO tenant_usage (tenant_id, storage_bytes) "
        "SELECT p.tenant_id, SUM(v.size) FROM context_entry_version v "
        "JOIN project p ON p.id = v.project_id WHERE v.object_key IS NOT NULL "
        "GROUP BY p.tenant_id "
        "ON CONFLICT (tenant_id) DO UPDATE SET storage_bytes = excluded.storage_bytes"
    )


# 0003: entry paths in NFC ----------------------------------------------------------------------
#
# The API normalises every path to NFC from this migration on (plugins/context/paths.py), so a
# path stored in another spelling would be unreachable. Every such spelling is renamed, in the
# entry versions, the head entries and the revisions' change lists. Where one project holds
# several spellings of one path (docs/context.md, "Paths stored before NFC"):
# - spellings that were never live at the same time become one path, their histories joined
#   (a revision that deleted one spelling and wrote another keeps only the write);
# - otherwise the spelling written most recently takes the NFC path, and each other spelling
#   keeps its whole history under a visible conflict name, `name (Unicode conflict).ext`,
#   so that no content disappears from the head.
# Nothing is stored or deleted in the storage backend; revision numbers and ETags do not change.

CONFLICT_MARK = "Unicode conflict"
_MAX_PATH_BYTES = 1024


def _nfc(path: str) -> str:
    return path if path.isascii() else unicodedata.normalize("NFC", path)


def _sql(db, text: str, params: tuple = ()) -> Any:
    """Run `text`, written with %s placeholders, on either database."""
    return db.execute_sql(text.replace("%s", db.param), params)


def _scan(db, text: str, keep: Callable[[tuple], bool]) -> list[tuple]:
    """The rows of `text` (selecting id first, `WHERE id > %s ORDER BY id LIMIT n`) that
    `keep`, read a batch at a time."""
    found: list[tuple] = []
    last = -1
    while rows := _sql(db, text, (last,)).fetchall():
        found += [row for row in rows if keep(row)]
        last = rows[-1][0]
    return found


@dataclass
class _Plan:
    """What becomes of one project's spellings: the new path of each, the rows to drop."""

    renames: dict[str, str] = field(default_factory=dict)  # to the NFC path
    conflicts: dict[str, str] = field(default_factory=dict)  # to a conflict name
    dropped: list[tuple[int, int, str]] = field(default_factory=list)  # (id, revision, path)

    def target(self, path: str) -> str:
        return self.conflicts.get(path) or self.renames.get(path) or _nfc(path)


def _lives(rows: list[tuple[int, int, bool]]) -> list[tuple[float, float]]:
    """[from, to) revision spans in which a spelling was live, from its (id, revision, deleted)
    rows in revision order (a first row that deletes had its write pruned: live since ever)."""
    lives: list[tuple[float, float]] = []
    start: float | None = None
    for index, (_, revision, deleted) in enumerate(rows):
        if not deleted and start is None:
            start = revision
        elif deleted and (start is not None or index == 0):
            lives.append((-math.inf if start is None else start, revision))
            start = None
    if start is not None:
        lives.append((start, math.inf))
    return lives


def _overlap(a: list[tuple[float, float]], b: list[tuple[float, float]]) -> bool:
    return any(s1 < e2 and s2 < e1 for s1, e1 in a for s2, e2 in b)


def _conflict_path(target: str, taken: set[str]) -> str:
    """`dir/name (Unicode conflict).ext`, numbered past names taken, within 1024 bytes."""
    directory, slash, name = target.rpartition("/")
    stem, dot, extension = name.rpartition(".")
    if not stem:  # no extension, or a name whose only dot starts it (".env")
        stem, dot, extension = name, "", ""
    number = 1
    while True:
        mark = f" ({CONFLICT_MARK})" if number == 1 else f" ({CONFLICT_MARK} {number})"
        cut = stem
        candidate = f"{directory}{slash}{cut}{mark}{dot}{extension}"
        while len(candidate.encode()) > _MAX_PATH_BYTES and cut:
            cut = unicodedata.normalize("NFC", cut[:-1])
            candidate = f"{directory}{slash}{cut}{mark}{dot}{extension}"
        if candidate not in taken:
            taken.add(candidate)
            return candidate
        number += 1


def _plan_group(
    plan: _Plan, target: str, rows: dict[str, list[tuple[int, int, bool]]], taken: set[str]
) -> None:
    """Decide for the stored spellings (their rows by spelling) of one NFC path, `target`."""
    lives = {spelling: _lives(spelling_rows) for spelling, spelling_rows in rows.items()}

    def recency(spelling: str) -> tuple:
        last_id, last_revision, deleted = rows[spelling][-1]
        return (not deleted, last_revision, spelling == target, last_id)

    order = sorted(rows, key=recency, reverse=True)
    merged, merged_lives = [order[0]], list(lives[order[0]])
    for spelling in order[1:]:
        if _overlap(lives[spelling], merged_lives):
            plan.conflicts[spelling] = _conflict_path(target, taken)
        else:
            merged.append(spelling)
            merged_lives += lives[spelling]
    by_revision: dict[int, list[tuple[bool, int, str]]] = defaultdict(list)
    for spelling in merged:
        plan.renames[spelling] = target
        for row_id, revision, deleted in rows[spelling]:
            by_revision[revision].append((deleted, row_id, spelling))
    for revision, same in by_revision.items():
        # Lives that never overlap share a revision only as one spelling's deletion beside
        # another's write: the write is what happened to the path.
        for _, row_id, spelling in sorted(same)[1:]:
            plan.dropped.append((row_id, revision, spelling))


def _plan_project(db, project_id: str, counts: dict[str, int]) -> tuple[_Plan, list]:
    stored: set[str] = set()
    taken: set[str] = set()
    for (path,) in _sql(
        db, "SELECT DISTINCT path FROM context_entry_version WHERE project_id = %s", (project_id,)
    ):
        stored.add(path)
    for (path,) in _sql(
        db, "SELECT DISTINCT path FROM context_entry WHERE project_id = %s", (project_id,)
    ):
        taken.add(path)
    revisions = []
    for row_id, number, changes in _sql(
        db, "SELECT id, number, changes FROM context_revision WHERE project_id = %s", (project_id,)
    ):
        items = json.loads(changes or "[]")
        taken.update(item["path"] for item in items)
        revisions.append((row_id, number, items))
    taken |= stored
    groups: dict[str, list[str]] = defaultdict(list)
    for path in stored:
        groups[_nfc(path)].append(path)
    plan = _Plan()
    for target, spellings in sorted(groups.items()):
        if spellings == [target]:
            continue
        if len(spellings) == 1:
            plan.renames[spellings[0]] = target
            counts["renamed"] += 1
            continue
        rows = {
            spelling: [
                (row_id, revision, bool(deleted))
                for row_id, revision, deleted in _sql(
                    db,
                    "SELECT id, revision, deleted FROM context_entry_version "
                    "WHERE project_id = %s AND path = %s ORDER BY revision",
                    (project_id, spelling),
                )
            ]
            for spelling in spellings
        }
        conflicts_before = len(plan.conflicts)
        _plan_group(plan, target, rows, taken)
        conflicts = len(plan.conflicts) - conflicts_before
        counts["conflicts"] += conflicts
        counts["merged"] += len(spellings) - 1 - conflicts
    return plan, revisions


def _apply(db, project_id: str, plan: _Plan, revisions: list, counts: dict[str, int]) -> None:
    for row_id, _, _ in plan.dropped:
        _sql(db, "DELETE FROM context_entry_version WHERE id = %s", (row_id,))
    counts["dropped"] += len(plan.dropped)
    # Conflicts first: they free the NFC path that another spelling then takes.
    for old, new in [*plan.conflicts.items(), *plan.renames.items()]:
        if old == new:
            continue
        cursor = _sql(
            db,
            "UPDATE context_entry_version SET path = %s WHERE project_id = %s AND path = %s",
            (new, project_id, old),
        )
        counts["versions"] += cursor.rowcount
        _sql(
            db,
            "UPDATE context_entry SET path = %s WHERE project_id = %s AND path = %s",
            (new, project_id, old),
        )
    dropped = {(revision, path) for _, revision, path in plan.dropped}
    for row_id, number, items in revisions:
        changed = [
            {**item, "path": plan.target(item["path"])}
            for item in items
            if not (item["action"] == "delete" and (number, item["path"]) in dropped)
        ]
        if changed != items:
            _sql(
                db,
                "UPDATE context_revision SET changes = %s WHERE id = %s",
                (json.dumps(changed, separators=(",", ":"), ensure_ascii=False), row_id),
            )
            counts["revisions"] += 1


def _not_nfc_path(row: tuple) -> bool:
    return _nfc(row[2]) != row[2]


def _names_a_path_not_in_nfc(row: tuple) -> bool:
    return not (row[2] or "").isascii() and any(
        _nfc(item["path"]) != item["path"] for item in json.loads(row[2])
    )


def _nfc_paths(migrator, db) -> None:
    """Rename every stored entry path to NFC; merge or set apart spellings that clash."""
    found = _scan(
        db,
        "SELECT id, project_id, path FROM context_entry_version WHERE id > %s "
        "ORDER BY id LIMIT 2000",
        _not_nfc_path,
    )
    found += _scan(
        db,
        "SELECT id, project_id, changes FROM context_revision WHERE id > %s ORDER BY id LIMIT 2000",
        _names_a_path_not_in_nfc,
    )
    projects = sorted({row[1] for row in found})
    counts: dict[str, int] = defaultdict(int)
    conflicted = []
    for project_id in projects:
        plan, revisions = _plan_project(db, project_id, counts)
        _apply(db, project_id, plan, revisions, counts)
        if plan.conflicts:
            conflicted.append(project_id)
    log.info(
        "context.0003_nfc_paths: entry paths put in NFC in %d project(s): %d path(s) renamed, "
        "%d spelling(s) merged into another of the same path, %d set apart under a "
        "'(%s)' name; %d version row(s) renamed, %d deletion marker(s) dropped, "
        "%d revision change list(s) rewritten",
        len(projects),
        counts["renamed"],
        counts["merged"],
        counts["conflicts"],
        CONFLICT_MARK,
        counts["versions"],
        counts["dropped"],
        counts["revisions"],
    )
    if conflicted:
        log.warning(
            "context.0003_nfc_paths: %d project(s) held two spellings of one path at the same "
            "time; the one written last has the path, the other's content is under a '(%s)' "
            "name: %s",
            len(conflicted),
            CONFLICT_MARK,
            ", ".join(conflicted),
        )


def _object_key_index(migrator, db) -> None:
    """`storage gc` asks which of a batch of object keys rows still name: an index lookup."""
    db.execute_sql(
        "CREATE INDEX IF NOT EXISTS context_entry_version_object_key "
        "ON context_entry_version (object_key)"
    )


def _uploads(migrator, db) -> None:
    """Staged uploads: bytes stored before the commit that names them."""

    class Project(peewee.Model):
        id = peewee.CharField(primary_key=True, max_length=32)

        class Meta:
            database = db
            table_name = "project"

    class ContextUpload(peewee.Model):
        id = peewee.CharField(primary_key=True, max_length=32)
        tenant_id = peewee.CharField(max_length=64, index=True)
        project = peewee.ForeignKeyField(Project, column_name="project_id", on_delete="CASCADE")
        state = peewee.CharField(max_length=16, default="pending")
        object_key = peewee.CharField(max_length=128, null=True, index=True)
        size = peewee.BigIntegerField(default=0)
        sha256 = peewee.CharField(max_length=64, null=True)
        created_by = peewee.CharField(max_length=200)
        created_at = peewee.DateTimeField()
        expires_at = peewee.DateTimeField(index=True)

        class Meta:
            database = db
            table_name = "context_upload"

    db.create_tables([ContextUpload])


def _links(migrator, db) -> None:
    """Signed links to a pinned revision (plugins/context/links.py)."""

    class Project(peewee.Model):
        id = peewee.CharField(primary_key=True, max_length=32)

        class Meta:
            database = db
            table_name = "project"

    class ContextLink(peewee.Model):
        id = peewee.CharField(primary_key=True, max_length=32)
        tenant_id = peewee.CharField(max_length=64, index=True)
        project = peewee.ForeignKeyField(Project, column_name="project_id", on_delete="CASCADE")
        revision = peewee.BigIntegerField()
        path = peewee.TextField(null=True)
        key_id = peewee.CharField(max_length=64)
        created_by = peewee.CharField(max_length=200)
        created_at = peewee.DateTimeField()
        expires_at = peewee.DateTimeField(index=True)
        revoked_at = peewee.DateTimeField(null=True)
        revoked_by = peewee.CharField(max_length=200, null=True)

        class Meta:
            database = db
            table_name = "context_link"

    db.create_tables([ContextLink])


MIGRATIONS = [
    Migration("projects.0001_initial", _projects_initial),
    Migration(
        "projects.0002_history_starts_at",
        _projects_history_start,
        depends_on=("projects.0001_initial",),
    ),
    Migration("context.0001_initial", _initial, depends_on=("projects.0001_initial",)),
    Migration(
        "context.0002_count_stored_bytes",
        _count_stored_bytes,
        depends_on=("context.0001_initial", "tenants.0002_usage"),
        description="Stored bytes per tenant, for max_storage_bytes",
    ),
    Migration(
        "context.0003_nfc_paths",
        _nfc_paths,
        depends_on=("context.0002_count_stored_bytes",),
        description="Entry paths in NFC; clashing spellings merged or set apart",
    ),
    Migration(
        "context.0004_object_key_index",
        _object_key_index,
        depends_on=("context.0003_nfc_paths",),
        description="Index entry versions by object key, for storage gc",
    ),
    Migration(
        "context.0005_uploads",
        _uploads,
        depends_on=("context.0004_object_key_index",),
        description="Staged uploads for commits of any size",
    ),
    Migration(
        "context.0006_links",
        _links,
        depends_on=("context.0005_uploads",),
        description="Signed links to a pinned revision",
    ),
]
