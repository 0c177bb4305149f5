"""Where a provider's keys are: the `jwks_uri` of its discovery document, checked at
registration (OpenID Connect Discovery 1.0, §4). Never guessed as the issuer plus a fixed
path: providers put their keys in different places (Keycloak `/protocol/openid-connect/
certs`, Okta `/v1/keys`, Entra `/discovery/v2.0/keys`)."""

from __future__ import annotations

from typing import Any

from ctxcloud.plugins.auth_oidc.fetch import AddressRefused, FetchFailed, fetch_json, url_problem
from ctxcloud.plugins.auth_oidc.keysets import usable_keys
from ctxcloud.plugins.auth_oidc.problems import (
    AddressNotPublic,
    InvalidProviderMetadata,
    ProviderUnreachable,
)
from ctxcloud.plugins.auth_oidc.settings import OidcSettings

WELL_KNOWN = "/.well-known/openid-configuration"


def discovery_url(issuer: str) -> str:
    """The discovery document's URL: the issuer, any trailing slash removed, + WELL_KNOWN."""
    return issuer.rstrip("/") + WELL_KNOWN


def _fetch(url: str, field: str, what: str, settings: OidcSettings) -> dict[str, Any]:
    try:
        return fetch_json(
            url, settings.http_timeout, allow_private_addresses=settings.allow_private_addresses
        )
    except AddressRefused as exc:
        reason = f"The {what} {url} was not fetched: {exc.reason}."
        raise AddressNotPublic({field: [reason]}, detail=reason) from None
    except FetchFailed as exc:
        if exc.unreachable:
            reason = f"The {what} {url} could not be fetched: {exc.reason}."
            raise ProviderUnreachable({field: [reason]}, detail=reason) from None
        raise InvalidProviderMetadata(
            {field: [f"The {what} {url} is {exc.reason}."]},
            detail=f"The provider's {what} is unusable.",
        ) from None


def discover_jwks_uri(issuer: str, settings: OidcSettings) -> str:
    """The key set's URL from the issuer's discovery document, whose `issuer` must be the
    registered one exactly (a document copied from elsewhere names its own issuer)."""
    url = discovery_url(issuer)
    document = _fetch(url, "issuer", "discovery document", settings)
    if document.get("issuer") != issuer:
        raise InvalidProviderMetadata(
            {
                "issuer": [
                    f"The discovery document {url} names another issuer: the issuer must be "
                    "registered exactly as the provider names itself (trailing slash included)."
                ]
            },
            detail="The discovery document names another issuer.",
        )
    jwks_uri = document.get("jwks_uri")
    problem = url_problem(jwks_uri, settings.allow_http) if isinstance(jwks_uri, str) else None
    if not isinstance(jwks_uri, str) or problem:
        raise InvalidProviderMetadata(
            {"issuer": [f"The discovery document {url} has no usable jwks_uri ({problem})."]},
            detail="The discovery document has no usable jwks_uri.",
        )
    return jwks_uri


def fetch_keys(jwks_uri: str, settings: OidcSettings) -> dict[str, dict[str, Any]]:
    """The key set's usable keys, fetched now: a registration fails early on a set that
    could never verify a token."""
    document = _fetch(jwks_uri, "jwks_uri", "key set", settings)
    try:
        return usable_keys(document)
    except ValueError as exc:
        raise InvalidProviderMetadata(
            {"jwks_uri": [f"The key set {jwks_uri} {exc}."]},
            detail="The provider's key set is unusable.",
        ) from None
