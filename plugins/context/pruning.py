"""revisions_kept: drop versions no kept revision can read, and their objects; never current ones.

Their bytes stop counting against the tenant's storage quota in the same transaction.

Keeping K revisions means every revision from head-K+1 (the cutoff) to the head stays readable.
A version older than the cutoff is needed only if it is its path's state at the cutoff; every
other older version (and a deletion marker that is the state at the cutoff) can go. The
revision log itself is kept: it is small and it is the audit trail.
"""

from __future__ import annotations

from dataclasses import dataclass

from ctxcloud import database, for_update, objects, tenancy
from ctxcloud.plugins.context import hot_rows
from ctxcloud.plugins.context.models import EntryVersion, Project


@dataclass(frozen=True)
class PruneResult:
    project_id: str
    history_starts_at: int
    versions_deleted: int
    objects_deleted: int


def prunable_versions(project: Project, cutoff: int) -> list[EntryVersion]:
    """Versions at or before `cutoff` that no revision from `cutoff` on can read."""
    older = (
        EntryVersion.select(
            EntryVersion.id,
            EntryVersion.path,
            EntryVersion.deleted,
            EntryVersion.object_key,
            EntryVersion.size,
        )
        .where(EntryVersion.project == project.id, EntryVersion.revision <= cutoff)
        .order_by(EntryVersion.path, EntryVersion.revision)
    )
    doomed: list[EntryVersion] = []
    previous: EntryVersion | None = None
    for version in older:
        if previous is not None and previous.path == version.path:
            doomed.append(previous)  # superseded at or before the cutoff
        elif previous is not None and previous.deleted:
            doomed.append(previous)  # the path is absent at the cutoff
        previous = version
    if previous is not None and previous.deleted:
        doomed.append(previous)
    return doomed


def prune_project(project_id: str, keep: int) -> PruneResult:
    """Keep the last `keep` revisions of one project readable; delete the rest's data."""
    if keep < 1:
        raise ValueError("keep at least one revision")
    with database.atomic():
        project = for_update(Project.select().where(Project.id == project_id)).get()
        cutoff = max(project.revision - keep + 1, 0)
        doomed = prunable_versions(project, cutoff) if cutoff > project.history_starts_at else []
        keys = [v.object_key for v in doomed if v.object_key]
        ids = [v.id for v in doomed]
        for start in range(0, len(ids), 500):
            EntryVersion.delete().where(EntryVersion.id.in_(ids[start : start + 500])).execute()
        tenancy.release_storage(project.tenant_id, sum(v.size for v in doomed if v.object_key))
        if cutoff > project.history_starts_at:
            Project.update(history_starts_at=cutoff).where(Project.id == project.id).execute()
    if ids or cutoff > project.history_starts_at:
        hot_rows.changed(project.tenant_id)  # cached rows carry history_starts_at
    objects.delete_quietly(keys)
    return PruneResult(
        project_id=project.id,
        history_starts_at=max(cutoff, project.history_starts_at),
        versions_deleted=len(ids),
        objects_deleted=len(keys),
    )
