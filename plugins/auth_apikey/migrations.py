"""Schema of the API keys plugin, frozen as of each migration."""

from __future__ import annotations

import peewee

from ctxcloud import Migration


def _initial(migrator, db) -> None:
    class ApiKey(peewee.Model):
        id = peewee.CharField(primary_key=True, max_length=32)
        tenant_id = peewee.CharField(max_length=64, null=True, index=True)
        name = peewee.CharField(max_length=100)
        prefix = peewee.CharField(max_length=8, unique=True)
        key_hash = peewee.CharField(max_length=64)
        scopes = peewee.TextField(default="[]")
        project_ids = peewee.TextField(null=True)
        expires_at = peewee.DateTimeField(null=True)
        last_used_at = peewee.DateTimeField(null=True)
        revoked_at = peewee.DateTimeField(null=True)
        created_by = peewee.CharField(max_length=100)
        created_at = peewee.DateTimeField()

        class Meta:
            database = db
            table_name = "api_key"

    db.create_tables([ApiKey])


MIGRATIONS = [
    Migration("auth_apikey.0001_initial", _initial, depends_on=("tenants.0001_initial",)),
]
