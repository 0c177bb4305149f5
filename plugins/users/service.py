"""User rules: roles never above the manager's own, at least one owner, the password policy.

A manager (user or API key) may only create, change or delete users whose role grants no
more than the manager holds, and may only grant such roles: an admin can neither create an
owner nor demote one. The last enabled owner of a tenant cannot be demoted, disabled or
deleted (409).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import peewee

from ctxcloud import (
    ROLE_PERMISSIONS,
    ROLES,
    Actor,
    Conflict,
    Forbidden,
    NotFound,
    Tenant,
    ValidationFailed,
    database,
    emit_audit,
    for_update,
    new_id,
    tenancy,
    utcnow,
)
from ctxcloud.plugins.users.models import User
from ctxcloud.plugins.users.passwords import passwords, policy_errors
from ctxcloud.tenancy import credentials_changed

USERNAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}$"
OWNER = "owner"
_username = re.compile(USERNAME_PATTERN)


def normalize_username(username: str) -> str:
    return username.lower()


def _validate(
    *, username: str | None = None, password: str | None = None, role: str | None = None
) -> None:
    """The rules the API schema states, enforced here too for the CLI and other callers."""
    problems: dict[str, list[str]] = {}
    if username is not None and not (isinstance(username, str) and _username.match(username)):
        problems["username"] = ["1-64 letters, digits and . _ @ + -, starting alphanumeric."]
    if role is not None and role not in ROLES:
        problems["role"] = [f"Must be one of: {', '.join(ROLES)}."]
    if password is not None:
        if not isinstance(password, str):
            problems["password"] = ["Not a valid string."]
        elif errors := policy_errors(password, str(username or "")):
            problems["password"] = errors
    if problems:
        raise ValidationFailed(problems)


def _may_grant(actor: Actor | None, role: str) -> None:
    if actor is not None and not ROLE_PERMISSIONS[role] <= actor.permissions:
        raise Forbidden(f"This credential cannot grant the role {role!r}: it holds less.")


def _may_manage(actor: Actor | None, user: User) -> None:
    if actor is not None and not ROLE_PERMISSIONS[user.role] <= actor.permissions:
        raise Forbidden(f"This credential cannot manage a user with the role {user.role!r}.")


def _keep_an_owner(user: User) -> None:
    """Refuse to leave the tenant without an enabled owner (rows locked against races)."""
    owners = for_update(
        User.of_tenant(user.tenant_id).where(User.role == OWNER, User.disabled == False)  # noqa: E712
    )
    if not [owner for owner in owners if owner.id != user.id]:
        raise Conflict("This is the tenant's last owner: make another owner first.")


def create_user(
    tenant_id: str,
    username: str,
    password: str,
    role: str,
    *,
    actor: Actor | None = None,
) -> User:
    """A new user; 409 when the username is taken in the tenant."""
    _validate(username=username, password=password, role=role)
    _may_grant(actor, role)
    username = normalize_username(username)
    if User.of_tenant(tenant_id).where(User.username == username).exists():
        raise Conflict(f"The username {username!r} is taken.")
    password_hash = passwords().hash(password)
    try:
        with database.atomic():
            tenant = Tenant.get_by_id(tenant_id)
            tenancy.check_quota(tenant, "max_users", User.of_tenant(tenant_id).count)
            now = utcnow()
            user = User.create(
                created_at=now,
                updated_at=now,
                id=new_id("usr"),
                tenant_id=tenant_id,
                username=username,
                role=role,
                password_hash=password_hash,
            )
    except peewee.IntegrityError:
        raise Conflict(f"The username {username!r} is taken.") from None
    emit_audit("user_created", tenant_id=tenant_id, user_id=user.id, username=username, role=role)
    return user


def list_users(tenant_id: str, page: int, page_size: int) -> tuple[list[User], int]:
    query = User.of_tenant(tenant_id)
    items = list(query.order_by(User.created_at, User.id).paginate(page, page_size))
    return items, query.count()


def get_user(tenant_id: str, user_id: str, *, lock: bool = False) -> User:
    """The tenant's user; another tenant's is as absent as a missing one (404)."""
    query = User.of_tenant(tenant_id).where(User.id == user_id)
    user = (for_update(query) if lock else query).first()
    if user is None:
        raise NotFound("No such user.")
    return user


def user_by_username(tenant_id: str, username: str) -> User | None:
    return User.of_tenant(tenant_id).where(User.username == normalize_username(username)).first()


def update_user(
    actor: Actor | None, tenant_id: str, user_id: str, changes: Mapping[str, Any]
) -> User:
    """Change role, disabled flag or password; logins end when disabled or the password changes."""
    username = get_user(tenant_id, user_id).username
    _validate(username=username, password=changes.get("password"), role=changes.get("role"))
    # Hash before locking: argon2id takes tens of milliseconds by design.
    new_hash = passwords().hash(changes["password"]) if "password" in changes else None
    with database.atomic():
        user = get_user(tenant_id, user_id, lock=True)
        _may_manage(actor, user)
        role = changes.get("role", user.role)
        disabled = changes.get("disabled", user.disabled)
        _may_grant(actor, role)
        if user.role == OWNER and not user.disabled and (role != OWNER or disabled):
            _keep_an_owner(user)
        events = []
        if role != user.role:
            events.append(("user_role_changed", {"old_role": user.role, "role": role}))
        if disabled != user.disabled:
            events.append(("user_disabled" if disabled else "user_enabled", {}))
        if (disabled and not user.disabled) or "password" in changes:
            user.sessions_revoked_at = utcnow()
        if new_hash is not None:
            user.password_hash = new_hash
            events.append(("user_password_changed", {}))
        user.role, user.disabled, user.updated_at = role, disabled, utcnow()
        user.save()
    credentials_changed(tenant_id)
    for event, fields in events:
        emit_audit(event, tenant_id=tenant_id, user_id=user.id, username=user.username, **fields)
    return user


def delete_user(actor: Actor | None, tenant_id: str, user_id: str) -> None:
    """Delete a user; their logins stop working at once. Keys they created live on."""
    with database.atomic():
        user = get_user(tenant_id, user_id, lock=True)
        _may_manage(actor, user)
        if user.role == OWNER and not user.disabled:
            _keep_an_owner(user)
        user.delete_instance()
    credentials_changed(tenant_id)
    emit_audit("user_deleted", tenant_id=tenant_id, user_id=user.id, username=user.username)


def delete_tenant_users(tenant_id: str) -> None:
    User.delete().where(User.tenant_id == tenant_id).execute()


def usage(tenant_id: str) -> dict[str, int]:
    return {"users": User.of_tenant(tenant_id).count()}
