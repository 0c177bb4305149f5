"""Schema of the tenants plugin, frozen as of each migration."""

from __future__ import annotations

import peewee

from ctxcloud.migrations import Migration


def _initial(migrator, db) -> None:
    class Tenant(peewee.Model):
        id = peewee.CharField(primary_key=True, max_length=32)
        slug = peewee.CharField(max_length=63, unique=True)
        name = peewee.CharField(max_length=200)
        status = peewee.CharField(max_length=16, default="active")
        config = peewee.TextField(default="{}")
        created_at = peewee.DateTimeField()
        updated_at = peewee.DateTimeField()

        class Meta:
            database = db
            table_name = "tenant"

    db.create_tables([Tenant])


def _usage(migrator, db) -> None:
    class TenantUsage(peewee.Model):
        tenant_id = peewee.CharField(primary_key=True, max_length=32)
        storage_bytes = peewee.BigIntegerField(default=0)

        class Meta:
            database = db
            table_name = "tenant_usage"

    db.create_tables([TenantUsage])


MIGRATIONS = [
    Migration("tenants.0001_initial", _initial),
    Migration(
        "tenants.0002_usage",
        _usage,
        depends_on=("tenants.0001_initial",),
        description="Stored bytes per tenant, the row quota checks lock",
    ),
]
