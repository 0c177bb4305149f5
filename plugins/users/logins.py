"""Logins: password check, refresh-token rotation with reuse detection, revocation.

Each login is a token family. Refreshing rotates its refresh token; presenting a rotated
one again means it was copied, so the whole family (every token of that login) is revoked.
Revocations are stored in the database and announced through the tenant's credential
generation, so every process refuses the family's tokens on their next use.
"""

from __future__ import annotations

import datetime
from typing import Any

from ctxcloud import (
    Actor,
    BadRequest,
    Tenant,
    Unauthorized,
    database,
    emit_audit,
    for_update,
    new_id,
    utcnow,
)
from ctxcloud.plugins.users.models import TokenFamily, User
from ctxcloud.plugins.users.passwords import passwords
from ctxcloud.plugins.users.service import normalize_username, user_by_username
from ctxcloud.plugins.users.tokens import (
    REFRESH,
    decode,
    issue_tokens,
    new_jti,
    refresh_lifetime,
)
from ctxcloud.tenancy import credentials_changed, refuse_suspended, tenant_by_slug

BAD_LOGIN = "Invalid tenant, username or password."


def _refresh_expiry() -> datetime.datetime:
    return utcnow() + datetime.timedelta(seconds=refresh_lifetime())


def _failed(tenant_slug: str, username: str, reason: str, tenant: Tenant | None) -> Unauthorized:
    emit_audit(
        "login_failed",
        tenant_id=tenant.id if tenant else None,
        actor=None,
        tenant=tenant_slug,
        username=username,
        reason=reason,
    )
    return Unauthorized(BAD_LOGIN)


def login(tenant_slug: str, username: str, password: str) -> dict[str, Any]:
    """Tokens for a user's password; one 401 for every failure, taking about as long."""
    tenant_slug, username = tenant_slug.lower(), normalize_username(username)
    hasher = passwords()
    tenant = tenant_by_slug(tenant_slug)
    user = user_by_username(tenant.id, username) if tenant else None
    if user is None or user.disabled:
        hasher.verify_dummy(password)
        reason = (
            "unknown_tenant" if tenant is None else "unknown_user" if user is None else "disabled"
        )
        raise _failed(tenant_slug, username, reason, tenant)
    if not hasher.verify(user.password_hash, password):
        raise _failed(tenant_slug, username, "bad_password", tenant)
    refuse_suspended(tenant)
    if hasher.needs_rehash(user.password_hash):
        User.update(password_hash=hasher.hash(password)).where(User.id == user.id).execute()
    jti = new_jti()
    family = TokenFamily.create(
        id=new_id("fam"),
        tenant_id=tenant.id,
        user_id=user.id,
        refresh_jti=jti,
        expires_at=_refresh_expiry(),
    )
    TokenFamily.delete().where(
        TokenFamily.user_id == user.id, TokenFamily.expires_at < utcnow()
    ).execute()
    emit_audit("login_succeeded", tenant_id=tenant.id, actor=f"user:{user.id}", family_id=family.id)
    return issue_tokens(user, family.id, jti)


def _live_user(family: TokenFamily) -> User:
    """The family's user, if it still exists, is enabled and has not ended its logins since."""
    user = User.get_or_none(User.id == family.user_id)
    if (
        user is None
        or user.tenant_id != family.tenant_id
        or user.disabled
        or (user.sessions_revoked_at is not None and user.sessions_revoked_at >= family.created_at)
    ):
        raise Unauthorized()
    return user


def refresh(token: str) -> dict[str, Any]:
    """Rotate the login's refresh token; a replayed one revokes the whole login (401)."""
    claims = decode(token, REFRESH)
    with database.atomic():
        family = for_update(TokenFamily.select().where(TokenFamily.id == claims["fid"])).first()
        if (
            family is None
            or family.revoked_at is not None
            or family.user_id != claims["sub"]
            or family.tenant_id != claims["tid"]
        ):
            raise Unauthorized()
        replayed = family.refresh_jti != claims["jti"]
        if replayed:
            family.revoked_at, family.revoked_reason = utcnow(), "reuse"
            family.save()
        else:
            user = _live_user(family)
            refuse_suspended(Tenant.get_or_none(Tenant.id == family.tenant_id))
            family.refresh_jti, family.expires_at = new_jti(), _refresh_expiry()
            family.save()
    if replayed:
        credentials_changed(family.tenant_id)
        emit_audit(
            "token_reuse_detected",
            tenant_id=family.tenant_id,
            actor=f"user:{family.user_id}",
            family_id=family.id,
        )
        raise Unauthorized("This refresh token was already used; the login is revoked.")
    return issue_tokens(user, family.id, family.refresh_jti)


def revoke(actor: Actor) -> None:
    """End the login the presented access token belongs to, on every process at once."""
    if actor.kind != "user":
        raise BadRequest(
            "Only a user's access token is revoked here; revoke an API key with "
            "DELETE /api/v1/api-keys/{key_id}."
        )
    TokenFamily.update(revoked_at=utcnow(), revoked_reason="revoked").where(
        TokenFamily.id == actor.credential_id, TokenFamily.revoked_at.is_null()
    ).execute()
    credentials_changed(actor.tenant_id)
    emit_audit("token_revoked", family_id=actor.credential_id)


def delete_tenant_families(tenant_id: str) -> None:
    TokenFamily.delete().where(TokenFamily.tenant_id == tenant_id).execute()
