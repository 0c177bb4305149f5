"""/api/v1/api-keys: the tenant's service credentials (`keys:manage`)."""

from __future__ import annotations

from flask.views import MethodView

from ctxcloud import MAX_PAGE_SIZE, Blueprint, current_actor, page_and_size, requires
from ctxcloud.plugins.auth_apikey import service
from ctxcloud.plugins.auth_apikey.schemas import (
    ApiKeyCreatedSchema,
    ApiKeyCreateSchema,
    ApiKeySchema,
)

NO_STORE = {"Cache-Control": "no-store"}

blp = Blueprint(
    "api_keys",
    __name__,
    url_prefix="/api/v1/api-keys",
    description="API keys: service credentials with scopes, optionally restricted to projects.",
)

KEY_ID_PARAM = {
    "in": "path",
    "name": "key_id",
    "required": True,
    "schema": {"type": "string"},
    "description": "The key's id (not the key)",
    "example": "key_m8x7c1n4b6z9aak5v3q2",
}


@blp.route("")
class ApiKeys(MethodView):
    @requires("keys:manage")
    @blp.response(200, ApiKeySchema(many=True))
    @blp.paginate(max_page_size=MAX_PAGE_SIZE)
    def get(self, pagination_parameters):
        """List API keys

        The tenant's live keys, oldest first; never the secret or its hash.
        """
        items, total = service.list_api_keys(
            current_actor().tenant_id, *page_and_size(pagination_parameters)
        )
        pagination_parameters.item_count = total
        return items

    @requires("keys:manage")
    @blp.arguments(ApiKeyCreateSchema)
    @blp.response(201, ApiKeyCreatedSchema)
    @blp.alt_response(403, response="QuotaExceeded")
    @blp.alt_response(422, response="ValidationError")
    def post(self, data):
        """Create an API key

        The response holds `key`, the secret, this once. Scopes must be registered
        permissions (422) that the caller holds itself (403); a caller restricted to some
        projects can only make keys restricted to some of those. Past the tenant's
        `max_api_keys` quota (live keys): 403 `quota_exceeded`.
        """
        actor = current_actor()
        key, secret = service.create_api_key(
            actor.tenant_id,
            data["name"],
            data["scopes"],
            data.get("project_ids"),
            data.get("expires_at"),
            actor=actor,
        )
        key.key = secret
        return key, 201, NO_STORE


@blp.route("/<key_id>", parameters=[KEY_ID_PARAM])
class ApiKeyItem(MethodView):
    @requires("keys:manage")
    @blp.response(200, ApiKeySchema)
    @blp.alt_response(404, response="NotFound")
    def get(self, key_id):
        """Read an API key's details (never the secret)

        Name, scopes, project restriction, expiry and last use; the secret was shown once, at
        creation.
        """
        return service.get_api_key(current_actor().tenant_id, key_id)

    @requires("keys:manage")
    @blp.response(204)
    @blp.alt_response(404, response="NotFound")
    def delete(self, key_id):
        """Revoke an API key

        The key stops working at once, on every server process.
        """
        service.revoke_api_key(current_actor().tenant_id, key_id)
