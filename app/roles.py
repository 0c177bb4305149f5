"""The permission names and the role table of API.md: what each tenant role may do."""

from __future__ import annotations

PERMISSIONS = {
    "projects:read": "List and read projects.",
    "context:read": "Read context manifests, entries and revisions.",
    "context:write": "Write, delete and commit context entries.",
    "projects:write": "Create, change and delete projects.",
    "keys:manage": "Create, list and revoke API keys.",
    "users:manage": "Create, list, change and delete users.",
    "tenant:read": "Read the tenant, its configuration and usage.",
    "tenant:admin": "Change the tenant's settings.",
    "platform:admin": "Operate the platform: tenants, quotas, plugins.",
}

_VIEWER = frozenset({"projects:read", "context:read"})
_MEMBER = _VIEWER | {"context:write"}
_ADMIN = _MEMBER | {"projects:write", "keys:manage", "users:manage", "tenant:read"}
_OWNER = _ADMIN | {"tenant:admin"}

ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "viewer": _VIEWER,
    "member": _MEMBER,
    "admin": _ADMIN,
    "owner": _OWNER,
}
ROLES = tuple(ROLE_PERMISSIONS)
TENANT_PERMISSIONS = _OWNER
PLATFORM_PERMISSIONS = frozenset({"platform:admin"})
