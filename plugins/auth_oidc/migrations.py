"""Schema of the federation plugin, frozen as of each migration."""

from __future__ import annotations

import peewee

from ctxcloud import Migration


def _initial(migrator, db) -> None:
    class IdentityProvider(peewee.Model):
        id = peewee.CharField(primary_key=True, max_length=32)
        tenant_id = peewee.CharField(max_length=64, index=True)
        name = peewee.CharField(max_length=63)
        issuer = peewee.CharField(max_length=400)
        audiences = peewee.TextField(default="[]")
        jwks_uri = peewee.CharField(max_length=2048)
        jwks_uri_discovered = peewee.BooleanField(default=False)
        algorithms = peewee.TextField(default="[]")
        subject_claim = peewee.CharField(max_length=256, default="sub")
        claim_rules = peewee.TextField(default="[]")
        default_role = peewee.CharField(max_length=16, null=True)
        created_by = peewee.CharField(max_length=300)
        created_at = peewee.DateTimeField()
        updated_at = peewee.DateTimeField()

        class Meta:
            database = db
            table_name = "identity_provider"
            indexes = ((("tenant_id", "name"), True),)

    class ProviderAudience(peewee.Model):
        id = peewee.AutoField()
        issuer = peewee.CharField(max_length=400)
        audience = peewee.CharField(max_length=255)
        tenant_id = peewee.CharField(max_length=64, index=True)
        provider_id = peewee.CharField(max_length=32, index=True)

        class Meta:
            database = db
            table_name = "identity_provider_audience"
            indexes = ((("issuer", "audience"), True),)

    db.create_tables([IdentityProvider, ProviderAudience])


MIGRATIONS = [
    Migration("auth_oidc.0001_initial", _initial, depends_on=("tenants.0001_initial",)),
]
