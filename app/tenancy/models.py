"""The Tenant model, the root every other row belongs to, and its usage row."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import peewee

from ctxcloud.db import BaseModel, JSONField, utcnow
from ctxcloud.tenancy.options import tenant_options

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
    def stored_config(self) -> Mapping[str, Any]:
        return self.config if isinstance(self.config, Mapping) else {}

    @property
    def effective_config(self) -> dict[str, Any]:
        return tenant_options().effective(self.stored_config)

    def quota(self, name: str) -> Any:
        """The tenant's quota `name` (declared by the core or a plugin); None: unlimited."""
        return tenant_options().quota(self.stored_config, name)

    def setting(self, name: str) -> Any:
        """The tenant's setting `name` (its choice, else the service default)."""
        return tenant_options().setting(self.stored_config, name)

    def rate_limits(self) -> tuple[str | None, str | None]:
        """(per credential, tenant-wide): what the rate limiter spends for this tenant."""
        return self.quota("rate_limit"), self.quota("tenant_rate_limit")


class TenantUsage(BaseModel):
    """The row quota checks lock, and the tenant's stored bytes (every kept object)."""

    tenant_id = peewee.CharField(primary_key=True, max_length=32)
    storage_bytes = peewee.BigIntegerField(default=0)

    class Meta:
        table_name = "tenant_usage"
