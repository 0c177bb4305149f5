"""The ApiKey model: a tenant's (or, with no tenant, the platform's) service credential."""

from __future__ import annotations

import peewee

from ctxcloud import BaseModel, JSONField, utcnow


class ApiKey(BaseModel):
    id = peewee.CharField(primary_key=True, max_length=32)
    # NULL for platform keys (platform:admin).
    tenant_id = peewee.CharField(max_length=64, null=True, index=True)
    name = peewee.CharField(max_length=100)
    prefix = peewee.CharField(max_length=8, unique=True)
    # HMAC-SHA256(API_KEY_PEPPER, key), hex: the key itself is never stored.
    key_hash = peewee.CharField(max_length=64)
    scopes = JSONField(default=list)
    # None: every project of the tenant.
    project_ids = JSONField(null=True)
    expires_at = peewee.DateTimeField(null=True)
    last_used_at = peewee.DateTimeField(null=True)
    revoked_at = peewee.DateTimeField(null=True)
    created_by = peewee.CharField(max_length=100)
    created_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        table_name = "api_key"

    @classmethod
    def of_tenant(cls, tenant_id: str) -> peewee.ModelSelect:
        """The only way to read a tenant's keys: live keys of one tenant."""
        if not tenant_id:
            raise ValueError("a tenant id is required")
        return cls.select().where(cls.tenant_id == tenant_id, cls.revoked_at.is_null())
