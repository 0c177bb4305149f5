"""A tenant's identity providers, and the (issuer, audience) pairs each one claims.

The pairs live in a table of their own so that a unique index, not a check-then-insert,
gives each pair to one tenant and one provider: two tenants racing for a pair cannot both
win, on SQLite or PostgreSQL.
"""

from __future__ import annotations

import peewee

from ctxcloud import BaseModel, JSONField, utcnow

ISSUER_MAX = 400  # issuer + audience stay within PostgreSQL's btree entry limit
AUDIENCE_MAX = 255


class IdentityProvider(BaseModel):
    id = peewee.CharField(primary_key=True, max_length=32)
    tenant_id = peewee.CharField(max_length=64, index=True)
    name = peewee.CharField(max_length=63)
    issuer = peewee.CharField(max_length=ISSUER_MAX)
    audiences = JSONField(default=list)
    jwks_uri = peewee.CharField(max_length=2048)
    # True: found in the issuer's discovery document at registration; False: given.
    jwks_uri_discovered = peewee.BooleanField(default=False)
    algorithms = JSONField(default=list)
    subject_claim = peewee.CharField(max_length=256, default="sub")
    claim_rules = JSONField(default=list)
    # None: a token no rule matches is refused.
    default_role = peewee.CharField(max_length=16, null=True)
    created_by = peewee.CharField(max_length=300)
    created_at = peewee.DateTimeField(default=utcnow)
    updated_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        table_name = "identity_provider"
        indexes = ((("tenant_id", "name"), True),)

    @classmethod
    def of_tenant(cls, tenant_id: str) -> peewee.ModelSelect:
        """The only way to read a tenant's providers: always within one tenant."""
        if not tenant_id:
            raise ValueError("a tenant id is required")
        return cls.select().where(cls.tenant_id == tenant_id)


class ProviderAudience(BaseModel):
    """One (issuer, audience) pair and the provider (and tenant) it belongs to."""

    id = peewee.AutoField()
    issuer = peewee.CharField(max_length=ISSUER_MAX)
    audience = peewee.CharField(max_length=AUDIENCE_MAX)
    tenant_id = peewee.CharField(max_length=64, index=True)
    provider_id = peewee.CharField(max_length=32, index=True)

    class Meta:
        table_name = "identity_provider_audience"
        indexes = ((("issuer", "audience"), True),)
