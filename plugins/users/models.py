"""Users (people of one tenant, with a role and an argon2id password hash) and their logins."""

from __future__ import annotations

import peewee

from ctxcloud import BaseModel, utcnow


class User(BaseModel):
    id = peewee.CharField(primary_key=True, max_length=32)
    tenant_id = peewee.CharField(max_length=64, index=True)
    # Stored lowercased, so "Alice" and "alice" are one user.
    username = peewee.CharField(max_length=64)
    role = peewee.CharField(max_length=16)
    password_hash = peewee.CharField(max_length=255)
    disabled = peewee.BooleanField(default=False)
    # Logins started before this moment are dead (password changed, user disabled).
    sessions_revoked_at = peewee.DateTimeField(null=True)
    created_at = peewee.DateTimeField(default=utcnow)
    updated_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        table_name = "tenant_user"
        indexes = ((("tenant_id", "username"), True),)

    @classmethod
    def of_tenant(cls, tenant_id: str) -> peewee.ModelSelect:
        """The only way to read users: always within one tenant."""
        if not tenant_id:
            raise ValueError("a tenant id is required")
        return cls.select().where(cls.tenant_id == tenant_id)


class TokenFamily(BaseModel):
    id = peewee.CharField(primary_key=True, max_length=32)
    tenant_id = peewee.CharField(max_length=64, index=True)
    user_id = peewee.CharField(max_length=32, index=True)
    # jti of the one refresh token that may still be used; any older one is a replay.
    refresh_jti = peewee.CharField(max_length=64)
    created_at = peewee.DateTimeField(default=utcnow)
    # When the current refresh token expires (each rotation extends it).
    expires_at = peewee.DateTimeField()
    revoked_at = peewee.DateTimeField(null=True)
    # "revoked" (by its user), "reuse" (a rotated refresh token came back).
    revoked_reason = peewee.CharField(max_length=16, null=True)

    class Meta:
        table_name = "token_family"
