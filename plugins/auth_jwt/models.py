"""The TokenFamily model: one login, whose refresh token rotates and whose revocation ends it."""

from __future__ import annotations

import peewee
from ctxcloud.db import BaseModel, utcnow


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
