"""Shapes of `GET /api/v1/audit-events`."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import validate

from ctxcloud import Timestamp

# Every filter is read as text and checked by query.parse (a bad one is a 400 naming it).
_text = {"validate": validate.Length(max=2000)}


class AuditQuerySchema(ma.Schema):
    type = ma.fields.String(
        metadata={
            "description": "Only these event types (comma-separated, at most 20)",
            "example": "api_key_created,api_key_revoked",
        },
    )
    actor = ma.fields.String(
        metadata={
            "description": "Only events by this actor: `kind:id` (as events show it) or the id",
            "example": "user:usr_q2m8x7c1n4b6z9aak5v3",
        },
    )
    since = ma.fields.String(
        metadata={
            "description": "Only events at or after this time (RFC 3339, with an offset)",
            "example": "2026-12-01T00:00:00Z",
        },
    )
    until = ma.fields.String(
        metadata={
            "description": "Only events at or before this time (RFC 3339, with an offset)",
            "example": "2026-12-31T23:59:59Z",
        },
    )
    tenant = ma.fields.String(
        metadata={
            "description": "Platform keys: only this tenant's events (its id or slug), or "
            "`platform` for events without a tenant. A tenant's credential may name only "
            "its own tenant (another is 404)",
            "example": "acme",
        },
    )


class ActorSchema(ma.Schema):
    kind = ma.fields.String(
        metadata={
            "description": "user, api_key, platform, oauth_client or federated",
            "example": "user",
        }
    )
    id = ma.fields.String(
        metadata={
            "description": "The actor's id (`sub@issuer` for a federated one)",
            "example": "usr_q2m8x7c1n4b6z9aak5v3",
        }
    )


class AuditEventSchema(ma.Schema):
    id = ma.fields.Integer(
        dump_only=True, metadata={"description": "Position in the whole log", "example": 1042}
    )
    time = Timestamp(
        attribute="occurred_at", dump_only=True, metadata={"description": "When it happened"}
    )
    tenant_id = ma.fields.String(
        dump_only=True,
        allow_none=True,
        metadata={"description": "The tenant; null: a platform event", "example": "tnt_x1"},
    )
    type = ma.fields.String(
        dump_only=True,
        metadata={
            "description": "What happened (docs/audit.md lists them)",
            "example": "api_key_created",
        },
    )
    actor = ma.fields.Nested(
        ActorSchema,
        dump_only=True,
        allow_none=True,
        metadata={"description": "Who did it; null: nobody authenticated (a failed login)"},
    )
    target = ma.fields.Dict(
        dump_only=True,
        metadata={
            "description": "Ids of what it was done to",
            "example": {"key_id": "key_m8x7c1n4b6z9aak5v3q2"},
        },
    )
    request_id = ma.fields.String(
        dump_only=True,
        allow_none=True,
        metadata={
            "description": "The request's X-Request-ID; null: the command line",
            "example": "4bf92f3577b34da6a3ce929d0e0e4736",
        },
    )
    client_address = ma.fields.String(
        dump_only=True,
        allow_none=True,
        metadata={
            "description": "The client's address (behind trusted proxies: X-Forwarded-For's)",
            "example": "203.0.113.7",
        },
    )
    details = ma.fields.Dict(
        dump_only=True,
        metadata={
            "description": "The event's other fields; never a secret",
            "example": {"name": "ci-deploy", "scopes": ["context:read"]},
        },
    )
    seq = ma.fields.Integer(
        dump_only=True, metadata={"description": "Position in its chain", "example": 17}
    )
    prev_hash = ma.fields.String(
        dump_only=True,
        metadata={
            "description": "The hash of the chain's previous row",
            "example": "3f0b6c1e" + "0" * 56,
        },
    )
    hash = ma.fields.String(
        dump_only=True,
        metadata={
            "description": "SHA-256 of this row's canonical form (docs/audit.md)",
            "example": "9a41d2c7" + "0" * 56,
        },
    )
