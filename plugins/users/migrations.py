"""Schema of the users plugin, frozen as of each migration."""

from __future__ import annotations

import peewee

from ctxcloud import Migration


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


def _logins_initial(migrator, db) -> None:
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
    Migration("users.0001_initial", _initial, depends_on=("tenants.0001_initial",)),
    # The id keeps the name of the plugin logins came from: a database records what it applied.
    Migration("auth_jwt.0001_initial", _logins_initial, depends_on=("users.0001_initial",)),
]
