"""The built-in permission set and the fallback rule: allow what the credential holds.

An essential plugin of the core (it cannot be blocked): without it nothing would ever be
allowed. Other plugins answer `permission_allowed` first and may veto (False)."""

from __future__ import annotations

from typing import Any

from ctxcloud.hookspecs import hookimpl
from ctxcloud.roles import PERMISSIONS


@hookimpl
def register_permissions() -> dict[str, str]:
    return PERMISSIONS


@hookimpl(trylast=True)
def permission_allowed(actor: Any, action: str, resource: Any) -> bool | None:
    """Allow what the credential holds; other plugins answer first and may veto."""
    return True if action in actor.permissions else None
