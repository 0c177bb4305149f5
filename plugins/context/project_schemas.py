"""Request and response shapes of the projects API."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import validate

from ctxcloud import SLUG_PATTERN, SLUG_RULE, Timestamp

_slug = validate.Regexp(SLUG_PATTERN, error=SLUG_RULE)


class ProjectSchema(ma.Schema):
    id = ma.fields.String(
        dump_only=True,
        metadata={"description": "Opaque project id", "example": "prj_k5v3q2m8x7c1n4b6z9aa"},
    )
    slug = ma.fields.String(
        dump_only=True,
        metadata={
            "description": "Unique within the tenant; accepted wherever an id is",
            "example": "handbook",
        },
    )
    name = ma.fields.String(
        dump_only=True, metadata={"description": "Display name", "example": "Engineering handbook"}
    )
    description = ma.fields.String(
        dump_only=True,
        metadata={"description": "What the project is for", "example": "How we build things"},
    )
    metadata = ma.fields.Dict(
        dump_only=True,
        metadata={"description": "Free-form JSON object", "example": {"team": "platform"}},
    )
    revision = ma.fields.Integer(
        dump_only=True,
        metadata={"description": "Head revision of the project's context", "example": 12},
    )
    history_starts_at = ma.fields.Integer(
        dump_only=True,
        metadata={
            "description": "Oldest revision still readable (older ones were pruned)",
            "example": 0,
        },
    )
    created_at = Timestamp(
        dump_only=True,
        metadata={"description": "When it was created", "example": "2026-11-25T18:00:00.000Z"},
    )
    updated_at = Timestamp(
        dump_only=True,
        metadata={
            "description": "When it last changed",
            "example": "2026-11-25T18:00:00.000Z",
        },
    )


def _metadata_field(**kwargs):
    return ma.fields.Dict(
        keys=ma.fields.String(validate=validate.Length(max=200)),
        metadata={
            "description": "Free-form JSON object (at most 64 KiB encoded)",
            "example": {"team": "platform"},
        },
        **kwargs,
    )


class ProjectCreateSchema(ma.Schema):
    name = ma.fields.String(
        required=True,
        validate=validate.Length(min=1, max=200),
        metadata={"description": "Display name", "example": "Engineering handbook"},
    )
    slug = ma.fields.String(
        validate=_slug,
        metadata={"description": "Defaults to one derived from the name", "example": "handbook"},
    )
    description = ma.fields.String(
        validate=validate.Length(max=10000),
        load_default="",
        metadata={"description": "What the project is for", "example": "How we build things"},
    )
    metadata = _metadata_field(load_default=dict)


class ProjectUpdateSchema(ma.Schema):
    name = ma.fields.String(
        validate=validate.Length(min=1, max=200),
        metadata={"description": "New display name", "example": "Handbook"},
    )
    slug = ma.fields.String(
        validate=_slug,
        metadata={"description": "New slug, unique within the tenant", "example": "handbook-v2"},
    )
    description = ma.fields.String(
        validate=validate.Length(max=10000),
        metadata={"description": "New description", "example": "Updated description"},
    )
    metadata = _metadata_field()
