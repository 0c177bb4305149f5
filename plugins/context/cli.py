"""`ctxcloud context prune` (revisions_kept, once or every N seconds) and `context
sweep-uploads` (expired staged uploads)."""

from __future__ import annotations

import dataclasses
import time

import click
import flask
from flask.cli import with_appcontext

from ctxcloud import Tenant
from ctxcloud.plugins.context.models import Project
from ctxcloud.plugins.context.pruning import prune_project


@click.group("context")
def context_group() -> None:
    """Context maintenance commands."""


def projects_to_prune(keep: int | None, project_id: str | None) -> list[tuple[str, int]]:
    """(project id, revisions to keep): `keep` for all, else each tenant's revisions_kept."""
    query = (
        Project.select(Project.id, Tenant)
        .join(Tenant, on=(Project.tenant_id == Tenant.id))
        .order_by(Project.id)
    )
    if project_id:
        query = query.where(Project.id == project_id)
    plan = []
    for project in query:
        kept = keep or project.tenant.setting("revisions_kept")
        if kept:
            plan.append((project.id, int(kept)))
    return plan


@context_group.command("prune")
@click.option(
    "--keep",
    type=click.IntRange(min=1),
    help="Revisions to keep in every project (default: each tenant's revisions_kept).",
)
@click.option("--project", "project_id", help="Only this project id (default: every project).")
@click.option("--every", type=click.IntRange(min=1), help="Repeat every N seconds until stopped.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per pass.")
@with_appcontext
def prune(keep: int | None, project_id: str | None, every: int | None, as_json: bool) -> None:
    """Delete versions (and their objects) that no kept revision can read.

    Without --keep each project keeps its tenant's revisions_kept (the tenant's setting within
    the platform's quota, else CTXCLOUD_REVISIONS_KEPT); tenants that keep everything are
    skipped.
    """
    from ctxcloud import emit

    while True:
        results = [prune_project(pid, kept) for pid, kept in projects_to_prune(keep, project_id)]
        flask.current_app.extensions["ctxcloud"].database.close()
        versions = sum(r.versions_deleted for r in results)
        emit(
            {
                "keep": keep,
                "projects": len(results),
                "versions_deleted": versions,
                "objects_deleted": sum(r.objects_deleted for r in results),
                "results": [dataclasses.asdict(r) for r in results if r.versions_deleted],
            },
            as_json,
            f"pruned {versions} version(s) in {len(results)} project(s), keeping "
            + (str(keep) if keep else "each tenant's revisions_kept"),
        )
        if not every:
            return
        time.sleep(every)


@context_group.command("sweep-uploads")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@with_appcontext
def sweep_uploads(as_json: bool) -> None:
    """Forget expired staged uploads: free the bytes of those never committed.

    Each new upload sweeps its own project's; run this on a schedule (with `storage gc`) so
    that projects nobody uploads to again are swept too.
    """
    from ctxcloud import emit
    from ctxcloud.plugins.context.uploads import sweep_expired

    swept = sweep_expired()
    emit(
        swept,
        as_json,
        f"swept {swept['uploads']} expired upload(s), freeing {swept['bytes_freed']} bytes",
    )
