"""The quotas and settings projects and their context give every tenant, and the content-type
rule they set."""

from __future__ import annotations

import re
from typing import Any

import marshmallow as ma
from marshmallow import validate

from ctxcloud import Count, Quota, Setting
from ctxcloud.tenancy import TenantConfigView

DEFAULT_CONTENT_TYPE = "application/octet-stream"
MEDIA_TYPE = r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
_content_type = re.compile(rf"^{MEDIA_TYPE}(\s*;[\x20-\x7e]*)?$")
_media_range = re.compile(r"^(\*/\*|[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/\*|" + MEDIA_TYPE + ")$")


def allowed(patterns: list[str], content_type: str) -> bool:
    """Is `content_type` (parameters ignored) matched by one of `patterns` (`type/*`, `*/*`)?"""
    base = content_type.split(";", 1)[0].strip().lower()
    major = base.split("/", 1)[0]
    return any(pattern == "*/*" or pattern.lower() in (base, f"{major}/*") for pattern in patterns)


def allows_content_type(tenant: Any, content_type: str) -> bool:
    """Is `content_type` within the tenant's allowed_content_types (none set: any)?"""
    patterns = tenant.setting("allowed_content_types")
    return not patterns or allowed(patterns, content_type)


def _default_among_allowed(config: TenantConfigView) -> str | None:
    patterns = config.setting("allowed_content_types")
    default = config.setting("default_content_type")
    if patterns and default and not allowed(patterns, default):
        return f"{default!r} is not among the allowed content types {patterns}."
    return None


def declared() -> list[Quota | Setting]:
    return [
        Quota(
            "max_projects",
            Count(0),
            default="MAX_PROJECTS",
            description="Projects the tenant may have",
            example=100,
        ),
        Quota(
            "max_entry_bytes",
            Count(0),
            default="MAX_ENTRY_BYTES",
            description="Bytes of one entry",
            example=100 * 1024**2,
        ),
        Quota(
            "max_open_uploads",
            Count(0),
            default="MAX_OPEN_UPLOADS",
            description="Staged uploads a tenant may hold at once, not yet committed or expired",
            example=1000,
        ),
        Quota(
            "revisions_kept",
            Count(1),
            default="REVISIONS_KEPT",
            description="Most revisions per project kept readable (the settings' bound)",
            example=1000,
        ),
        Setting(
            "default_content_type",
            ma.fields.String(
                allow_none=True,
                validate=[
                    validate.Length(max=255),
                    validate.Regexp(_content_type, error="A media type."),
                ],
            ),
            default="DEFAULT_CONTENT_TYPE",
            description="Content type of an entry written without one",
            example="text/markdown",
            check=_default_among_allowed,
        ),
        Setting(
            "allowed_content_types",
            ma.fields.List(
                ma.fields.String(
                    validate=validate.Regexp(_media_range, error="A media type, `type/*` or `*/*`.")
                ),
                allow_none=True,
                validate=validate.Length(min=1, max=100),
            ),
            default="ALLOWED_CONTENT_TYPES",
            description="Content types entries may have; null: any",
            example=["text/*", "application/json"],
        ),
        Setting(
            "revisions_kept",
            Count(1),
            default=None,
            description="Revisions per project kept readable, within the quota",
            example=100,
            bounded_by="revisions_kept",
        ),
        Setting(
            "links_enabled",
            ma.fields.Boolean(allow_none=True),
            default="LINKS_ENABLED",
            description="Whether the tenant's members may make signed links (URLs that read "
            "a pinned revision without a credential); off by default. Turned off, every "
            "existing link stops working too",
            example=True,
        ),
    ]
