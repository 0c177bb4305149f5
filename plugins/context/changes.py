"""The changes feed: what happened to a project's paths after revision N, and waiting for it.

Each change is one EntryVersion row (a put, or a deletion marker) of a revision after N, in
revision order, then path order within a revision. Every revision from `history_starts_at` on
keeps all its rows (pruning removes only versions at or before that cutoff), so any N at or
after `history_starts_at` is answered whole; an older N is a 410 `history_pruned` (the client
re-reads the manifest at the head and continues from its revision).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from ctxcloud import Actor, ProblemError
from ctxcloud.plugins.context import projects
from ctxcloud.plugins.context.models import EntryVersion, Project
from ctxcloud.plugins.context.watch import current_watch


# Declared for OpenAPI in problems.py (RESPONSES): HistoryPruned, RevisionAhead, TooManyWatchers.
class HistoryPruned(ProblemError):
    """410 `history_pruned`: the changes after a revision older than `history_starts_at`."""

    status, code = 410, "history_pruned"


class RevisionAhead(ProblemError):
    """409 `revision_ahead`: a `since` past the project's head."""

    status, code = 409, "revision_ahead"


class TooManyWatchers(ProblemError):
    """503 `too_many_watchers`: this process already holds WATCH_MAX_WAITERS waiting requests."""

    status, code = 503, "too_many_watchers"


@dataclass
class Changes:
    from_revision: int
    revision: int
    history_starts_at: int
    changes: list[dict[str, Any]]  # revision, path, action; size and sha256 for puts


def check_since(project: Project, since: int) -> None:
    if since > project.revision:
        raise RevisionAhead(
            f"since is {since} but the head is {project.revision}.", revision=project.revision
        )
    if since < project.history_starts_at:
        raise HistoryPruned(
            f"Revisions before {project.history_starts_at} were pruned: read the manifest at the "
            f"head (revision {project.revision}) and continue from there.",
            history_starts_at=project.history_starts_at,
            revision=project.revision,
        )


def list_changes(project: Project, since: int, page: int, page_size: int) -> tuple[Changes, int]:
    """Changes after `since` up to the project's head as read, one page; and their total."""
    check_since(project, since)
    rows = EntryVersion.select(
        EntryVersion.revision,
        EntryVersion.path,
        EntryVersion.deleted,
        EntryVersion.size,
        EntryVersion.sha256,
    ).where(
        EntryVersion.project == project.id,
        EntryVersion.revision > since,
        # A commit landing now belongs to the next answer, whose `revision` names it.
        EntryVersion.revision <= project.revision,
    )
    total = rows.count() if project.revision > since else 0
    changes = []
    if total:
        ordered = rows.order_by(EntryVersion.revision, EntryVersion.path).paginate(page, page_size)
        for row in ordered:
            change = {"revision": row.revision, "path": row.path}
            if row.deleted:
                change["action"] = "delete"
            else:
                change.update(action="put", size=row.size, sha256=row.sha256)
            changes.append(change)
    body = Changes(since, project.revision, project.history_starts_at, changes)
    return body, total


def head_revision(project_id: str) -> int | None:
    """The committed head now (None: the project is gone)."""
    return Project.select(Project.revision).where(Project.id == project_id).scalar()


def wait_for_change(actor: Actor, project_ref: str, project: Project, seconds: float) -> Project:
    """Wait up to `seconds` for the project to move past `project.revision`; the project as it
    is then (re-resolved for the caller: deleted meanwhile is a 404).

    Past the process's cap on waiters: 503 `too_many_watchers` with Retry-After, at once.
    """
    watch = current_watch()
    if watch is None:  # an app built without the context plugin's start-up
        return project
    start = project.revision
    deadline = time.monotonic() + min(seconds, watch.max_wait)
    with watch.admit() as admitted:
        if not admitted:
            raise TooManyWatchers(
                f"This server already holds {watch.max_waiters} waiting requests: poll again "
                "later, or ask without `wait`.",
                headers={"Retry-After": str(watch.retry_after)},
            )

        def moved() -> bool:
            head = head_revision(project.id)
            return head is None or head != start

        watch.wait_until(project.id, moved, deadline)
    return projects.resolve(actor, project_ref, cached=False)  # not a value read before waiting
