"""Schema of the OAuth clients plugin, frozen as of each migration."""

from __future__ import annotations

import peewee

from ctxcloud import Migration


def _initial(migrator, db) -> None:
    class OAuthClient(peewee.Model):
        client_id = peewee.CharField(primary_key=True, max_length=32)
        tenant_id = peewee.CharField(max_length=64, index=True)
        name = peewee.CharField(max_length=100)
        secret_hash = peewee.CharField(max_length=64)
        scopes = peewee.TextField(default="[]")
        project_ids = peewee.TextField(null=True)
        created_by = peewee.CharField(max_length=200)
        created_at = peewee.DateTimeField()
        secret_rotated_at = peewee.DateTimeField(null=True)
        revoked_at = peewee.DateTimeField(null=True)

        class Meta:
            database = db
            table_name = "oauth_client"

    class OAuthToken(peewee.Model):
        jti = peewee.CharField(primary_key=True, max_length=64)
        client_id = peewee.CharField(max_length=32, index=True)
        tenant_id = peewee.CharField(max_length=64, index=True)
        scopes = peewee.TextField(default="[]")
        issued_at = peewee.DateTimeField()
        expires_at = peewee.DateTimeField(index=True)
        revoked_at = peewee.DateTimeField(null=True)

        class Meta:
            database = db
            table_name = "oauth_token"

    db.create_tables([OAuthClient, OAuthToken])


MIGRATIONS = [
    Migration("auth_oauth.0001_initial", _initial, depends_on=("tenants.0001_initial",)),
]
