"""API key rules: a key never holds more than its creator, shown once, revoked at once."""

from __future__ import annotations

import datetime
from collections.abc import Iterable

import flask
import peewee

from ctxcloud import (
    PLATFORM_PERMISSIONS,
    Actor,
    NotFound,
    Tenant,
    ValidationFailed,
    check_delegation,
    database,
    emit_audit,
    new_id,
    tenancy,
    utcnow,
)
from ctxcloud.plugins.auth_apikey.keys import generate_key, key_hash
from ctxcloud.plugins.auth_apikey.models import ApiKey
from ctxcloud.tenancy import credentials_changed


def pepper() -> bytes:
    return str(flask.current_app.config["API_KEY_PEPPER"]).encode()


def live_keys(tenant_id: str) -> peewee.ModelSelect:
    """The tenant's keys that still work: not revoked, not expired (what max_api_keys counts)."""
    return ApiKey.of_tenant(tenant_id).where(
        ApiKey.expires_at.is_null() | (ApiKey.expires_at > utcnow())
    )


def _insert(**fields) -> tuple[ApiKey, str]:
    """Insert with a fresh prefix, retrying on the (astronomically rare) prefix collision.

    A tenant's key counts against its max_api_keys quota, checked in the same transaction.
    """
    tenant_id = fields.get("tenant_id")
    for attempt in range(3):
        prefix, secret = generate_key()
        try:
            with database.atomic():
                if tenant_id is not None:
                    tenant = Tenant.get_by_id(tenant_id)
                    tenancy.check_quota(tenant, "max_api_keys", live_keys(tenant_id).count)
                key = ApiKey.create(
                    id=new_id("key"), prefix=prefix, key_hash=key_hash(pepper(), secret), **fields
                )
            return key, secret
        except peewee.IntegrityError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def create_api_key(
    tenant_id: str,
    name: str,
    scopes: Iterable[str],
    project_ids: Iterable[str] | None = None,
    expires_at: datetime.datetime | None = None,
    *,
    actor: Actor | None = None,
    created_by: str | None = None,
) -> tuple[ApiKey, str]:
    """A new key of the tenant and its secret (the only time the secret exists in clear)."""
    scopes = sorted(set(scopes))
    project_ids = None if project_ids is None else sorted(set(project_ids))
    if not isinstance(name, str) or not 1 <= len(name) <= 100:
        raise ValidationFailed({"name": ["Length must be between 1 and 100."]})
    if expires_at is not None and expires_at <= utcnow():
        raise ValidationFailed({"expires_at": ["Must be in the future."]})
    check_delegation(scopes, project_ids, actor, what="key")
    key, secret = _insert(
        tenant_id=tenant_id,
        name=name,
        scopes=scopes,
        project_ids=project_ids,
        expires_at=expires_at,
        created_by=created_by or (actor.log_name if actor else "cli"),
    )
    emit_audit(
        "api_key_created",
        tenant_id=tenant_id,
        key_id=key.id,
        name=name,
        prefix=key.prefix,
        scopes=scopes,
        project_ids=project_ids,
    )
    return key, secret


def create_platform_key(name: str, created_by: str = "cli") -> tuple[ApiKey, str]:
    """A platform:admin key (no tenant), for operators; made through the CLI only."""
    if not isinstance(name, str) or not 1 <= len(name) <= 100:
        raise ValidationFailed({"name": ["Length must be between 1 and 100."]})
    key, secret = _insert(
        tenant_id=None, name=name, scopes=sorted(PLATFORM_PERMISSIONS), created_by=created_by
    )
    emit_audit(
        "api_key_created",
        tenant_id=None,
        key_id=key.id,
        name=name,
        prefix=key.prefix,
        scopes=sorted(PLATFORM_PERMISSIONS),
    )
    return key, secret


def list_api_keys(tenant_id: str, page: int, page_size: int) -> tuple[list[ApiKey], int]:
    query = ApiKey.of_tenant(tenant_id)
    items = list(query.order_by(ApiKey.created_at, ApiKey.id).paginate(page, page_size))
    return items, query.count()


def get_api_key(tenant_id: str, key_id: str) -> ApiKey:
    """A live key of the tenant; another tenant's, or a revoked one, is 404."""
    key = ApiKey.of_tenant(tenant_id).where(ApiKey.id == key_id).first()
    if key is None:
        raise NotFound("No such API key.")
    return key


def revoke_api_key(tenant_id: str, key_id: str) -> None:
    """The key stops working at once on every process (the row stays, for the audit trail)."""
    key = get_api_key(tenant_id, key_id)
    ApiKey.update(revoked_at=utcnow()).where(ApiKey.id == key.id).execute()
    credentials_changed(tenant_id)
    emit_audit("api_key_revoked", tenant_id=tenant_id, key_id=key.id, name=key.name)


def delete_tenant_keys(tenant_id: str) -> None:
    ApiKey.delete().where(ApiKey.tenant_id == tenant_id).execute()


def usage(tenant_id: str) -> dict[str, int]:
    return {"api_keys": live_keys(tenant_id).count()}
