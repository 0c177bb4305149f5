"""The federation plugin's own problems, documented once in OpenAPI (``problem_responses``)."""

from __future__ import annotations

from ctxcloud import Conflict, ProblemResponse, ValidationFailed


class ProviderUnreachable(ValidationFailed):
    """The identity provider did not answer usably (refused, timed out, an HTTP error, a
    redirect). A 422 naming the URL and the reason, like an unusable answer, rather than a
    5xx: the request cannot succeed as it stands, and nothing in ctxcloud failed."""

    code = "provider_unreachable"


class AddressNotPublic(ValidationFailed):
    """An issuer or key set whose host is (or resolves to) an address that is not public,
    while ``OIDC_ALLOW_PRIVATE_ADDRESSES`` is false: refused before anything is sent, so a
    registration cannot probe the internal network."""

    code = "address_not_public"


class InvalidProviderMetadata(ValidationFailed):
    """The provider answered, but with something unusable (a discovery document naming another
    issuer, no `jwks_uri`, a key set with no usable key)."""

    code = "invalid_provider_metadata"


class TokenRejected(ValidationFailed):
    """The dry run's token did not verify: a 422 naming the reason, never a 401 (the caller's
    own credential is fine)."""

    code = "token_rejected"


class AudienceTaken(Conflict):
    """An (issuer, audience) pair belongs to one tenant and one provider only."""

    code = "audience_taken"


PROBLEM_RESPONSES = [
    ProblemResponse(
        "AudienceTaken",
        409,
        "audience_taken",
        "The issuer https://acme.okta.com/oauth2/default with audience api://ctxcloud is "
        "registered by another tenant.",
        description=(
            "Conflict: an (issuer, audience) pair is registered already, by another tenant or "
            "by another provider of this tenant (`audience_taken`); nothing was changed"
        ),
    ),
    ProblemResponse(
        "InvalidProviderMetadata",
        422,
        "invalid_provider_metadata",
        "The request is not valid.",
        description=(
            "Unprocessable: the body is not valid (`validation_error`, `errors` naming each "
            "field), the provider's discovery document or key set is unusable "
            "(`invalid_provider_metadata`: another issuer, no `jwks_uri`, no usable key), or "
            "could not be fetched (`provider_unreachable`: refused, timed out, an HTTP error, "
            "a redirect; `errors` names the URL and why), or is on an address that is not "
            "public where those are refused (`address_not_public`); nothing was changed"
        ),
    ),
    ProblemResponse(
        "TokenRejected",
        422,
        "token_rejected",
        "The request is not valid.",
        description=(
            "Unprocessable: the body is not valid (`validation_error`), the token did not "
            "verify against this provider (`token_rejected`: `errors.token` names why, e.g. "
            "expired, wrong audience, unknown kid), or the provider's keys could not be "
            "fetched (`provider_unreachable`)"
        ),
    ),
]
