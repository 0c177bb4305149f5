"""`ctxcloud context prune`: apply revisions_kept once, or every N seconds (the opt-in loop)."""

from __future__ import annotations

import dataclasses
import time

import click
import flask
from flask.cli import with_appcontext

from plugins.context.pruning import prune_project
from plugins.projects.models import Project


@click.group("context")
def context_group() -> None:
    """Context maintenance commands."""


@context_group.command("prune")
@click.option(
    "--keep", type=click.IntRange(min=1), help="Revisions to keep (default: REVISIONS_KEPT)."
)
@click.option("--project", "project_id", help="Only this project id (default: every project).")
@click.option("--every", type=click.IntRange(min=1), help="Repeat every N seconds until stopped.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per pass.")
@with_appcontext
def prune(keep: int | None, project_id: str | None, every: int | None, as_json: bool) -> None:
    """Delete versions (and their objects) that no kept revision can read."""
    from app.cli import emit

    keep = keep or flask.current_app.config.get("REVISIONS_KEPT")
    if not keep:
        raise click.UsageError("give --keep N or set CTXCLOUD_REVISIONS_KEPT")
    while True:
        query = Project.select(Project.id).order_by(Project.id)
        if project_id:
            query = query.where(Project.id == project_id)
        results = [prune_project(row.id, int(keep)) for row in query]
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
            f"pruned {versions} version(s) in {len(results)} project(s), keeping {keep}",
        )
        if not every:
            return
        time.sleep(every)
