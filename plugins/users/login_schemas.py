"""Request and response shapes of the token endpoints."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import validate

from ctxcloud.plugins.users.passwords import MAX_LENGTH


class LoginSchema(ma.Schema):
    tenant = ma.fields.String(
        required=True,
        validate=validate.Length(min=1, max=63),
        metadata={"description": "The tenant's slug", "example": "acme"},
    )
    username = ma.fields.String(
        required=True,
        validate=validate.Length(min=1, max=64),
        metadata={"description": "The user's name (case-insensitive)", "example": "alice"},
    )
    password = ma.fields.String(
        required=True,
        load_only=True,
        validate=validate.Length(min=1, max=MAX_LENGTH),
        metadata={"description": "The user's password", "example": "correct horse battery staple"},
    )


class TokenSchema(ma.Schema):
    access_token = ma.fields.String(
        metadata={
            "description": "JWT for `Authorization: Bearer`; short-lived",
            "example": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ1c3JfIn0.c2ln",
        }
    )
    refresh_token = ma.fields.String(
        metadata={
            "description": "JWT for POST /auth/refresh; usable once (each refresh returns a "
            "new one)",
            "example": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ0eXBlIjoicmVmcmVzaCJ9.c2ln",
        }
    )
    token_type = ma.fields.String(metadata={"description": "Always Bearer", "example": "Bearer"})
    expires_in = ma.fields.Integer(
        metadata={"description": "Seconds the access token is valid", "example": 900}
    )
