"""The Tenant model: the root every other row belongs to."""

from __future__ import annotations

from typing import Any

import peewee

from ctxcloud.db import BaseModel, JSONField, utcnow
from ctxcloud.plugins.tenants import config as tenant_config

ACTIVE, SUSPENDED, DELETING = "active", "suspended", "deleting"
# What a platform operator may set; `deleting` is entered only by deleting the tenant.
STATUSES = (ACTIVE, SUSPENDED)


class Tenant(BaseModel):
    id = peewee.CharField(primary_key=True, max_length=32)
    slug = peewee.CharField(max_length=63, unique=True)
    name = peewee.CharField(max_length=200)
    status = peewee.CharField(max_length=16, default=ACTIVE)
    # Overrides of quotas and settings ({"quotas": {...}, "settings": {...}}); see config.py.
    config = JSONField(default=dict)
    created_at = peewee.DateTimeField(default=utcnow)
    updated_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        table_name = "tenant"

    @property
    def suspended(self) -> bool:
        return self.status == SUSPENDED

    @property
    def effective_config(self) -> dict[str, Any]:
        return tenant_config.effective(self)

    def quota(self, name: str) -> Any:
        return tenant_config.quota(self, name)

    def setting(self, name: str) -> Any:
        return tenant_config.setting(self, name)

    def rate_limits(self) -> tuple[str | None, str | None]:
        """(per credential, tenant-wide): what the rate limiter spends for this tenant."""
        return self.quota("rate_limit"), self.quota("tenant_rate_limit")
