"""The Tenant model: the root every other row belongs to."""

from __future__ import annotations

import peewee

from app.db import BaseModel, JSONField, utcnow

ACTIVE, SUSPENDED = "active", "suspended"
STATUSES = (ACTIVE, SUSPENDED)


class Tenant(BaseModel):
    id = peewee.CharField(primary_key=True, max_length=32)
    slug = peewee.CharField(max_length=63, unique=True)
    name = peewee.CharField(max_length=200)
    status = peewee.CharField(max_length=16, default=ACTIVE)
    # Quotas and settings (issue 6); empty means "the service's defaults".
    config = JSONField(default=dict)
    created_at = peewee.DateTimeField(default=utcnow)
    updated_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        table_name = "tenant"

    @property
    def suspended(self) -> bool:
        return self.status == SUSPENDED
