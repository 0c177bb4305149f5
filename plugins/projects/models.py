"""The Project model: per tenant, addressed by id or by slug."""

from __future__ import annotations

import peewee
from ctxcloud.db import BaseModel, JSONField, utcnow


class Project(BaseModel):
    id = peewee.CharField(primary_key=True, max_length=32)
    tenant_id = peewee.CharField(max_length=64, index=True)
    slug = peewee.CharField(max_length=63)
    name = peewee.CharField(max_length=200)
    description = peewee.TextField(default="")
    metadata = JSONField(default=dict)
    # Head revision of the project's context: raised by exactly one per change, in the
    # transaction that makes the change (the row is locked while it is raised).
    revision = peewee.BigIntegerField(default=0)
    # Revisions before this one were pruned (revisions_kept): they can no longer be read.
    history_starts_at = peewee.BigIntegerField(default=0)
    created_at = peewee.DateTimeField(default=utcnow)
    updated_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        table_name = "project"
        indexes = ((("tenant_id", "slug"), True),)

    @classmethod
    def of_tenant(cls, tenant_id: str) -> peewee.ModelSelect:
        """The only way to read projects: always within one tenant."""
        if not tenant_id:
            raise ValueError("a tenant id is required")
        return cls.select().where(cls.tenant_id == tenant_id)
