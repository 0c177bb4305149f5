"""ctxcloud: the public toolkit for plugins, and the app factory.

This module is a plugin author's whole world, as ``pytest`` is over ``_pytest``: a plugin
(built-in or third-party) imports from here, and from the public modules ``ctxcloud.tenancy``
(the tenant model, quotas, credentials), ``ctxcloud.objects`` (encrypted objects) and
``ctxcloud.testing`` (the storage conformance kit). Everything else under ``ctxcloud`` is
private and may change in any release. docs/plugins.md lists each name, what it is for, and
the stability promise.

Names load on first use, so importing ``ctxcloud`` (the gunicorn master does) stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

from ctxcloud.hookspecs import hookimpl

# name -> (module, attribute); attribute None: the module itself.
_TOOLKIT: dict[str, tuple[str, str | None]] = {}


def _export(module: str, *names: str) -> None:
    for name in names:
        _TOOLKIT[name] = (module, name)


# The app, plugins and hooks.
_export("ctxcloud.factory", "create_app")
# Who is calling, and what they may do.
_export(
    "ctxcloud.auth",
    "Actor",
    "current_actor",
    "requires",
    "requires_authentication",
    "public",
    "is_allowed",
    "check_delegation",
    "emit_audit",
)
_export("ctxcloud.roles", "ROLES", "ROLE_PERMISSIONS", "PERMISSIONS", "PLATFORM_PERMISSIONS")
# Errors: one problem+json shape, raised as typed exceptions.
_export(
    "ctxcloud.errors",
    "ProblemError",
    "BadRequest",
    "Unauthorized",
    "Forbidden",
    "NotFound",
    "Conflict",
    "PreconditionFailed",
    "PayloadTooLarge",
    "UnsupportedMediaType",
    "ValidationFailed",
    "RateLimited",
    "Unavailable",
    "ProblemResponse",
)
# Routes, their shapes and their documentation.
_export("ctxcloud.blueprint", "Blueprint")
_export("ctxcloud.api", "page_and_size", "MAX_PAGE_SIZE")
_export("ctxcloud.fields", "Timestamp", "AwareTimestamp")
_export("ctxcloud.json_input", "read_json")
# The database: models, transactions, migrations, ids.
_export(
    "ctxcloud.db",
    "BaseModel",
    "JSONField",
    "database",
    "utcnow",
    "for_update",
    "PreparedSelect",
    "PreparedWrite",
)
_export("ctxcloud.migrations", "Migration")
_export("ctxcloud.ids", "new_id", "SLUG_PATTERN", "SLUG_RULE")
# Per-app state of a plugin, under a typed key.
_export("ctxcloud.state", "StashKey", "stash")
# Settings and the command line.
_export(
    "ctxcloud.settings",
    "setting",
    "ConfigError",
    "ENV_PREFIX",
    "env_variable",
    "SettingsReader",
    "folder_prefix",
)
_export("ctxcloud.cli", "emit", "problems_as_click_errors", "tenant_from_slug")
# Keys derived from the master keys (HKDF, per label), for a plugin's own signatures.
_export("ctxcloud.key_derivation", "derived_keys")
# Storage backends.
_export(
    "ctxcloud.storage",
    "StorageBackend",
    "ObjectInfo",
    "IncompleteUpload",
    "StorageError",
    "ObjectNotFound",
    "StorageUnavailable",
    "CHUNK_SIZE",
    "validate_key",
    "validate_prefix",
)
_export("ctxcloud.serial_worker", "ChunkBatches")
_export("ctxcloud.blocks", "Blocks", "byte_view")
_export("ctxcloud.streamed_body", "StreamedBody")
# Tenancy: the tenant, declared quotas and settings, and their enforcement.
_export("ctxcloud.tenancy", "Tenant", "Quota", "Setting", "Count", "check_quota", "current_tenant")
# Rate limits: flask-limiter's decorators on the app's own Limiter (count_attempt: deprecated).
_export(
    "ctxcloud.ratelimit",
    "limit",
    "shared_limit",
    "client_address",
    "current_limiter",
    "count_attempt",
)
# Public modules, also reachable as attributes.
for _module in ("tenancy", "objects", "testing"):
    _TOOLKIT[_module] = (f"ctxcloud.{_module}", None)

__all__ = ["hookimpl", *_TOOLKIT]


def __getattr__(name: str) -> Any:
    try:
        module, attribute = _TOOLKIT[name]
    except KeyError:
        raise AttributeError(f"module 'ctxcloud' has no attribute {name!r}") from None
    value = importlib.import_module(module)
    if attribute is not None:
        value = getattr(value, attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
