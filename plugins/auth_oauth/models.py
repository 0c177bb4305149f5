"""OAuth clients of a tenant and the access tokens issued to them."""

from __future__ import annotations

import peewee

from ctxcloud import BaseModel, JSONField, utcnow


class OAuthClient(BaseModel):
    """A tenant's confidential client: its secret is stored only as a keyed hash."""

    client_id = peewee.CharField(primary_key=True, max_length=32)
    tenant_id = peewee.CharField(max_length=64, index=True)
    name = peewee.CharField(max_length=100)
    # HMAC-SHA256(API_KEY_PEPPER, secret), hex: the secret itself is never stored.
    secret_hash = peewee.CharField(max_length=64)
    scopes = JSONField(default=list)
    # None: every project of the tenant.
    project_ids = JSONField(null=True)
    created_by = peewee.CharField(max_length=200)
    created_at = peewee.DateTimeField(default=utcnow)
    secret_rotated_at = peewee.DateTimeField(null=True)
    revoked_at = peewee.DateTimeField(null=True)

    class Meta:
        table_name = "oauth_client"

    @classmethod
    def of_tenant(cls, tenant_id: str) -> peewee.ModelSelect:
        """The only way to read a tenant's clients: live clients of one tenant."""
        if not tenant_id:
            raise ValueError("a tenant id is required")
        return cls.select().where(cls.tenant_id == tenant_id, cls.revoked_at.is_null())


class OAuthToken(BaseModel):
    """An access token issued by the client-credentials grant: what revocation and
    introspection look up by the token's ``jti`` (the token itself is never stored)."""

    jti = peewee.CharField(primary_key=True, max_length=64)
    client_id = peewee.CharField(max_length=32, index=True)
    tenant_id = peewee.CharField(max_length=64, index=True)
    scopes = JSONField(default=list)
    issued_at = peewee.DateTimeField()
    expires_at = peewee.DateTimeField(index=True)
    revoked_at = peewee.DateTimeField(null=True)

    class Meta:
        table_name = "oauth_token"
