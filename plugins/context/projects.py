"""Project rules: tenant scoping, id-or-slug lookup, key restrictions, deletion with context."""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Any

import flask
import peewee

from ctxcloud import (
    SLUG_PATTERN,
    Actor,
    Conflict,
    Forbidden,
    NotFound,
    PreparedSelect,
    ValidationFailed,
    database,
    emit_audit,
    for_update,
    new_id,
    objects,
    tenancy,
    utcnow,
)
from ctxcloud.plugins.context import hot_rows
from ctxcloud.plugins.context.models import Project

MAX_METADATA_BYTES = 64 * 1024
_slug_re = re.compile(SLUG_PATTERN)


def slugify(name: str) -> str:
    """A slug from a display name: ASCII, lowercase, hyphens; 'project' if nothing is left."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_name.lower()).strip("-")[:63].strip("-")
    return slug or "project"


def _check_metadata(metadata: dict[str, Any]) -> None:
    """The limit applies to the JSON as stored (compact UTF-8), not to an escaped rendering."""
    encoded = json.dumps(metadata, separators=(",", ":"), ensure_ascii=False).encode()
    if len(encoded) > MAX_METADATA_BYTES:
        raise ValidationFailed({"metadata": [f"At most {MAX_METADATA_BYTES} bytes of JSON."]})


# The lookups every project request makes, prepared once (see app.db.PreparedSelect).
_BY_ID = PreparedSelect(
    Project, lambda tenant, ref: Project.of_tenant(tenant).where(Project.id == ref)
)
_BY_SLUG = PreparedSelect(
    Project, lambda tenant, ref: Project.of_tenant(tenant).where(Project.slug == ref)
)


def resolve(actor: Actor, ref: str, *, lock: bool = False, cached: bool = True) -> Project:
    """The actor's project by id or slug; anything else (other tenant, restricted key) is 404.

    Read from this process's cache of hot rows unless `lock` (then read and locked until the
    transaction ends) or not `cached` (read from the database, e.g. after waiting)."""
    by_id = ref.startswith("prj_")
    tenant_id = actor.tenant_id or "-"
    if lock:
        field = Project.id if by_id else Project.slug
        query = Project.of_tenant(tenant_id).where(field == ref)
        project = for_update(query).first()
    else:
        lookup = _BY_ID if by_id else _BY_SLUG
        project = hot_rows.project(
            tenant_id, ref, lambda: lookup.first(tenant_id, ref), cached=cached
        )
    if project is None or not actor.may_access_project(project.id):
        raise NotFound("No such project.")
    return project


_LOCKED = PreparedSelect(
    Project,
    lambda tenant, project_id: for_update(
        Project.of_tenant(tenant).where(Project.id == project_id)
    ),
)


def locked(actor: Actor, project: Project) -> Project:
    """`project` read again and locked until the transaction ends (writes re-check under it)."""
    found = _LOCKED.first(actor.tenant_id or "-", project.id)
    if found is None:
        raise NotFound("No such project.")
    return found


def list_projects(actor: Actor, page: int, page_size: int) -> tuple[list[Project], int]:
    query = Project.of_tenant(actor.tenant_id or "-")
    if actor.project_ids is not None:
        query = query.where(Project.id.in_(sorted(actor.project_ids)))
    total = query.count()
    items = list(query.order_by(Project.created_at, Project.id).paginate(page, page_size))
    return items, total


def create(actor: Actor, data: dict[str, Any]) -> Project:
    if actor.project_ids is not None:
        # It could never see what it made: its restriction names the projects it may touch.
        raise Forbidden("A key restricted to some projects cannot create projects.")
    _check_metadata(data["metadata"])
    explicit = "slug" in data
    base = data["slug"] if explicit else slugify(data["name"])
    for attempt in range(1, 50):
        slug = base if attempt == 1 else f"{base[:58]}-{attempt}"
        try:
            with database.atomic():
                tenancy.check_quota(
                    actor.tenant, "max_projects", Project.of_tenant(actor.tenant_id).count
                )
                project = Project.create(
                    id=new_id("prj"),
                    tenant_id=actor.tenant_id,
                    slug=slug,
                    name=data["name"],
                    description=data["description"],
                    metadata=data["metadata"],
                )
        except peewee.IntegrityError:
            if explicit:
                raise Conflict(f"A project with the slug {slug!r} exists.") from None
            continue
        hot_rows.changed(project.tenant_id)  # a cached "no such project" is wrong now
        return project
    raise Conflict("Could not find a free slug; choose one.")


def update(actor: Actor, ref: str, changes: dict[str, Any]) -> Project:
    if "metadata" in changes:
        _check_metadata(changes["metadata"])
    try:
        with database.atomic():
            project = resolve(actor, ref, lock=True)
            for field, value in changes.items():
                setattr(project, field, value)
            project.updated_at = utcnow()
            project.save()
    except peewee.IntegrityError:
        raise Conflict(f"A project with the slug {changes.get('slug')!r} exists.") from None
    hot_rows.changed(project.tenant_id)
    return project


def delete(actor: Actor, ref: str) -> None:
    """Delete the project and its context; stored objects go after the commit."""
    with database.atomic():
        project = resolve(actor, ref, lock=True)
        keys = _delete_rows(project)
        # In the transaction: the audit row commits (or rolls back) with the deletion.
        emit_audit(
            "project_deleted", tenant_id=project.tenant_id, project_id=project.id, slug=project.slug
        )
    hot_rows.changed(project.tenant_id)
    objects.delete_quietly(keys)


def _delete_rows(project: Project) -> list[str]:
    """Every plugin's rows of the project (``project_deleting``), then the project; its keys."""
    pm = flask.current_app.extensions["ctxcloud"].pm
    keys = [key for result in pm.hook.project_deleting(project=project) for key in result or ()]
    project.delete_instance()
    return keys


def delete_tenant_projects(tenant_id: str) -> list[str]:
    """Every project of the tenant and its context (inside the tenant's deletion)."""
    keys: list[str] = []
    for project in for_update(Project.of_tenant(tenant_id).order_by(Project.id)):
        keys.extend(_delete_rows(project))
    return keys


def usage(tenant_id: str) -> dict[str, int]:
    return {"projects": Project.of_tenant(tenant_id).count()}
