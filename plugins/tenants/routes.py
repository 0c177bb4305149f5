"""/api/v1/tenants (platform admins), /api/v1/tenant (the caller's own) and /api/v1/auth/whoami."""

from __future__ import annotations

from flask.views import MethodView
from flask_smorest import Blueprint

from app.auth import Actor, current_actor, requires, requires_authentication
from plugins.tenants import service
from plugins.tenants.schemas import (
    TenantCreateSchema,
    TenantSchema,
    TenantUpdateSchema,
    WhoamiSchema,
)

MAX_PAGE_SIZE = 1000

tenants_blp = Blueprint(
    "tenants",
    __name__,
    url_prefix="/api/v1/tenants",
    description="Tenants, for platform operators (`platform:admin`).",
)
own_tenant_blp = Blueprint(
    "tenant", __name__, url_prefix="/api/v1/tenant", description="The caller's own tenant."
)
whoami_blp = Blueprint(
    "whoami",
    __name__,
    url_prefix="/api/v1/auth/whoami",
    description="Who the presented credential is.",
)

TENANT_ID_PARAM = {
    "in": "path",
    "name": "tenant_id",
    "required": True,
    "schema": {"type": "string"},
    "description": "The tenant's id",
    "example": "tnt_k5v3q2m8x7c1n4b6z9aa",
}


@tenants_blp.route("")
class Tenants(MethodView):
    @requires("platform:admin")
    @tenants_blp.response(200, TenantSchema(many=True))
    @tenants_blp.paginate(max_page_size=MAX_PAGE_SIZE)
    def get(self, pagination_parameters):
        """List tenants

        Every tenant, oldest first.
        """
        items, total = service.list_tenants(
            pagination_parameters.page, pagination_parameters.page_size
        )
        pagination_parameters.item_count = total
        return items

    @requires("platform:admin")
    @tenants_blp.arguments(TenantCreateSchema)
    @tenants_blp.response(201, TenantSchema)
    @tenants_blp.alt_response(409, response="Conflict")
    @tenants_blp.alt_response(422, response="ValidationError")
    def post(self, data):
        """Create a tenant

        The slug is unique (409 when taken); its users give it to log in.
        """
        return service.create_tenant(data["slug"], data.get("name"))


@tenants_blp.route("/<tenant_id>", parameters=[TENANT_ID_PARAM])
class TenantItem(MethodView):
    @requires("platform:admin")
    @tenants_blp.response(200, TenantSchema)
    @tenants_blp.alt_response(404, response="NotFound")
    def get(self, tenant_id):
        """Read a tenant"""
        return service.get_tenant(tenant_id)

    @requires("platform:admin")
    @tenants_blp.arguments(TenantUpdateSchema)
    @tenants_blp.response(200, TenantSchema)
    @tenants_blp.alt_response(404, response="NotFound")
    @tenants_blp.alt_response(422, response="ValidationError")
    def patch(self, changes, tenant_id):
        """Rename, suspend or reactivate a tenant

        Suspending refuses every credential of the tenant at once (403 `tenant_suspended`),
        on every server process; reactivating lets them back in.
        """
        return service.update_tenant(tenant_id, changes)

    @requires("platform:admin")
    @tenants_blp.response(204)
    @tenants_blp.alt_response(404, response="NotFound")
    def delete(self, tenant_id):
        """Delete a tenant and everything it owns

        Users, API keys, logins and every plugin's data of the tenant are removed; its
        credentials stop working at once.
        """
        service.delete_tenant(service.get_tenant(tenant_id))


@own_tenant_blp.route("")
class OwnTenant(MethodView):
    @requires("tenant:read")
    @own_tenant_blp.response(200, TenantSchema)
    def get(self):
        """Read the caller's tenant

        The tenant always comes from the credential.
        """
        return current_actor().tenant


def describe(actor: Actor) -> dict:
    """What whoami answers for an actor."""
    return {
        "type": "user" if actor.kind == "user" else "api_key",
        "id": actor.id,
        "tenant": actor.tenant,
        "role": actor.role,
        "permissions": sorted(actor.permissions),
        "project_ids": None if actor.project_ids is None else sorted(actor.project_ids),
    }


@whoami_blp.route("")
class Whoami(MethodView):
    @requires_authentication
    @whoami_blp.response(200, WhoamiSchema)
    def get(self):
        """Describe the presented credential

        Any valid credential may ask: its type, id, tenant, role and permissions.
        """
        return describe(current_actor())
