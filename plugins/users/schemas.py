"""Request and response shapes of the users API. Passwords go in, never out."""

from __future__ import annotations

from typing import Any

import marshmallow as ma
from marshmallow import validate

from ctxcloud import ROLES, Timestamp
from ctxcloud.plugins.users.passwords import MAX_LENGTH, MIN_LENGTH
from ctxcloud.plugins.users.service import USERNAME_PATTERN

_username = validate.Regexp(
    USERNAME_PATTERN, error="1-64 letters, digits and . _ @ + -, starting alphanumeric."
)


class StrictBoolean(ma.fields.Boolean):
    """JSON true or false only (marshmallow would also take "yes", 1, "on"...)."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return value


def _password(**kwargs: Any) -> ma.fields.String:
    return ma.fields.String(
        load_only=True,
        validate=validate.Length(min=MIN_LENGTH, max=MAX_LENGTH),
        metadata={
            "description": f"{MIN_LENGTH}-{MAX_LENGTH} characters, not the username; "
            "never returned",
            "example": "correct horse battery staple",
        },
        **kwargs,
    )


_role_description = "viewer, member, admin or owner; never above the caller's own"


class UserSchema(ma.Schema):
    id = ma.fields.String(
        dump_only=True,
        metadata={"description": "Opaque user id", "example": "usr_q2m8x7c1n4b6z9aak5v3"},
    )
    tenant_id = ma.fields.String(
        dump_only=True,
        metadata={"description": "The user's tenant", "example": "tnt_k5v3q2m8x7c1n4b6z9aa"},
    )
    username = ma.fields.String(
        dump_only=True,
        metadata={"description": "Lowercase, unique in the tenant", "example": "alice"},
    )
    role = ma.fields.String(
        dump_only=True,
        metadata={"description": "viewer, member, admin or owner", "example": "member"},
    )
    disabled = ma.fields.Boolean(
        dump_only=True, metadata={"description": "A disabled user cannot log in", "example": False}
    )
    created_at = Timestamp(dump_only=True, metadata={"description": "When it was created"})
    updated_at = Timestamp(dump_only=True, metadata={"description": "When it last changed"})


class UserCreateSchema(ma.Schema):
    username = ma.fields.String(
        required=True,
        validate=_username,
        metadata={"description": "Unique in the tenant (case-insensitive)", "example": "alice"},
    )
    password = _password(required=True)
    role = ma.fields.String(
        required=True,
        validate=validate.OneOf(ROLES),
        metadata={"description": _role_description, "example": "member"},
    )


class UserUpdateSchema(ma.Schema):
    role = ma.fields.String(
        validate=validate.OneOf(ROLES),
        metadata={"description": _role_description, "example": "admin"},
    )
    disabled = StrictBoolean(
        metadata={
            "description": "true ends the user's logins at once and refuses new ones",
            "example": True,
        }
    )
    password = _password()
