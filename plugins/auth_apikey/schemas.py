"""Request and response shapes of the API keys API. The key appears once, at creation."""

from __future__ import annotations

import datetime

import marshmallow as ma
from marshmallow import validate

from ctxcloud import AwareTimestamp, Timestamp
from ctxcloud.plugins.auth_apikey.keys import KEY_EXAMPLE

_id_list = {"validate": validate.Length(max=1000)}
EXAMPLE_LIFETIME = datetime.timedelta(days=90)


def expiry_example() -> str:
    """Midnight UTC 90 days from now: a documented expiry must be in the future whenever the
    document is read (it is built with the app, from this module's import)."""
    day = datetime.datetime.now(datetime.UTC).date() + EXAMPLE_LIFETIME
    return f"{day.isoformat()}T00:00:00Z"


class ApiKeySchema(ma.Schema):
    id = ma.fields.String(
        dump_only=True,
        metadata={
            "description": "Opaque key id (not the secret)",
            "example": "key_m8x7c1n4b6z9aak5v3q2",
        },
    )
    name = ma.fields.String(
        dump_only=True, metadata={"description": "What the key is for", "example": "ci-deploy"}
    )
    prefix = ma.fields.String(
        dump_only=True,
        metadata={"description": "The key's visible part after `ctx_`", "example": "4xq7m2pa"},
    )
    scopes = ma.fields.List(
        ma.fields.String(),
        dump_only=True,
        metadata={"description": "Permissions the key holds", "example": ["context:read"]},
    )
    project_ids = ma.fields.List(
        ma.fields.String(),
        dump_only=True,
        allow_none=True,
        metadata={"description": "null: every project", "example": None},
    )
    expires_at = Timestamp(
        dump_only=True,
        allow_none=True,
        metadata={"description": "When the key stops working; null: never"},
    )
    last_used_at = Timestamp(
        dump_only=True,
        allow_none=True,
        metadata={"description": "Recorded at most once a minute"},
    )
    created_by = ma.fields.String(
        dump_only=True,
        metadata={
            "description": "Who created it (kind:id, or cli for the command line)",
            "example": "user:usr_q2m8x7c1n4b6z9aak5v3",
        },
    )
    created_at = Timestamp(dump_only=True, metadata={"description": "When it was created"})


class ApiKeyCreatedSchema(ApiKeySchema):
    key = ma.fields.String(
        dump_only=True,
        metadata={
            "description": "The secret key: shown this once, stored only as a keyed hash",
            "example": KEY_EXAMPLE,
        },
    )


class ApiKeyCreateSchema(ma.Schema):
    name = ma.fields.String(
        required=True,
        validate=validate.Length(min=1, max=100),
        metadata={"description": "What the key is for", "example": "ci-deploy"},
    )
    scopes = ma.fields.List(
        ma.fields.String(validate=validate.Length(min=1, max=100)),
        required=True,
        validate=validate.Length(min=1, max=64),
        metadata={
            "description": "Permissions the key holds; never more than the creator holds",
            "example": ["context:read", "context:write"],
        },
    )
    project_ids = ma.fields.List(
        ma.fields.String(validate=validate.Length(min=1, max=64)),
        allow_none=True,
        **_id_list,
        metadata={
            "description": "Restrict the key to these projects (others are 404 to it)",
            "example": ["prj_k5v3q2m8x7c1n4b6z9aa"],
        },
    )
    expires_at = AwareTimestamp(
        allow_none=True,
        metadata={
            "description": "When the key stops working (RFC 3339, with an offset; in the future)",
            "example": expiry_example(),
        },
    )
