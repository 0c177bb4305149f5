"""Request and response shapes of the tenants API and of whoami."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import validate

from ctxcloud import Timestamp
from ctxcloud.tenancy import STATUSES, DeclaredQuotas, DeclaredSettings


class TenantConfigChangeSchema(ma.Schema):
    """A change of quotas and/or settings; a null value returns to the service default."""

    class Meta:
        unknown = ma.RAISE

    quotas = ma.fields.Nested(
        DeclaredQuotas,
        metadata={"description": "Quotas to change; null returns one to the default"},
    )
    settings = ma.fields.Nested(
        DeclaredSettings,
        metadata={"description": "Settings to change; null returns one to the default"},
    )


class TenantConfigSchema(ma.Schema):
    quotas = ma.fields.Nested(
        DeclaredQuotas, metadata={"description": "Effective quotas (null: unlimited)"}
    )
    settings = ma.fields.Nested(DeclaredSettings, metadata={"description": "Effective settings"})
    overrides = ma.fields.Nested(
        TenantConfigChangeSchema,
        metadata={
            "description": "What this tenant sets itself; everything else is the service default",
            "example": {"quotas": {"max_projects": 100}, "settings": {}},
        },
    )


SLUG_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])$"


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
    name = ma.fields.String(
        dump_only=True, metadata={"description": "Display name", "example": "ACME Corporation"}
    )
    status = ma.fields.String(
        dump_only=True,
        metadata={
            "description": "`active`; `suspended` (every credential answers 403); `deleting` "
            "(a deletion did not finish: DELETE again or `ctxcloud tenants purge`)",
            "example": "active",
        },
    )
    config = ma.fields.Nested(
        TenantConfigSchema,
        attribute="effective_config",
        dump_only=True,
        metadata={"description": "Effective quotas and settings, and the tenant's own overrides"},
    )
    created_at = Timestamp(dump_only=True, metadata={"description": "When it was created"})
    updated_at = Timestamp(dump_only=True, metadata={"description": "When it last changed"})


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
    config = ma.fields.Nested(
        TenantConfigChangeSchema,
        metadata={
            "description": "Quota and setting overrides (the service defaults apply otherwise)",
            "example": {"quotas": {"max_projects": 20, "max_storage_bytes": 1073741824}},
        },
    )


class TenantUpdateSchema(ma.Schema):
    name = ma.fields.String(
        validate=validate.Length(min=1, max=200),
        metadata={"description": "New display name", "example": "ACME Corporation"},
    )
    status = ma.fields.String(
        validate=validate.OneOf(STATUSES),
        metadata={
            "description": "`suspended` refuses every credential of the tenant at once",
            "example": "suspended",
        },
    )


class TenantRefSchema(ma.Schema):
    id = ma.fields.String(
        metadata={"description": "Opaque tenant id", "example": "tnt_k5v3q2m8x7c1n4b6z9aa"}
    )
    slug = ma.fields.String(metadata={"description": "Slug used to log in", "example": "acme"})
    name = ma.fields.String(metadata={"description": "Display name", "example": "ACME Corporation"})
    status = ma.fields.String(
        metadata={"description": "`active` or `suspended`", "example": "active"}
    )


class WhoamiSchema(ma.Schema):
    type = ma.fields.String(
        metadata={
            "description": "`user` (a login's JWT), `api_key`, `oauth_client` (a client-"
            "credentials token) or `federated` (a token of the tenant's identity provider)",
            "example": "api_key",
        }
    )
    id = ma.fields.String(
        metadata={
            "description": "The user's, API key's or OAuth client's id; the subject of a "
            "federated token",
            "example": "key_4xq7...",
        }
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
    issuer = ma.fields.String(
        allow_none=True,
        metadata={
            "description": "The identity provider that vouches for a federated actor; null "
            "for this service's own credentials",
            "example": None,
        },
    )


class RequestsSchema(ma.Schema):
    count = ma.fields.Integer(
        metadata={"description": "Requests of the tenant in the current window", "example": 42}
    )
    limit = ma.fields.String(
        allow_none=True,
        metadata={"description": "The tenant-wide ceiling; null: none", "example": "6000/minute"},
    )
    reset = ma.fields.Integer(
        metadata={"description": "Seconds until the window starts again", "example": 17}
    )


class UsageSchema(ma.Schema):
    """The counts named here, and every other plugin's count (``tenant_usage``) as it is."""

    class Meta:
        # OpenAPI: further counts, one per plugin that reports one (oauth_clients...).
        unknown = ma.INCLUDE

    @ma.post_dump(pass_original=True)
    def _plugin_counts(self, data: dict, original: dict, **kwargs) -> dict:
        for name, value in original.items():
            if name not in data and isinstance(value, int) and not isinstance(value, bool):
                data[name] = value
        return data

    projects = ma.fields.Integer(metadata={"description": "Projects", "example": 3})
    entries = ma.fields.Integer(
        metadata={"description": "Live entries, every project", "example": 120}
    )
    storage_bytes = ma.fields.Integer(
        metadata={
            "description": "Bytes of every kept entry version (what max_storage_bytes limits)",
            "example": 1048576,
        }
    )
    users = ma.fields.Integer(metadata={"description": "Users", "example": 4})
    api_keys = ma.fields.Integer(
        metadata={"description": "Live API keys (not revoked or expired)", "example": 2}
    )
    requests = ma.fields.Nested(
        RequestsSchema,
        allow_none=True,
        metadata={"description": "The tenant's current rate-limit window; null: limits are off"},
    )


class OwnTenantSchema(TenantSchema):
    usage = ma.fields.Nested(
        UsageSchema, dump_only=True, metadata={"description": "What the tenant uses now"}
    )
