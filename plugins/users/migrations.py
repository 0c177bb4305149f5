"""Schema of the users plugin, frozen as of each migration."""

from __future__ import annotations

import peewee
from ctxcloud.migrations import Migration


def _initial(migrator, db) -> None:
    class User(peewee.Model):
        id = peewee.CharField(primary_key=True, max_length=32)
        tenant_id = peewee.CharField(max_length=64, index=True)
        username = peewee.CharField(max_length=64)
        role = peewee.CharField(max_length=16)
        password_hash = peewee.CharField(max_length=255)
        disabled = peewee.BooleanField(default=False)
        sessions_revoked_at = peewee.DateTimeField(null=True)
        created_at = peewee.DateTimeField()
        updated_at = peewee.DateTimeField()

        class Meta:
            database = db
            table_name = "tenant_user"
            indexes = ((("tenant_id", "username"), True),)

    db.create_tables([User])


MIGRATIONS = [
    Migration("users.0001_initial", _initial, depends_on=("tenants.0001_initial",)),
]
