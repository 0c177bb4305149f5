"""OAuth client rules: a client never holds more than its creator, its secret is shown once,
and a deleted client, a rotated secret or a revoked token stops working at once."""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from typing import Any

import flask
import peewee

from ctxcloud import (
    PLATFORM_PERMISSIONS,
    Actor,
    NotFound,
    Tenant,
    ValidationFailed,
    check_delegation,
    database,
    emit_audit,
    tenancy,
    utcnow,
)
from ctxcloud.plugins.auth_oauth.client_secrets import new_client_id, new_secret, secret_hash
from ctxcloud.plugins.auth_oauth.models import OAuthClient, OAuthToken
from ctxcloud.tenancy import credentials_changed

# Expired token records are kept this long (for introspection answers and the audit trail).
TOKEN_RECORD_GRACE = datetime.timedelta(days=1)


def known_scopes() -> set[str]:
    """Every permission a client may hold: the registered ones, the platform's aside."""
    return set(flask.current_app.extensions["ctxcloud"].permissions) - set(PLATFORM_PERMISSIONS)


def create_client(
    tenant_id: str,
    name: str,
    scopes: Iterable[str],
    project_ids: Iterable[str] | None = None,
    *,
    actor: Actor | None = None,
) -> tuple[OAuthClient, str]:
    """A new client of the tenant and its secret (the only time the secret exists in clear)."""
    scopes = sorted(set(scopes))
    project_ids = None if project_ids is None else sorted(set(project_ids))
    if not isinstance(name, str) or not 1 <= len(name) <= 100:
        raise ValidationFailed({"name": ["Length must be between 1 and 100."]})
    check_delegation(scopes, project_ids, actor, what="client")
    secret = new_secret()
    with database.atomic():
        tenant = Tenant.get_by_id(tenant_id)
        tenancy.check_quota(tenant, "max_oauth_clients", OAuthClient.of_tenant(tenant_id).count)
        client = OAuthClient.create(
            client_id=new_client_id(),
            tenant_id=tenant_id,
            name=name,
            secret_hash=secret_hash(secret),
            scopes=scopes,
            project_ids=project_ids,
            created_by=actor.log_name if actor else "cli",
        )
    emit_audit(
        "oauth_client_created",
        tenant_id=tenant_id,
        client_id=client.client_id,
        name=name,
        scopes=scopes,
        project_ids=project_ids,
    )
    return client, secret


def list_clients(tenant_id: str, page: int, page_size: int) -> tuple[list[OAuthClient], int]:
    query = OAuthClient.of_tenant(tenant_id)
    order = (OAuthClient.created_at, OAuthClient.client_id)
    return list(query.order_by(*order).paginate(page, page_size)), query.count()


def get_client(tenant_id: str, client_id: str) -> OAuthClient:
    """A live client of the tenant; another tenant's, or a deleted one, is 404."""
    client = OAuthClient.of_tenant(tenant_id).where(OAuthClient.client_id == client_id).first()
    if client is None:
        raise NotFound("No such OAuth client.")
    return client


def delete_client(tenant_id: str, client_id: str) -> None:
    """The client and every token it holds stop working at once on every process (the row
    stays, for the audit trail)."""
    client = get_client(tenant_id, client_id)
    OAuthClient.update(revoked_at=utcnow()).where(
        OAuthClient.client_id == client.client_id
    ).execute()
    credentials_changed(tenant_id)
    emit_audit("oauth_client_deleted", tenant_id=tenant_id, client_id=client.client_id)


def rotate_secret(
    tenant_id: str, client_id: str, *, revoke_tokens: bool = False
) -> tuple[OAuthClient, str]:
    """A new secret; the old one dies at once. Tokens already issued live on until they
    expire, unless `revoke_tokens` (a leaked secret: its tokens may have leaked too)."""
    client = get_client(tenant_id, client_id)
    secret = new_secret()
    now = utcnow()
    with database.atomic():
        OAuthClient.update(secret_hash=secret_hash(secret), secret_rotated_at=now).where(
            OAuthClient.client_id == client.client_id
        ).execute()
        if revoke_tokens:
            OAuthToken.update(revoked_at=now).where(
                OAuthToken.client_id == client.client_id, OAuthToken.revoked_at.is_null()
            ).execute()
    if revoke_tokens:
        credentials_changed(tenant_id)
    emit_audit(
        "oauth_client_secret_rotated",
        tenant_id=tenant_id,
        client_id=client.client_id,
        tokens_revoked=revoke_tokens,
    )
    return get_client(tenant_id, client_id), secret


def find_client(client_id: Any) -> OAuthClient | None:
    """The live client a token request names (any tenant: the credential decides), or None."""
    if not isinstance(client_id, str) or len(client_id) > 32:
        return None
    return (
        OAuthClient.select()
        .where(OAuthClient.client_id == client_id, OAuthClient.revoked_at.is_null())
        .first()
    )


def record_token(claims: dict[str, Any]) -> None:
    """Keep what revocation and introspection need of an issued token (never the token),
    and drop the client's records that expired more than a day ago."""
    now = utcnow()
    with database.atomic():
        OAuthToken.delete().where(
            OAuthToken.client_id == claims["sub"],
            OAuthToken.expires_at < now - TOKEN_RECORD_GRACE,
        ).execute()
        OAuthToken.create(
            jti=claims["jti"],
            client_id=claims["sub"],
            tenant_id=claims["tid"],
            scopes=claims["scope"].split(),
            issued_at=_moment(claims["iat"]),
            expires_at=_moment(claims["exp"]),
        )


def _moment(epoch: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(epoch, datetime.UTC).replace(tzinfo=None)


def token_record(jti: Any, tenant_id: str) -> OAuthToken | None:
    if not isinstance(jti, str):
        return None
    return OAuthToken.get_or_none(OAuthToken.jti == jti, OAuthToken.tenant_id == tenant_id)


def revoke_token(record: OAuthToken) -> None:
    """The token is refused at once on every process."""
    if record.revoked_at is None:
        OAuthToken.update(revoked_at=utcnow()).where(OAuthToken.jti == record.jti).execute()
        credentials_changed(record.tenant_id)
    emit_audit(
        "oauth_token_revoked",
        tenant_id=record.tenant_id,
        client_id=record.client_id,
        jti=record.jti,
    )


def delete_tenant_clients(tenant_id: str) -> None:
    OAuthToken.delete().where(OAuthToken.tenant_id == tenant_id).execute()
    OAuthClient.delete().where(OAuthClient.tenant_id == tenant_id).execute()


def usage(tenant_id: str) -> dict[str, int]:
    return {"oauth_clients": OAuthClient.of_tenant(tenant_id).count()}


def all_clients_of(tenant_id: str) -> peewee.ModelSelect:
    """Every live client of the tenant, oldest first (the command line's list)."""
    return OAuthClient.of_tenant(tenant_id).order_by(OAuthClient.created_at)
