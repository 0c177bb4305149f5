"""A tenant's life: unique slugs, config changes, usage, suspension, and the deletion of
everything it owns (every plugin's rows, through ``tenant_deleting``, and its objects)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import flask
import peewee

from ctxcloud import ratelimit
from ctxcloud.auth import emit_audit
from ctxcloud.db import database, for_update, utcnow
from ctxcloud.errors import Conflict, Forbidden, NotFound, Unauthorized, ValidationFailed
from ctxcloud.ids import SLUG_PATTERN, SLUG_RULE, new_id
from ctxcloud.keystore import current_keystore
from ctxcloud.objects import storage
from ctxcloud.tenancy import quotas
from ctxcloud.tenancy.credentials import credentials_changed
from ctxcloud.tenancy.models import ACTIVE, DELETING, SUSPENDED, Tenant
from ctxcloud.tenancy.options import tenant_options

_slug = re.compile(SLUG_PATTERN)


class TenantSuspended(Forbidden):
    """403 `tenant_suspended`: the credential is valid, its tenant is suspended."""

    code = "tenant_suspended"


def create_tenant(
    slug: str, name: str | None = None, config: Mapping[str, Any] | None = None
) -> Tenant:
    """A new active tenant with optional config overrides; a taken slug is a 409."""
    if not isinstance(slug, str) or not _slug.match(slug):
        raise ValidationFailed({"slug": [SLUG_RULE]})
    if name is not None and not 1 <= len(name) <= 200:
        raise ValidationFailed({"name": ["Length must be between 1 and 200."]})
    if Tenant.select().where(Tenant.slug == slug).exists():
        raise Conflict(f"The tenant slug {slug!r} is taken.")
    try:
        with database.atomic():
            now = utcnow()
            tenant = Tenant(
                id=new_id("tnt"), slug=slug, name=name or slug, created_at=now, updated_at=now
            )
            options = tenant_options()
            tenant.config = options.changed({}, options.validate_change(config or {}))
            tenant.save(force_insert=True)
            quotas.open_usage(tenant.id)
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


def current_tenant() -> Tenant | None:
    """The tenant of the request's credential (None without one, or for a platform key)."""
    from ctxcloud.auth import current_actor

    actor = current_actor(required=False)
    return getattr(actor, "tenant", None)


def tenant_by_slug(slug: str) -> Tenant | None:
    return Tenant.get_or_none(Tenant.slug == slug)


def update_tenant(tenant_id: str, changes: Mapping[str, Any]) -> Tenant:
    """Rename, suspend or reactivate; every cached credential of the tenant is re-checked."""
    tenant = get_tenant(tenant_id)
    refuse_deleting(tenant)
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


def update_config(tenant_id: str, changes: Mapping[str, Mapping[str, Any]]) -> Tenant:
    """Change quotas and/or settings; every process applies them on its next request."""
    with database.atomic():
        tenant = for_update(Tenant.select().where(Tenant.id == tenant_id)).first()
        if tenant is None:
            raise NotFound("No such tenant.")
        refuse_deleting(tenant)
        tenant.config = tenant_options().changed(tenant.stored_config, changes)
        tenant.updated_at = utcnow()
        tenant.save()
    credentials_changed(tenant.id)
    emit_audit("tenant_config_changed", tenant_id=tenant.id, changes=dict(changes))
    return tenant


def usage(tenant: Tenant) -> dict[str, Any]:
    """Exact counts, read now: every plugin's (``tenant_usage``), stored bytes, requests."""
    pm = flask.current_app.extensions["ctxcloud"].pm
    counts: dict[str, Any] = {"projects": 0, "entries": 0, "users": 0, "api_keys": 0}
    for result in pm.hook.tenant_usage(tenant=tenant):
        counts.update(result or {})
    counts["storage_bytes"] = quotas.storage_bytes(tenant.id)
    window = ratelimit.tenant_requests(tenant)
    counts["requests"] = (
        None
        if window is None
        else {
            "count": window.count,
            "limit": tenant.quota("tenant_rate_limit"),
            "reset": window.headers()["RateLimit-Reset"],
        }
    )
    return counts


def delete_tenant(tenant: Tenant) -> None:
    """Delete the tenant and everything it owns; safe to repeat after an interruption.

    1. The tenant is marked ``deleting`` (committed): every credential is refused from now on.
    2. Its data key is destroyed (committed): every object it stored is unreadable from now
       on, whatever a crash leaves behind (crypto-shredding).
    3. One transaction: each plugin deletes its rows (``tenant_deleting``) and names its
       objects; the objects are deleted; then the tenant row. A failure rolls it all back, and
       running this again (``ctxcloud tenants purge``) carries on from step 3.
    """
    if tenant.status != DELETING:
        Tenant.update(status=DELETING, updated_at=utcnow()).where(Tenant.id == tenant.id).execute()
        tenant.status = DELETING
        credentials_changed(tenant.id)
        emit_audit("tenant_deleting", tenant_id=tenant.id, slug=tenant.slug)
    current_keystore().destroy(tenant.id)
    pm = flask.current_app.extensions["ctxcloud"].pm
    backend = storage()
    with database.atomic():
        keys = [key for result in pm.hook.tenant_deleting(tenant=tenant) for key in result or ()]
        for key in keys:
            backend.delete(key)
        quotas.forget(tenant.id)
        Tenant.delete().where(Tenant.id == tenant.id).execute()
    credentials_changed(tenant.id)
    emit_audit("tenant_deleted", tenant_id=tenant.id, slug=tenant.slug, objects=len(keys))


def refuse_deleting(tenant: Tenant) -> None:
    if tenant.status == DELETING:
        raise Conflict("This tenant is being deleted; DELETE it again to finish.")


def refuse_suspended(tenant: Tenant | None) -> None:
    """A suspended tenant's credentials are valid but refused: 403 tenant_suspended; a tenant
    being deleted has no valid credentials left: 401."""
    if tenant is None or tenant.status == ACTIVE:
        return
    if tenant.status == DELETING:
        raise Unauthorized()
    raise TenantSuspended("This tenant is suspended.")
