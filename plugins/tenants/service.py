"""Tenant rules: unique slugs, suspension, deletion of everything a tenant owns."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import flask
import peewee

from app.auth import emit_audit
from app.db import database, utcnow
from app.errors import Conflict, NotFound, TenantSuspended, ValidationFailed
from app.ids import new_id
from app.objects import delete_quietly
from plugins.tenants.models import ACTIVE, SUSPENDED, Tenant
from plugins.tenants.revocation import credentials_changed
from plugins.tenants.schemas import SLUG_PATTERN

_slug = re.compile(SLUG_PATTERN)


def create_tenant(slug: str, name: str | None = None) -> Tenant:
    """A new active tenant; a taken slug is a 409."""
    if not isinstance(slug, str) or not _slug.match(slug):
        raise ValidationFailed({"slug": ["2-63 lowercase letters, digits and inner hyphens."]})
    if name is not None and not 1 <= len(name) <= 200:
        raise ValidationFailed({"name": ["Length must be between 1 and 200."]})
    if Tenant.select().where(Tenant.slug == slug).exists():
        raise Conflict(f"The tenant slug {slug!r} is taken.")
    try:
        with database.atomic():
            now = utcnow()
            tenant = Tenant.create(
                id=new_id("tnt"), slug=slug, name=name or slug, created_at=now, updated_at=now
            )
    except peewee.IntegrityError:
        raise Conflict(f"The tenant slug {slug!r} is taken.") from None
    emit_audit("tenant_created", tenant_id=tenant.id, slug=slug)
    return tenant


def list_tenants(page: int, page_size: int) -> tuple[list[Tenant], int]:
    query = Tenant.select()
    items = list(query.order_by(Tenant.created_at, Tenant.id).paginate(page, page_size))
    return items, query.count()


def get_tenant(tenant_id: str) -> Tenant:
    tenant = Tenant.get_or_none(Tenant.id == tenant_id)
    if tenant is None:
        raise NotFound("No such tenant.")
    return tenant


def tenant_by_slug(slug: str) -> Tenant | None:
    return Tenant.get_or_none(Tenant.slug == slug)


def update_tenant(tenant_id: str, changes: Mapping[str, Any]) -> Tenant:
    """Rename, suspend or reactivate; every cached credential of the tenant is re-checked."""
    tenant = get_tenant(tenant_id)
    before = tenant.status
    for field in ("name", "status"):
        if field in changes:
            setattr(tenant, field, changes[field])
    tenant.updated_at = utcnow()
    tenant.save()
    credentials_changed(tenant.id)
    if before != tenant.status:
        emit_audit(
            "tenant_suspended" if tenant.status == SUSPENDED else "tenant_reactivated",
            tenant_id=tenant.id,
            slug=tenant.slug,
        )
    return tenant


def delete_tenant(tenant: Tenant) -> None:
    """Each plugin removes its rows (``tenant_deleting``), then the tenant; objects after commit."""
    pm = flask.current_app.extensions["ctxcloud"].pm
    with database.atomic():
        keys = [key for result in pm.hook.tenant_deleting(tenant=tenant) for key in result or ()]
        Tenant.delete().where(Tenant.id == tenant.id).execute()
    credentials_changed(tenant.id)
    delete_quietly(keys)
    emit_audit("tenant_deleted", tenant_id=tenant.id, slug=tenant.slug)


def refuse_suspended(tenant: Tenant | None) -> None:
    """A suspended tenant's credentials are valid but refused: 403 tenant_suspended."""
    if tenant is not None and tenant.status != ACTIVE:
        raise TenantSuspended("This tenant is suspended.")
