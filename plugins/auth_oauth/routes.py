"""/api/v1/oauth/clients: the tenant's OAuth clients (`keys:manage`)."""

from __future__ import annotations

from flask.views import MethodView

from ctxcloud import MAX_PAGE_SIZE, Blueprint, current_actor, page_and_size, requires
from ctxcloud.plugins.auth_oauth import service
from ctxcloud.plugins.auth_oauth.client_secrets import CLIENT_ID_EXAMPLE
from ctxcloud.plugins.auth_oauth.schemas import (
    ClientCreatedSchema,
    ClientCreateSchema,
    ClientSchema,
    SecretRotationSchema,
)

NO_STORE = {"Cache-Control": "no-store"}

blp = Blueprint(
    "oauth_clients",
    __name__,
    url_prefix="/api/v1/oauth/clients",
    description="OAuth 2 clients: services that get tokens by the client-credentials grant.",
)

CLIENT_ID_PARAM = {
    "in": "path",
    "name": "client_id",
    "required": True,
    "schema": {"type": "string"},
    "description": "The client's id",
    "example": CLIENT_ID_EXAMPLE,
}


def _with_secret(client, secret: str):
    client.client_secret = secret
    return client


@blp.route("")
class Clients(MethodView):
    @requires("keys:manage")
    @blp.response(200, ClientSchema(many=True))
    @blp.paginate(max_page_size=MAX_PAGE_SIZE)
    def get(self, pagination_parameters):
        """List OAuth clients

        The tenant's live clients, oldest first; never a secret or its hash.
        """
        items, total = service.list_clients(
            current_actor().tenant_id, *page_and_size(pagination_parameters)
        )
        pagination_parameters.item_count = total
        return items

    @requires("keys:manage")
    @blp.arguments(ClientCreateSchema)
    @blp.response(201, ClientCreatedSchema)
    @blp.alt_response(403, response="QuotaExceeded")
    @blp.alt_response(422, response="ValidationError")
    def post(self, data):
        """Create an OAuth client

        The response holds `client_secret` this once. Scopes must be registered permissions
        (422) that the caller holds itself (403); a caller restricted to some projects can
        only make clients restricted to some of those. Past the tenant's `max_oauth_clients`
        quota: 403 `quota_exceeded`.
        """
        actor = current_actor()
        client, secret = service.create_client(
            actor.tenant_id, data["name"], data["scopes"], data.get("project_ids"), actor=actor
        )
        return _with_secret(client, secret), 201, NO_STORE


@blp.route("/<client_id>", parameters=[CLIENT_ID_PARAM])
class ClientItem(MethodView):
    @requires("keys:manage")
    @blp.response(200, ClientSchema)
    @blp.alt_response(404, response="NotFound")
    def get(self, client_id):
        """Read an OAuth client

        Its name, scopes and project restriction; never its secret, which was shown once.
        """
        return service.get_client(current_actor().tenant_id, client_id)

    @requires("keys:manage")
    @blp.response(204)
    @blp.alt_response(404, response="NotFound")
    def delete(self, client_id):
        """Delete an OAuth client

        Its secret and every token it holds stop working at once, on every server process.
        """
        service.delete_client(current_actor().tenant_id, client_id)


@blp.route("/<client_id>/secret", parameters=[CLIENT_ID_PARAM])
class ClientSecret(MethodView):
    @requires("keys:manage")
    @blp.arguments(SecretRotationSchema, location="query")
    @blp.response(200, ClientCreatedSchema)
    @blp.alt_response(404, response="NotFound")
    @blp.alt_response(422, response="ValidationError")
    def post(self, data, client_id):
        """Rotate an OAuth client's secret

        Answers the new `client_secret` this once; the old secret stops working at once.
        Tokens already issued live until they expire, unless `?revoke_tokens=true`.
        """
        client, secret = service.rotate_secret(
            current_actor().tenant_id,
            client_id,
            revoke_tokens=data["revoke_tokens"],
        )
        return _with_secret(client, secret), 200, NO_STORE
