"""Identity provider rules: one owner per (issuer, audience), roles never above the
registering admin's, keys checked before anything is stored, changes applied at once.

A rule (or the default role) may grant any role, `owner` included: whom the tenant's
identity provider vouches for is the tenant admin's choice. But never more than the admin
registering the provider holds (403), as with users and API keys.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flask
import peewee

from ctxcloud import (
    ROLE_PERMISSIONS,
    Actor,
    Forbidden,
    NotFound,
    ValidationFailed,
    database,
    emit_audit,
    for_update,
    new_id,
    utcnow,
)
from ctxcloud.plugins.auth_oidc.discovery import discover_jwks_uri, fetch_keys
from ctxcloud.plugins.auth_oidc.fetch import url_problem
from ctxcloud.plugins.auth_oidc.keysets import KeysUnavailable
from ctxcloud.plugins.auth_oidc.models import IdentityProvider, ProviderAudience
from ctxcloud.plugins.auth_oidc.problems import AudienceTaken, ProviderUnreachable, TokenRejected
from ctxcloud.plugins.auth_oidc.rules import REFUSED, decide
from ctxcloud.plugins.auth_oidc.state import federation
from ctxcloud.plugins.auth_oidc.tokens import DEFAULT_ALGORITHMS, TokenRefused, verify
from ctxcloud.tenancy import credentials_changed


def _check_urls(data: Mapping[str, Any], allow_http: bool) -> None:
    problems: dict[str, list[str]] = {}
    issuer = data["issuer"]
    if problem := url_problem(issuer, allow_http):
        problems["issuer"] = [f"The issuer {problem}."]
    elif "?" in issuer:
        problems["issuer"] = ["The issuer must not have a query."]
    elif issuer == flask.current_app.config["JWT_ISSUER"]:
        problems["issuer"] = ["This is the service's own issuer: its tokens need no provider."]
    jwks_uri = data.get("jwks_uri")
    if jwks_uri is not None and (problem := url_problem(jwks_uri, allow_http)):
        problems["jwks_uri"] = [f"The jwks_uri {problem}."]
    if problems:
        raise ValidationFailed(problems)


def _may_grant(actor: Actor | None, data: Mapping[str, Any]) -> None:
    roles = {rule["role"] for rule in data["claim_rules"]}
    if data.get("default_role") is not None:
        roles.add(data["default_role"])
    for role in sorted(roles):
        if actor is not None and not ROLE_PERMISSIONS[role] <= actor.permissions:
            raise Forbidden(f"This credential cannot grant the role {role!r}: it holds less.")


def _taken(tenant_id: str, provider_id: str | None, issuer: str, audiences: list[str]) -> None:
    """409 naming the first pair another provider (of any tenant) holds."""
    rows = ProviderAudience.select().where(
        ProviderAudience.issuer == issuer, ProviderAudience.audience.in_(audiences)
    )
    for row in rows:
        if row.provider_id == provider_id:
            continue
        if row.tenant_id != tenant_id:
            raise AudienceTaken(
                f"The issuer {issuer} with audience {row.audience} is registered by another tenant."
            )
        other = IdentityProvider.get_or_none(IdentityProvider.id == row.provider_id)
        name = other.name if other is not None else "another provider"
        raise AudienceTaken(
            f"The issuer {issuer} with audience {row.audience} is registered already, as "
            f"this tenant's provider {name!r}."
        )


def _store(
    tenant_id: str, name: str, fields: dict[str, Any], actor: Actor | None
) -> tuple[IdentityProvider, bool]:
    """Create or replace the row and its (issuer, audience) pairs in one transaction."""
    with database.atomic():
        provider = for_update(
            IdentityProvider.of_tenant(tenant_id).where(IdentityProvider.name == name)
        ).first()
        created = provider is None
        now = utcnow()
        if created:
            provider = IdentityProvider(
                id=new_id("idp"),
                tenant_id=tenant_id,
                name=name,
                created_by=actor.log_name if actor else "cli",
                created_at=now,
            )
        else:
            ProviderAudience.delete().where(ProviderAudience.provider_id == provider.id).execute()
        for key, value in fields.items():
            setattr(provider, key, value)
        provider.updated_at = now
        provider.save(force_insert=created)
        ProviderAudience.insert_many(
            [
                {
                    "issuer": fields["issuer"],
                    "audience": audience,
                    "tenant_id": tenant_id,
                    "provider_id": provider.id,
                }
                for audience in fields["audiences"]
            ]
        ).execute()
    return provider, created


def put_provider(
    tenant_id: str, name: str, data: Mapping[str, Any], *, actor: Actor | None = None
) -> tuple[IdentityProvider, bool]:
    """Register or replace the tenant's provider `name`; (provider, created)."""
    settings = federation().settings
    _check_urls(data, settings.allow_http)
    _may_grant(actor, data)
    issuer = data["issuer"]
    audiences = list(dict.fromkeys(data["audiences"]))
    existing = IdentityProvider.of_tenant(tenant_id).where(IdentityProvider.name == name).first()
    _taken(tenant_id, existing.id if existing else None, issuer, audiences)
    # The network before any transaction: a slow provider never holds a row lock.
    jwks_uri = data.get("jwks_uri")
    discovered = jwks_uri is None
    if discovered:
        jwks_uri = discover_jwks_uri(issuer, settings)
    keys = fetch_keys(jwks_uri, settings)
    fields = {
        "issuer": issuer,
        "audiences": audiences,
        "jwks_uri": jwks_uri,
        "jwks_uri_discovered": discovered,
        "algorithms": list(dict.fromkeys(data.get("algorithms") or DEFAULT_ALGORITHMS)),
        "subject_claim": data.get("subject_claim") or "sub",
        "claim_rules": [dict(rule) for rule in data["claim_rules"]],
        "default_role": data.get("default_role"),
    }
    try:
        provider, created = _store(tenant_id, name, fields, actor)
    except peewee.IntegrityError:
        # A race lost: another tenant (or request) took a pair, or created this name.
        _taken(tenant_id, existing.id if existing else None, issuer, audiences)
        raise AudienceTaken(
            f"The provider {name!r} changed while it was being saved: retry."
        ) from None
    credentials_changed(tenant_id)
    federation().key_sets.prime(jwks_uri, keys)
    emit_audit(
        "identity_provider_created" if created else "identity_provider_updated",
        tenant_id=tenant_id,
        provider_id=provider.id,
        name=name,
        issuer=issuer,
        audiences=audiences,
        jwks_uri=jwks_uri,
    )
    return provider, created


def list_providers(tenant_id: str, page: int, page_size: int) -> tuple[list[IdentityProvider], int]:
    query = IdentityProvider.of_tenant(tenant_id)
    items = list(
        query.order_by(IdentityProvider.name, IdentityProvider.id).paginate(page, page_size)
    )
    return items, query.count()


def get_provider(tenant_id: str, name: str) -> IdentityProvider:
    """The tenant's provider; another tenant's is as absent as a missing one (404)."""
    provider = IdentityProvider.of_tenant(tenant_id).where(IdentityProvider.name == name).first()
    if provider is None:
        raise NotFound("No such identity provider.")
    return provider


def delete_provider(tenant_id: str, name: str) -> None:
    """Its tokens stop working at once, on every process (cached ones included)."""
    with database.atomic():
        provider = for_update(
            IdentityProvider.of_tenant(tenant_id).where(IdentityProvider.name == name)
        ).first()
        if provider is None:
            raise NotFound("No such identity provider.")
        ProviderAudience.delete().where(ProviderAudience.provider_id == provider.id).execute()
        provider.delete_instance()
    credentials_changed(tenant_id)
    emit_audit(
        "identity_provider_deleted",
        tenant_id=tenant_id,
        provider_id=provider.id,
        name=name,
        issuer=provider.issuer,
    )


def dry_run(
    tenant_id: str, name: str, *, claims: dict[str, Any] | None = None, token: str | None = None
) -> dict[str, Any]:
    """What the provider's rules make of these claims (or of this token, verified fully):
    subject, role and the deciding rule; nobody is signed in and nothing is cached."""
    provider = get_provider(tenant_id, name)
    verified = token is not None
    if token is not None:
        state = federation()
        try:
            claims = verify(token, provider, state.key_sets, state.settings.leeway)
        except TokenRefused as exc:
            raise TokenRejected(
                {"token": [exc.reason]}, detail=f"The token was refused: {exc.reason}."
            ) from None
        except KeysUnavailable as exc:
            reason = f"The key set {provider.jwks_uri} could not be fetched: {exc.reason}."
            raise ProviderUnreachable({"token": [reason]}, detail=reason) from None
    assert claims is not None
    subject = claims.get(provider.subject_claim)
    decision = decide(provider.claim_rules, provider.default_role, claims)
    reason = None
    if not isinstance(subject, str) or not subject:
        subject, reason = None, f"the subject claim {provider.subject_claim!r} is missing"
    elif decision.by == REFUSED:
        reason = "no claim rule matches and the provider has no default role"
    accepted = reason is None
    return {
        "provider": provider.name,
        "verified": verified,
        "subject": subject,
        "issuer": provider.issuer,
        "actor": f"federated:{subject}@{provider.issuer}" if accepted else None,
        "decision": decision.by if accepted else REFUSED,
        "role": decision.role if accepted else None,
        "permissions": sorted(ROLE_PERMISSIONS[decision.role]) if accepted else [],
        "rule_index": decision.rule_index if accepted else None,
        "rule": provider.claim_rules[decision.rule_index]
        if accepted and decision.rule_index is not None
        else None,
        "reason": reason,
    }


def delete_tenant_providers(tenant_id: str) -> None:
    ProviderAudience.delete().where(ProviderAudience.tenant_id == tenant_id).execute()
    IdentityProvider.delete().where(IdentityProvider.tenant_id == tenant_id).execute()


def usage(tenant_id: str) -> dict[str, int]:
    return {"identity_providers": IdentityProvider.of_tenant(tenant_id).count()}
