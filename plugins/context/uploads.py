"""Staged uploads: a commit's large bytes, sent before the commit that names them.

`POST .../uploads` opens one (201, `upload_id` and `expires_at`); `PUT .../uploads/{id}`
streams its bytes to encrypted storage under the same rules as an entry's (max_entry_bytes,
the storage quota, an optional Content-SHA256); a commit's put item names it by `upload_id`.
The commit takes every upload it names, in its own transaction, or none (unknown, expired,
another project's or tenant's: 404; bytes not sent yet, or already committed: 409).

An upload's bytes count toward the tenant's storage from the moment they are stored: a
commit moves them to an entry without counting them again; an upload that expires first is
swept (`ctxcloud context sweep-uploads`, and each new upload sweeps its project's expired
ones) and its bytes freed. The tenant's `max_open_uploads` quota bounds how many are open.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Sequence

from ctxcloud import (
    Actor,
    Conflict,
    NotFound,
    database,
    for_update,
    new_id,
    objects,
    setting,
    tenancy,
    utcnow,
)
from ctxcloud.plugins.context import write_rules
from ctxcloud.plugins.context.models import ContextUpload, Project
from ctxcloud.plugins.context.problems import ChecksumMismatch

PENDING, STORED, USED = "pending", "stored", "used"
SWEEP_BATCH = 500


def _open(tenant_id: str):
    """The tenant's uploads that hold a place: not committed, not expired."""
    return ContextUpload.select().where(
        ContextUpload.tenant_id == tenant_id,
        ContextUpload.state != USED,
        ContextUpload.expires_at > utcnow(),
    )


def create_upload(actor: Actor, project: Project) -> ContextUpload:
    """A new pending upload of `project`, after sweeping the project's expired ones."""
    sweep_expired(project_id=project.id)
    lifetime = datetime.timedelta(seconds=int(setting("UPLOAD_EXPIRES")))
    with database.atomic():
        tenancy.check_quota(actor.tenant, "max_open_uploads", _open(actor.tenant_id).count)
        now = utcnow()
        return ContextUpload.create(
            id=new_id("upl"),
            tenant_id=actor.tenant_id,
            project=project.id,
            created_by=actor.log_name,
            created_at=now,
            expires_at=now + lifetime,
        )


def _missing(upload_id: str) -> NotFound:
    return NotFound(f"No such upload: {upload_id[:40]!r} (unknown, or expired).")


def find(actor: Actor, project: Project, upload_id: str) -> ContextUpload:
    """The project's live upload; another project's, tenant's or an expired one is 404."""
    upload = (
        ContextUpload.select()
        .where(
            ContextUpload.id == upload_id,
            ContextUpload.tenant_id == actor.tenant_id,
            ContextUpload.project == project.id,
        )
        .first()
    )
    if upload is None or upload.expires_at <= utcnow():
        raise _missing(upload_id)
    return upload


def send(
    actor: Actor,
    project: Project,
    upload_id: str,
    chunks: Iterable[bytes],
    size_hint: int | None,
    expected_sha256: str | None,
) -> ContextUpload:
    """Store the upload's bytes (once: a second send is a 409) and count them as stored."""
    upload = find(actor, project, upload_id)
    if upload.state != PENDING:
        raise Conflict("This upload's bytes were already sent: open another upload.")
    bounded = write_rules.admit_upload(actor.tenant, chunks, size_hint)
    stored = objects.store(actor.tenant_id, project.id, bounded)
    try:
        if expected_sha256 is not None and stored.sha256 != expected_sha256:
            raise ChecksumMismatch("The body's SHA-256 does not match Content-SHA256.")
        with database.atomic():
            query = ContextUpload.select().where(ContextUpload.id == upload.id)
            current = for_update(query).first()
            if current is None or current.expires_at <= utcnow():
                raise _missing(upload_id)
            if current.state != PENDING:  # a concurrent send won
                raise Conflict("This upload's bytes were already sent: open another upload.")
            tenancy.add_storage(actor.tenant, stored.size)
            ContextUpload.update(
                state=STORED, object_key=stored.key, size=stored.size, sha256=stored.sha256
            ).where(ContextUpload.id == upload.id).execute()
    except BaseException:
        objects.delete_quietly([stored.key])
        raise
    return ContextUpload.get_by_id(upload.id)


def take(actor: Actor, project: Project, upload_ids: Sequence[str]) -> list[objects.StoredObject]:
    """The stored objects of the uploads a commit names, in order, marked used (inside the
    commit's transaction, under the project's lock): all of them, or a refusal."""
    now = utcnow()
    query = ContextUpload.select().where(
        ContextUpload.id.in_(list(upload_ids)),
        ContextUpload.tenant_id == actor.tenant_id,
        ContextUpload.project == project.id,
    )
    rows = {row.id: row for row in for_update(query)}
    for upload_id in upload_ids:
        row = rows.get(upload_id)
        if row is None or row.expires_at <= now:
            raise _missing(upload_id)
        if row.state == PENDING:
            raise Conflict(f"Upload {upload_id!r} has no bytes yet: send them first.")
        if row.state == USED:
            raise Conflict(f"Upload {upload_id!r} was already committed.")
    ContextUpload.update(state=USED).where(ContextUpload.id.in_(list(upload_ids))).execute()
    return [
        objects.StoredObject(rows[i].object_key, rows[i].size, rows[i].sha256) for i in upload_ids
    ]


def sweep_expired(*, project_id: str | None = None, now: datetime.datetime | None = None) -> dict:
    """Forget expired uploads: free the bytes of those never committed and delete their
    objects (a committed one's bytes are its entry's now). Returns counts."""
    now = now or utcnow()
    swept = {"uploads": 0, "objects_deleted": 0, "bytes_freed": 0}
    while True:
        query = ContextUpload.select().where(ContextUpload.expires_at <= now)
        if project_id is not None:
            query = query.where(ContextUpload.project == project_id)
        with database.atomic():
            batch = list(for_update(query.order_by(ContextUpload.id).limit(SWEEP_BATCH)))
            if not batch:
                return swept
            freed: dict[str, int] = {}
            for row in batch:
                if row.state == STORED:
                    freed[row.tenant_id] = freed.get(row.tenant_id, 0) + row.size
            for tenant_id, size in freed.items():
                tenancy.release_storage(tenant_id, size)
            ContextUpload.delete().where(ContextUpload.id.in_([r.id for r in batch])).execute()
        keys = [r.object_key for r in batch if r.state == STORED and r.object_key]
        objects.delete_quietly(keys)
        swept["uploads"] += len(batch)
        swept["objects_deleted"] += len(keys)
        swept["bytes_freed"] += sum(freed.values())


def delete_project_uploads(project: Project) -> list[str]:
    """Inside a project's deletion: its uploads go; the keys of bytes no entry took."""
    rows = list(ContextUpload.select().where(ContextUpload.project == project.id))
    kept = [r for r in rows if r.state == STORED and r.object_key]
    tenancy.release_storage(project.tenant_id, sum(r.size for r in kept))
    ContextUpload.delete().where(ContextUpload.project == project.id).execute()
    return [r.object_key for r in kept]
