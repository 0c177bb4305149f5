"""A tenant's configuration: quotas the platform sets, settings the tenant's owner may change.

The tenant row keeps only its overrides (``{"quotas": {...}, "settings": {...}}``); every
value it does not override is the service's default, read from the service configuration
when used, so changing a default changes every tenant that did not override it. ``None``
means unlimited for a quota (and "keep every revision" for ``revisions_kept``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import flask
import marshmallow as ma
from marshmallow import validate

from ctxcloud.errors import ValidationFailed
from ctxcloud.ratelimit import is_limit
from ctxcloud.settings import ConfigError

# Each quota and the service setting that gives its default.
QUOTAS = {
    "max_projects": "MAX_PROJECTS",
    "max_storage_bytes": "MAX_STORAGE_BYTES",
    "max_entry_bytes": "MAX_ENTRY_BYTES",
    "max_users": "MAX_USERS",
    "max_api_keys": "MAX_API_KEYS",
    "rate_limit": "RATE_LIMIT_DEFAULT",
    "tenant_rate_limit": "RATE_LIMIT_TENANT",
    "revisions_kept": "REVISIONS_KEPT",
}
# Each setting and its service default (revisions_kept: the quota, the platform's bound).
SETTINGS = {
    "default_content_type": "DEFAULT_CONTENT_TYPE",
    "allowed_content_types": "ALLOWED_CONTENT_TYPES",
    "revisions_kept": None,
}
KINDS = ("quotas", "settings")
BIGINT = 2**63 - 1
MEDIA_TYPE = r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
_content_type = re.compile(rf"^{MEDIA_TYPE}(\s*;[\x20-\x7e]*)?$")
_media_range = re.compile(r"^(\*/\*|[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/\*|" + MEDIA_TYPE + ")$")


class Count(ma.fields.Integer):
    """A whole number, never a boolean or a string of digits."""

    def __init__(self, minimum: int, **kwargs: Any) -> None:
        super().__init__(
            strict=True, allow_none=True, validate=validate.Range(minimum, BIGINT), **kwargs
        )

    def _validated(self, value: Any) -> Any:
        if isinstance(value, bool):
            raise self.make_error("invalid")
        return super()._validated(value)


def _limit(value: str) -> None:
    if not is_limit(value):
        raise ma.ValidationError("A rate limit such as '600/minute' or '10/second;600/minute'.")


def _described(description: str, example: Any) -> dict[str, Any]:
    return {"metadata": {"description": description, "example": example}}


class QuotasSchema(ma.Schema):
    """Set by platform operators; null: unlimited (when given in a change: the default)."""

    class Meta:
        unknown = ma.RAISE
        ordered = True

    max_projects = Count(0, **_described("Projects the tenant may have", 100))
    max_storage_bytes = Count(
        0, **_described("Bytes of every kept entry version, together", 10 * 1024**3)
    )
    max_entry_bytes = Count(0, **_described("Bytes of one entry", 100 * 1024**2))
    max_users = Count(0, **_described("Users the tenant may have", 50))
    max_api_keys = Count(
        0, **_described("Live (unrevoked, unexpired) API keys the tenant may have", 200)
    )
    rate_limit = ma.fields.String(
        allow_none=True,
        validate=_limit,
        **_described("Requests per credential, e.g. `600/minute`", "600/minute"),
    )
    tenant_rate_limit = ma.fields.String(
        allow_none=True,
        validate=_limit,
        **_described("Requests of all the tenant's credentials together", "6000/minute"),
    )
    revisions_kept = Count(
        1, **_described("Most revisions per project kept readable (the settings' bound)", 1000)
    )


class SettingsSchema(ma.Schema):
    """Chosen by the tenant's owner (`PATCH /api/v1/tenant/settings`); null: the default."""

    class Meta:
        unknown = ma.RAISE
        ordered = True

    default_content_type = ma.fields.String(
        allow_none=True,
        validate=[validate.Length(max=255), validate.Regexp(_content_type, error="A media type.")],
        **_described("Content type of an entry written without one", "text/markdown"),
    )
    allowed_content_types = ma.fields.List(
        ma.fields.String(
            validate=validate.Regexp(_media_range, error="A media type, `type/*` or `*/*`.")
        ),
        allow_none=True,
        validate=validate.Length(min=1, max=100),
        **_described("Content types entries may have; null: any", ["text/*", "application/json"]),
    )
    revisions_kept = Count(
        1, **_described("Revisions per project kept readable, within the quota", 100)
    )


class TenantConfigChangeSchema(ma.Schema):
    """A change of quotas and/or settings; a null value returns to the service default."""

    class Meta:
        unknown = ma.RAISE

    quotas = ma.fields.Nested(
        QuotasSchema, metadata={"description": "Quotas to change; null returns one to the default"}
    )
    settings = ma.fields.Nested(
        SettingsSchema,
        metadata={"description": "Settings to change; null returns one to the default"},
    )


class TenantConfigSchema(ma.Schema):
    quotas = ma.fields.Nested(
        QuotasSchema, metadata={"description": "Effective quotas (null: unlimited)"}
    )
    settings = ma.fields.Nested(SettingsSchema, metadata={"description": "Effective settings"})
    overrides = ma.fields.Nested(
        TenantConfigChangeSchema,
        metadata={
            "description": "What this tenant sets itself; everything else is the service default",
            "example": {"quotas": {"max_projects": 100}, "settings": {}},
        },
    )


def _stored(tenant: Any) -> Mapping[str, Any]:
    config = tenant.config if isinstance(tenant.config, Mapping) else {}
    return config


def quota(tenant: Any, name: str) -> Any:
    """The tenant's effective quota `name` (its override, else the service default)."""
    overrides = _stored(tenant).get("quotas") or {}
    if name in overrides:
        return overrides[name]
    return flask.current_app.config.get(QUOTAS[name])


def setting(tenant: Any, name: str) -> Any:
    """The tenant's effective setting `name`; revisions_kept never exceeds its quota."""
    overrides = _stored(tenant).get("settings") or {}
    if name == "revisions_kept":
        bound, chosen = quota(tenant, "revisions_kept"), overrides.get(name)
        if chosen is None or bound is None:
            return chosen if bound is None else bound
        return min(chosen, bound)
    if name in overrides:
        return overrides[name]
    return flask.current_app.config.get(SETTINGS[name])


def effective(tenant: Any) -> dict[str, Any]:
    """Effective quotas and settings, and the tenant's own overrides (what the API shows)."""
    stored = _stored(tenant)
    return {
        "quotas": {name: quota(tenant, name) for name in QUOTAS},
        "settings": {name: setting(tenant, name) for name in SETTINGS},
        "overrides": {kind: dict(stored.get(kind) or {}) for kind in KINDS},
    }


def allows_content_type(tenant: Any, content_type: str) -> bool:
    """Is `content_type` (parameters ignored) within the tenant's allowed_content_types?"""
    allowed = setting(tenant, "allowed_content_types")
    if not allowed:
        return True
    return _allowed(allowed, content_type)


def _allowed(patterns: list[str], content_type: str) -> bool:
    base = content_type.split(";", 1)[0].strip().lower()
    major = base.split("/", 1)[0]
    return any(pattern == "*/*" or pattern.lower() in (base, f"{major}/*") for pattern in patterns)


def changed(tenant: Any, changes: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The tenant's stored config after `changes` (validated by TenantConfigChangeSchema).

    A null value removes the override. Settings are checked against the quotas as they
    will be: revisions_kept within its bound, the default content type among the allowed.
    """
    stored = _stored(tenant)
    new = {kind: dict(stored.get(kind) or {}) for kind in KINDS}
    for kind, values in changes.items():
        for name, value in values.items():
            if value is None:
                new[kind].pop(name, None)
            else:
                new[kind][name] = value
    result = {kind: values for kind, values in new.items() if values}
    _check_settings(tenant, result, changes.get("settings") or {})
    return result


def _check_settings(tenant: Any, config: dict[str, Any], settings_changed: Mapping) -> None:
    view = _View(tenant.id, config)
    errors: dict[str, list[str]] = {}
    bound = quota(view, "revisions_kept")
    chosen = (config.get("settings") or {}).get("revisions_kept")
    if "revisions_kept" in settings_changed and None not in (bound, chosen) and chosen > bound:
        errors["revisions_kept"] = [f"At most {bound}, the platform's bound."]
    allowed = setting(view, "allowed_content_types")
    default = setting(view, "default_content_type")
    touched = {"allowed_content_types", "default_content_type"} & set(settings_changed)
    if touched and allowed and default and not _allowed(allowed, default):
        errors["default_content_type"] = [
            f"{default!r} is not among the allowed content types {allowed}."
        ]
    if errors:
        raise ValidationFailed({"settings": errors})


class _View:
    """A tenant as it would be with another stored config (for checks before saving)."""

    def __init__(self, tenant_id: str, config: Mapping[str, Any]) -> None:
        self.id = tenant_id
        self.config = config


def check_service_defaults(config: Mapping[str, Any]) -> None:
    """Start-up: every default a tenant inherits must be a value a tenant could be given."""
    problems = {}
    for schema, names in ((QuotasSchema(), QUOTAS), (SettingsSchema(), SETTINGS)):
        values = {name: config.get(key) for name, key in names.items() if key}
        for field, messages in schema.validate(values).items():
            problems[f"CTXCLOUD_{names[field]}"] = messages
    if problems:
        details = "; ".join(f"{key}: {' '.join(map(str, m))}" for key, m in problems.items())
        raise ConfigError(f"invalid tenant defaults: {details}")
