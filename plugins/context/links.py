"""Signed links: a URL that reads one pinned revision of a project (or one entry of it) without
a credential, until it expires or is revoked (docs/links.md).

A link is a row (``context_link``) and a token. The token is ``<key id>.<signature>``, the
signature an HMAC-SHA256, under the link key of that id (link_keys.py), of everything the row
names: link id, tenant, project, revision, path and expiry. Every use reads the row again and
checks, in this order, nothing short-circuiting into a different answer:

- the token's form, the row, the key id (known, the row's), the signature (constant time);
- not revoked, not expired, the tenant active with ``links_enabled`` on, the project there,
  the revision not pruned.

Any failure is the same 404 ``not_found`` "No such link." (no detail tells an expired link from
a revoked, tampered or unknown one). Revocation sets ``revoked_at`` in the database, which
every process reads on every use: it holds at once everywhere, with no cache to invalidate.
"""

from __future__ import annotations

import datetime
import hmac
import json
import re
from hashlib import sha256
from typing import Any

import flask
import peewee

from ctxcloud import (
    Actor,
    BaseModel,
    Forbidden,
    NotFound,
    Tenant,
    client_address,
    emit_audit,
    new_id,
    tenancy,
    utcnow,
)
from ctxcloud.plugins.context import link_keys, service
from ctxcloud.plugins.context.models import EntryVersion, Project
from ctxcloud.plugins.context.paths import existing_path
from ctxcloud.plugins.context.problems import InvalidPath

MAX_EXPIRES_IN = 30 * 24 * 3600
MIN_EXPIRES_IN = 60
# Rows that stopped working this long ago are swept when the project makes its next link.
KEEP_ENDED = datetime.timedelta(days=30)
LINK_ID = re.compile(r"^lnk_[a-z2-7]{20}$")
TOKEN = re.compile(r"^([A-Za-z0-9_-]{1,40})\.([A-Za-z0-9_-]{43})$")
_MAC_LABEL = "ctxcloud-link-v1"
ACTIVE, EXPIRED, REVOKED = "active", "expired", "revoked"


class LinksDisabled(Forbidden):
    """403 `links_disabled`: the tenant's `links_enabled` setting is off."""

    code = "links_disabled"


class ContextLink(BaseModel):
    """A signed link to one revision of a project, or to one entry at that revision."""

    id = peewee.CharField(primary_key=True, max_length=32)
    tenant_id = peewee.CharField(max_length=64, index=True)
    project = peewee.ForeignKeyField(Project, column_name="project_id", on_delete="CASCADE")
    revision = peewee.BigIntegerField()
    path = peewee.TextField(null=True)
    key_id = peewee.CharField(max_length=64)
    created_by = peewee.CharField(max_length=200)
    created_at = peewee.DateTimeField(default=utcnow)
    expires_at = peewee.DateTimeField(index=True)
    revoked_at = peewee.DateTimeField(null=True)
    revoked_by = peewee.CharField(max_length=200, null=True)

    class Meta:
        table_name = "context_link"

    @property
    def status(self) -> str:
        if self.revoked_at is not None:
            return REVOKED
        return EXPIRED if self.expires_at <= now() else ACTIVE


def now() -> datetime.datetime:
    """The clock links are judged by (tests replace it)."""
    return utcnow()


def _epoch(moment: datetime.datetime) -> int:
    return int(moment.replace(tzinfo=datetime.UTC).timestamp())


def signature(link: ContextLink, key: bytes) -> str:
    """The HMAC of everything the link names, URL-safe base64 (43 characters)."""
    message = json.dumps(
        [
            _MAC_LABEL,
            link.id,
            link.key_id,
            link.tenant_id,
            link.project_id,
            int(link.revision),
            link.path,
            _epoch(link.expires_at),
        ],
        separators=(",", ":"),
        ensure_ascii=True,
    )
    return link_keys.urlsafe(hmac.new(key, message.encode(), sha256).digest())


def token(link: ContextLink) -> str:
    key = link_keys.load().get(link.key_id)
    assert key is not None, "a link is signed by a configured key"
    return f"{link.key_id}.{signature(link, key)}"


def link_url(link: ContextLink) -> str:
    return flask.url_for(
        "context_link_reads.LinkRoot", link_id=link.id, token=token(link), _external=True
    )


# Owners: create, list, revoke ------------------------------------------------------------


def _check_enabled(tenant: Tenant) -> None:
    if not tenant.setting("links_enabled"):
        raise LinksDisabled(
            "Signed links are off for this tenant: its owner turns them on with the setting "
            "links_enabled (PATCH /api/v1/tenant/settings)."
        )


def create(actor: Actor, project: Project, data: dict[str, Any]) -> ContextLink:
    """A new link to `project` at `data["revision"]` (and `data["path"]`, which must exist then)."""
    _check_enabled(actor.tenant)
    revision = data["revision"]
    service.check_revision(project, revision)
    path = None
    if data.get("path") is not None:
        path = existing_path(
            data["path"], lambda p: service.entry_at(project, p, revision) is not None
        )
        if service.entry_at(project, path, revision) is None:
            raise NotFound(f"No entry at that path in revision {revision}.")
    created = now().replace(microsecond=0)
    _sweep_ended(project)
    link = ContextLink.create(
        id=new_id("lnk"),
        tenant_id=actor.tenant_id,
        project=project.id,
        revision=revision,
        path=path,
        key_id=link_keys.load().active_id,
        created_by=actor.log_name,
        created_at=created,
        expires_at=created + datetime.timedelta(seconds=data["expires_in"]),
    )
    emit_audit(
        "link.created",
        link_id=link.id,
        project_id=project.id,
        revision=revision,
        path=path,
        expires_at=link.expires_at.isoformat() + "Z",
    )
    return link


def _sweep_ended(project: Project) -> None:
    """Forget the project's links that stopped working (expired or revoked) long ago."""
    cutoff = now() - KEEP_ENDED
    ContextLink.delete().where(
        ContextLink.project == project.id,
        (ContextLink.expires_at < cutoff)
        | (ContextLink.revoked_at.is_null(False) & (ContextLink.revoked_at < cutoff)),
    ).execute()


def list_links(project: Project, page: int, page_size: int) -> tuple[list[ContextLink], int]:
    query = ContextLink.select().where(
        ContextLink.tenant_id == project.tenant_id, ContextLink.project == project.id
    )
    total = query.count()
    items = list(
        query.order_by(ContextLink.created_at.desc(), ContextLink.id).paginate(page, page_size)
    )
    return items, total


def revoke(actor: Actor, project: Project, link_id: str) -> None:
    """Revoke the project's link (again: nothing more happens); another's is a 404."""
    link = (
        ContextLink.select()
        .where(
            ContextLink.id == link_id,
            ContextLink.tenant_id == actor.tenant_id,
            ContextLink.project == project.id,
        )
        .first()
    )
    if link is None:
        raise NotFound("No such link.")
    if link.revoked_at is not None:
        return
    revoked = (
        ContextLink.update(revoked_at=now(), revoked_by=actor.log_name)
        .where(ContextLink.id == link.id, ContextLink.revoked_at.is_null())
        .execute()
    )
    if revoked:
        emit_audit("link.revoked", link_id=link.id, project_id=project.id)


def delete_project_links(project: Project) -> None:
    ContextLink.delete().where(ContextLink.project == project.id).execute()


# Anyone holding the URL: open, then read -------------------------------------------------


def no_such_link() -> NotFound:
    """The one answer to every link that does not work, whatever the reason."""
    return NotFound("No such link.")


def open_link(link_id: str, presented: str | None) -> tuple[ContextLink, Project]:
    """The link `link_id` if `presented` is its token and it works now; else no_such_link()."""
    matched = TOKEN.match(presented or "")
    if matched is None or not LINK_ID.match(link_id or ""):
        raise no_such_link()
    key_id, mac = matched.groups()
    link = ContextLink.get_or_none(ContextLink.id == link_id)
    key = link_keys.load().get(key_id)
    if link is None or key is None or not hmac.compare_digest(link.key_id, key_id):
        raise no_such_link()
    if not hmac.compare_digest(signature(link, key), mac):
        raise no_such_link()
    if link.revoked_at is not None or link.expires_at <= now():
        raise no_such_link()
    tenant = Tenant.get_or_none(Tenant.id == link.tenant_id)
    if tenant is None or tenant.status != tenancy.ACTIVE or not tenant.setting("links_enabled"):
        raise no_such_link()
    project = Project.of_tenant(tenant.id).where(Project.id == link.project_id).first()
    if project is None:
        raise no_such_link()
    try:
        service.check_revision(project, link.revision)
    except NotFound:
        raise no_such_link() from None
    return link, project


def pinned_entry(link: ContextLink, project: Project, path: str | None) -> EntryVersion:
    """The entry a link reaches: its own path (path None), or `path` of a whole-project link."""
    if (link.path is None) == (path is None):
        raise no_such_link()
    wanted = link.path if path is None else path
    try:
        wanted = existing_path(
            wanted, lambda p: service.entry_at(project, p, link.revision) is not None
        )
    except InvalidPath:
        raise no_such_link() from None
    version = service.entry_at(project, wanted, link.revision)
    if version is None:
        raise no_such_link()
    return version


def used(link: ContextLink, what: str, path: str | None = None) -> None:
    """Audit one read through the link (never its token)."""
    emit_audit(
        "link.used",
        tenant_id=link.tenant_id,
        actor=f"link:{link.id}",
        link_id=link.id,
        project_id=link.project_id,
        revision=link.revision,
        path=path,
        read=what,
        address=client_address(),
    )
