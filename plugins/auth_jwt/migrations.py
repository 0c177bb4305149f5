"""Schema of the JWT plugin, frozen as of each migration."""

from __future__ import annotations

import peewee
from ctxcloud.migrations import Migration


def _initial(migrator, db) -> None:
    class TokenFamily(peewee.Model):
        id = peewee.CharField(primary_key=True, max_length=32)
        tenant_id = peewee.CharField(max_length=64, index=True)
        user_id = peewee.CharField(max_length=32, index=True)
        refresh_jti = peewee.CharField(max_length=64)
        created_at = peewee.DateTimeField()
        expires_at = peewee.DateTimeField()
        revoked_at = peewee.DateTimeField(null=True)
        revoked_reason = peewee.CharField(max_length=16, null=True)

        class Meta:
            database = db
            table_name = "token_family"

    db.create_tables([TokenFamily])


MIGRATIONS = [
    Migration("auth_jwt.0001_initial", _initial, depends_on=("users.0001_initial",)),
]
