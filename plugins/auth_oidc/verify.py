"""Accepting a tenant's identity provider's access tokens as ``Authorization: Bearer``.

Whose token is it? Only the unverified payload can say before verification: a JWT whose
``iss`` is another issuer than this service's own (``JWT_ISSUER``) is ours to verify or to
refuse (401, never falling through); one without ``iss``, or with ours, belongs to the
other auth plugins, and so does anything that is not a JWT (API keys, ``ctx_...``).

The first use of a token in a process finds its provider by (issuer, audience), reads the
tenant's credential generation *before* reading the provider, verifies the token (keys
from the cached key set) and keeps the result (``credential_cache("oidc")``, keyed by the
token's hash, until its ``exp`` plus the leeway); later uses cost a dict lookup and a
generation read from memory. Changing or deleting a provider raises the tenant's
generation, so its cached tokens are verified again on their next use, on every process.
"""

from __future__ import annotations

import hashlib
import math
import time
from typing import Any

import flask

from ctxcloud import (
    ROLE_PERMISSIONS,
    Actor,
    Tenant,
    Unauthorized,
    Unavailable,
    emit_audit,
)
from ctxcloud.plugins.auth_oidc.keysets import KeysUnavailable
from ctxcloud.plugins.auth_oidc.models import IdentityProvider, ProviderAudience
from ctxcloud.plugins.auth_oidc.rules import REFUSED, decide
from ctxcloud.plugins.auth_oidc.state import federation
from ctxcloud.plugins.auth_oidc.tokens import (
    MAX_TOKEN_CHARS,
    TokenRefused,
    audiences_of,
    peek,
    subject_of,
    verify,
)
from ctxcloud.tenancy import CachedCredential, CredentialCache, credential_cache, scope_of

CACHE = "oidc"
KIND = "federated"


def presented_token(request: flask.Request) -> tuple[str, dict[str, Any]] | None:
    """The bearer token and its unverified claims when the token is ours, else None."""
    environ = request.environ
    if environ.get("HTTP_X_API_KEY") is not None:
        return None  # the API key plugin refuses two credentials
    authorization = environ.get("HTTP_AUTHORIZATION")
    if authorization is None:
        return None
    scheme, _, value = authorization.partition(" ")
    token = value.strip()
    if scheme.lower() != "bearer" or not token or token.startswith("ctx_"):
        return None
    if len(token) > MAX_TOKEN_CHARS * 2:
        return None  # not a token anyone issues; the catch-all bearer plugin refuses it
    claims = peek(token)
    if claims is None or "iss" not in claims or claims["iss"] is None:
        return None
    if claims["iss"] == flask.current_app.config["JWT_ISSUER"]:
        return None
    return token, claims


def _refuse(reason: str, **event: Any) -> Unauthorized:
    emit_audit("federated_sign_in_refused", reason=reason, **event)
    return Unauthorized(f"The identity provider's token was refused: {reason}.")


def _provider_for(issuer: Any, unverified: dict[str, Any]) -> tuple[str, str]:
    """(provider id, tenant id) of the one provider registered for the token's issuer and
    audiences; 401 when none or several are."""
    if not isinstance(issuer, str):
        raise _refuse("the issuer is not a string")
    try:
        audiences = audiences_of(unverified)
    except TokenRefused as exc:
        raise _refuse(exc.reason, issuer=issuer) from None
    rows = ProviderAudience.select(ProviderAudience.provider_id, ProviderAudience.tenant_id).where(
        ProviderAudience.issuer == issuer, ProviderAudience.audience.in_(audiences[:20])
    )
    owners = {(row.provider_id, row.tenant_id) for row in rows}
    if len(owners) != 1:
        reason = (
            "no identity provider is registered for this issuer and audience"
            if not owners
            else "the token's audiences belong to several identity providers"
        )
        raise _refuse(reason, issuer=issuer)
    return owners.pop()


def _load(
    token: str, digest: str, unverified: dict[str, Any], now: float, cache: CredentialCache
) -> CachedCredential:
    issuer = unverified["iss"]
    provider_id, tenant_id = _provider_for(issuer, unverified)
    scope = scope_of(tenant_id)
    generation = cache.generations.current(scope)  # before reading the database
    provider = IdentityProvider.get_or_none(
        IdentityProvider.id == provider_id, IdentityProvider.tenant_id == tenant_id
    )
    tenant = Tenant.get_or_none(Tenant.id == tenant_id)
    event = {"tenant_id": tenant_id, "issuer": issuer}
    if provider is None or tenant is None or provider.issuer != issuer:
        raise _refuse("no identity provider is registered for this issuer and audience", **event)
    event["provider"] = provider.name
    state = federation()
    try:
        claims = verify(token, provider, state.key_sets, state.settings.leeway)
    except TokenRefused as exc:
        raise _refuse(exc.reason, **event) from None
    except KeysUnavailable as exc:
        raise Unavailable(
            "The identity provider's keys cannot be fetched now; retry later.",
            headers={"Retry-After": str(math.ceil(exc.retry_after))},
        ) from None
    subject = subject_of(claims, provider.subject_claim)
    decision = decide(provider.claim_rules, provider.default_role, claims)
    if decision.by == REFUSED:
        raise _refuse("no claim rule gives this identity a role", subject=subject, **event)
    role = decision.role
    actor = Actor(
        kind=KIND,
        id=subject,
        tenant_id=tenant_id,
        role=role,
        permissions=ROLE_PERMISSIONS[role],
        credential_id=f"{provider.id}:{subject}",
        tenant=tenant,
        issuer=issuer,
    )
    entry = cache.put(
        digest, actor, scope, generation, now, float(claims["exp"]) + state.settings.leeway
    )
    emit_audit(
        "federated_sign_in",
        tenant_id=tenant_id,
        actor=actor.log_name,
        issuer=issuer,
        subject=subject,
        provider=provider.name,
        role=role,
        matched=decision.by,
        rule_index=decision.rule_index,
    )
    return entry


def verify_federated_token(token: str, unverified: dict[str, Any]) -> Actor:
    """The token's Actor; 401 naming why when refused, 503 when the provider's keys
    cannot be had."""
    now = time.time()
    cache = credential_cache(CACHE)
    digest = hashlib.sha256(token.encode()).hexdigest()
    entry = cache.get(digest, now) or _load(token, digest, unverified, now, cache)
    if entry.actor is None or (entry.expires_at is not None and now >= entry.expires_at):
        cache.forget(digest)
        raise Unauthorized("The identity provider's token was refused: the token expired.")
    return entry.actor
