"""/api/v1/tenant/identity-providers: the tenant's own identity providers (`tenant:admin`)."""

from __future__ import annotations

import re

from flask.views import MethodView

from ctxcloud import (
    MAX_PAGE_SIZE,
    SLUG_PATTERN,
    Blueprint,
    NotFound,
    current_actor,
    page_and_size,
    requires,
)
from ctxcloud.plugins.auth_oidc import service
from ctxcloud.plugins.auth_oidc.schemas import (
    DryRunResultSchema,
    DryRunSchema,
    IdentityProviderPutSchema,
    IdentityProviderSchema,
)

blp = Blueprint(
    "identity_providers",
    __name__,
    url_prefix="/api/v1/tenant/identity-providers",
    description="The tenant's own OpenID Connect identity providers (federation): their "
    "access tokens are accepted as `Authorization: Bearer`, with a role from claim rules.",
)

NAME_PARAM = {
    "in": "path",
    "name": "name",
    "required": True,
    "schema": {"type": "string", "pattern": SLUG_PATTERN},
    # No `example`: a documented request would have to reach a real provider (discovery and
    # key set), so the example-sending docs test leaves these operations out.
    "description": "The provider's name in this tenant (a slug: lowercase letters, digits, "
    "inner hyphens), e.g. `keycloak`",
}


def _name(name: str) -> str:
    """A name that cannot be a provider's is simply absent (404), as the routing would say."""
    if not re.fullmatch(SLUG_PATTERN, name):
        raise NotFound("No such identity provider.")
    return name


@blp.route("")
class IdentityProviders(MethodView):
    @requires("tenant:admin")
    @blp.response(200, IdentityProviderSchema(many=True))
    @blp.paginate(max_page_size=MAX_PAGE_SIZE)
    def get(self, pagination_parameters):
        """List identity providers

        The tenant's providers, by name.
        """
        items, total = service.list_providers(
            current_actor().tenant_id, *page_and_size(pagination_parameters)
        )
        pagination_parameters.item_count = total
        return items


@blp.route("/<name>", parameters=[NAME_PARAM])
class IdentityProviderItem(MethodView):
    @requires("tenant:admin")
    @blp.response(200, IdentityProviderSchema)
    @blp.alt_response(404, response="NotFound")
    def get(self, name):
        """Read an identity provider

        Its issuer, audiences, key set, algorithms and claim rules.
        """
        return service.get_provider(current_actor().tenant_id, _name(name))

    @requires("tenant:admin")
    @blp.arguments(IdentityProviderPutSchema)
    @blp.response(200, IdentityProviderSchema)
    @blp.alt_response(201, schema=IdentityProviderSchema, description="Created")
    @blp.alt_response(403, response="Forbidden")
    @blp.alt_response(404, response="NotFound")
    @blp.alt_response(409, response="AudienceTaken")
    @blp.alt_response(422, response="InvalidProviderMetadata")
    def put(self, data, name):
        """Register or replace an identity provider

        201 when new, 200 when it replaced the provider of that name. Without `jwks_uri`
        the issuer's discovery document is fetched now and must name the same issuer; the
        key set is fetched now too and must hold a usable signing key (422
        `invalid_provider_metadata` otherwise, 422 `provider_unreachable` when the provider
        does not answer). Each (issuer, audience) pair belongs to one provider of one
        tenant (409 `audience_taken`). Rules may grant any role up to the caller's own
        (403 beyond it). The change applies at once to every process: tokens already
        accepted are judged again by the new rules.
        """
        provider, created = service.put_provider(
            current_actor().tenant_id, _name(name), data, actor=current_actor()
        )
        return provider, 201 if created else 200

    @requires("tenant:admin")
    @blp.response(204)
    @blp.alt_response(404, response="NotFound")
    def delete(self, name):
        """Delete an identity provider

        Its tokens stop working at once, on every server process.
        """
        service.delete_provider(current_actor().tenant_id, _name(name))


@blp.route("/<name>/test", parameters=[NAME_PARAM])
class IdentityProviderDryRun(MethodView):
    @requires("tenant:admin")
    @blp.arguments(DryRunSchema)
    @blp.response(200, DryRunResultSchema)
    @blp.alt_response(404, response="NotFound")
    @blp.alt_response(422, response="TokenRejected")
    def post(self, data, name):
        """Try the provider's rules (a dry run)

        With `claims`: what the claim rules make of them, nothing verified. With `token`:
        the token is verified fully against this provider first (signature, issuer,
        audience, expiry; 422 `token_rejected` naming why not). The answer names the
        subject, the role and the rule that decided (or the default, or `refused`). Nobody
        is signed in.
        """
        return service.dry_run(
            current_actor().tenant_id,
            _name(name),
            claims=data.get("claims"),
            token=data.get("token"),
        )
