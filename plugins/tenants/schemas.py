"""Request and response shapes of the tenants API and of whoami."""

from __future__ import annotations

import datetime
from typing import Any

import marshmallow as ma
from marshmallow import validate

from app.fields import Timestamp
from plugins.tenants.models import STATUSES

SLUG_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])$"


class AwareTimestamp(Timestamp):
    """A Timestamp that, as input, must carry an offset; it is kept as naive UTC."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        moment = super()._deserialize(value, attr, data, **kwargs)
        if moment.tzinfo is None:
            raise ma.ValidationError("Give the offset, e.g. 2030-01-01T00:00:00Z.")
        return moment.astimezone(datetime.UTC).replace(tzinfo=None)


_slug = validate.Regexp(SLUG_PATTERN, error="2-63 lowercase letters, digits and inner hyphens.")


class TenantSchema(ma.Schema):
    id = ma.fields.String(
        dump_only=True,
        metadata={"description": "Opaque tenant id", "example": "tnt_k5v3q2m8x7c1n4b6z9aa"},
    )
    slug = ma.fields.String(
        dump_only=True,
        metadata={"description": "Unique name used to log in", "example": "acme"},
    )
    name = ma.fields.String(dump_only=True, metadata={"example": "ACME Corporation"})
    status = ma.fields.String(
        dump_only=True,
        metadata={
            "description": "`active`, or `suspended` (every credential answers 403)",
            "example": "active",
        },
    )
    config = ma.fields.Dict(
        dump_only=True,
        metadata={"description": "Quotas and settings; empty: the service defaults", "example": {}},
    )
    created_at = Timestamp(dump_only=True)
    updated_at = Timestamp(dump_only=True)


class TenantCreateSchema(ma.Schema):
    slug = ma.fields.String(
        required=True,
        validate=_slug,
        metadata={"description": "Unique; users give it to log in", "example": "acme"},
    )
    name = ma.fields.String(
        validate=validate.Length(min=1, max=200),
        metadata={"description": "Display name (defaults to the slug)", "example": "ACME"},
    )


class TenantUpdateSchema(ma.Schema):
    name = ma.fields.String(
        validate=validate.Length(min=1, max=200), metadata={"example": "ACME Corporation"}
    )
    status = ma.fields.String(
        validate=validate.OneOf(STATUSES),
        metadata={
            "description": "`suspended` refuses every credential of the tenant at once",
            "example": "suspended",
        },
    )


class TenantRefSchema(ma.Schema):
    id = ma.fields.String(metadata={"example": "tnt_k5v3q2m8x7c1n4b6z9aa"})
    slug = ma.fields.String(metadata={"example": "acme"})
    name = ma.fields.String(metadata={"example": "ACME Corporation"})
    status = ma.fields.String(metadata={"example": "active"})


class WhoamiSchema(ma.Schema):
    type = ma.fields.String(
        metadata={"description": "`user` (JWT) or `api_key`", "example": "api_key"}
    )
    id = ma.fields.String(
        metadata={"description": "The user's or the API key's id", "example": "key_4xq7..."}
    )
    tenant = ma.fields.Nested(
        TenantRefSchema,
        allow_none=True,
        metadata={"description": "The credential's tenant; null for a platform key"},
    )
    role = ma.fields.String(
        allow_none=True,
        metadata={"description": "The user's role; null for an API key", "example": None},
    )
    permissions = ma.fields.List(
        ma.fields.String(),
        metadata={
            "description": "What this credential may do (a key's scopes)",
            "example": ["context:read", "projects:read"],
        },
    )
    project_ids = ma.fields.List(
        ma.fields.String(),
        allow_none=True,
        metadata={
            "description": "Projects an API key is restricted to; null: every project",
            "example": None,
        },
    )
