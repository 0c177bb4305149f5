"""Tenancy, the core's concern: every row belongs to a tenant, and the tenant always comes from
the credential. A public module of the plugin toolkit.

The core owns the tenant model, its lifecycle (creation, suspension, deletion of everything
it owns), the quotas and settings every plugin declares (``Quota``, ``Setting``), their exact
enforcement (``check_quota``, stored bytes), and the per-process cache of verified credentials
with the revocation generations that make a change reach every process at once
(``credential_cache``, ``credentials_changed``), and the per-process caches of a tenant's hot
rows that the data generations keep exact (``tenant_data_cache``, ``tenant_data_changed``).
The tenants plugin only adds the platform's admin routes and CLI on top.
"""

from __future__ import annotations

import importlib
from typing import Any

_PUBLIC: dict[str, tuple[str, str]] = {}


def _export(module: str, *names: str, **renamed: str) -> None:
    for name in names:
        _PUBLIC[name] = (module, name)
    for name, attribute in renamed.items():
        _PUBLIC[name] = (module, attribute)


_export("ctxcloud.tenancy.models", "Tenant", "ACTIVE", "SUSPENDED", "DELETING", "STATUSES")
_export(
    "ctxcloud.tenancy.options",
    "Quota",
    "Setting",
    "Count",
    "TenantConfigView",
    "DeclaredQuotas",
    "DeclaredSettings",
    "tenant_options",
)
_export(
    "ctxcloud.tenancy.quotas",
    "QuotaExceeded",
    "UNLIMITED_BYTES",
    "add_storage",
    "release_storage",
    "storage_left",
    "no_space",
    check_quota="check_count",
)
_export(
    "ctxcloud.tenancy.credentials",
    "CachedCredential",
    "CredentialCache",
    "credential_cache",
    "credentials_changed",
    "scope_of",
)
_export(
    "ctxcloud.tenancy.data_cache", "TenantDataCache", "tenant_data_cache", "tenant_data_changed"
)
_export(
    "ctxcloud.tenancy.lifecycle",
    "TenantSuspended",
    "current_tenant",
    "tenant_by_slug",
    "refuse_suspended",
    "create_tenant",
    "list_tenants",
    "get_tenant",
    "update_tenant",
    "update_config",
    "usage",
    "delete_tenant",
)

__all__ = list(_PUBLIC)


def __getattr__(name: str) -> Any:
    try:
        module, attribute = _PUBLIC[name]
    except KeyError:
        raise AttributeError(f"module 'ctxcloud.tenancy' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
