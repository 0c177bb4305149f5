"""/api/v1/tenants (platform admins), /api/v1/tenant (the caller's own) and /api/v1/auth/whoami."""

from __future__ import annotations

import copy

from flask.views import MethodView

from ctxcloud import (
    MAX_PAGE_SIZE,
    Actor,
    Blueprint,
    current_actor,
    page_and_size,
    requires,
    requires_authentication,
    tenancy,
)
from ctxcloud.plugins.tenants.schemas import (
    OwnTenantSchema,
    TenantConfigChangeSchema,
    TenantConfigSchema,
    TenantCreateSchema,
    TenantSchema,
    TenantUpdateSchema,
    UsageSchema,
    WhoamiSchema,
)
from ctxcloud.tenancy import DeclaredSettings, tenant_options

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
        items, total = tenancy.list_tenants(*page_and_size(pagination_parameters))
        pagination_parameters.item_count = total
        return items

    @requires("platform:admin")
    @tenants_blp.arguments(TenantCreateSchema)
    @tenants_blp.response(201, TenantSchema)
    @tenants_blp.alt_response(409, response="Conflict")
    @tenants_blp.alt_response(422, response="ValidationError")
    def post(self, data):
        """Create a tenant

        The slug is unique (409 when taken); its users give it to log in. `config` may set
        quota and setting overrides at once (422 naming the field when one is invalid).
        """
        return tenancy.create_tenant(data["slug"], data.get("name"), data.get("config"))


@tenants_blp.route("/<tenant_id>", parameters=[TENANT_ID_PARAM])
class TenantItem(MethodView):
    @requires("platform:admin")
    @tenants_blp.response(200, TenantSchema)
    @tenants_blp.alt_response(404, response="NotFound")
    def get(self, tenant_id):
        """Read a tenant

        Its slug, name, status and config (quotas and settings, with what it overrides).
        """
        return tenancy.get_tenant(tenant_id)

    @requires("platform:admin")
    @tenants_blp.arguments(TenantUpdateSchema)
    @tenants_blp.response(200, TenantSchema)
    @tenants_blp.alt_response(404, response="NotFound")
    @tenants_blp.alt_response(409, response="Conflict")
    @tenants_blp.alt_response(422, response="ValidationError")
    def patch(self, changes, tenant_id):
        """Rename, suspend or reactivate a tenant

        Suspending refuses every credential of the tenant at once (403 `tenant_suspended`),
        on every server process; its data is kept. Reactivating lets them back in. A tenant
        being deleted cannot be changed (409).
        """
        return tenancy.update_tenant(tenant_id, changes)

    @requires("platform:admin")
    @tenants_blp.response(204)
    @tenants_blp.alt_response(404, response="NotFound")
    @tenants_blp.alt_response(503, response="Unavailable")
    def delete(self, tenant_id):
        """Delete a tenant and everything it owns

        The tenant's credentials are refused at once and its data key is destroyed first, so
        every object it stored is unreadable from then on; then its rows and objects are
        deleted. If that fails part-way (503), the tenant stays `deleting`: repeat the
        DELETE, or run `ctxcloud tenants purge SLUG`, to finish.
        """
        tenancy.delete_tenant(tenancy.get_tenant(tenant_id))


@tenants_blp.route("/<tenant_id>/config", parameters=[TENANT_ID_PARAM])
class TenantConfig(MethodView):
    @requires("platform:admin")
    @tenants_blp.response(200, TenantConfigSchema)
    @tenants_blp.alt_response(404, response="NotFound")
    def get(self, tenant_id):
        """Read a tenant's quotas and settings

        Effective values (the tenant's overrides, else the service defaults; null quotas are
        unlimited), and the overrides themselves.
        """
        return tenancy.get_tenant(tenant_id).effective_config

    @requires("platform:admin")
    @tenants_blp.arguments(TenantConfigChangeSchema)
    @tenants_blp.response(200, TenantConfigSchema)
    @tenants_blp.alt_response(404, response="NotFound")
    @tenants_blp.alt_response(409, response="Conflict")
    @tenants_blp.alt_response(422, response="ValidationError")
    def patch(self, changes, tenant_id):
        """Change a tenant's quotas and settings

        Only the fields given change; null returns a field to the service default. Every
        server process applies the change on its next request. Lowering a quota below the
        current usage keeps the data and refuses further growth.
        """
        changes = tenant_options().validate_change(changes)
        return tenancy.update_config(tenant_id, changes).effective_config


@tenants_blp.route("/<tenant_id>/usage", parameters=[TENANT_ID_PARAM])
class TenantUsage(MethodView):
    @requires("platform:admin")
    @tenants_blp.response(200, UsageSchema)
    @tenants_blp.alt_response(404, response="NotFound")
    def get(self, tenant_id):
        """Read a tenant's usage

        Exact counts read now: projects, live entries, stored bytes (every kept version),
        users, unrevoked API keys, and requests in the tenant's current rate-limit window.
        """
        return tenancy.usage(tenancy.get_tenant(tenant_id))


@own_tenant_blp.route("")
class OwnTenant(MethodView):
    @requires("tenant:read")
    @own_tenant_blp.response(200, OwnTenantSchema)
    def get(self):
        """Read the caller's tenant, its config and its usage

        The tenant always comes from the credential.
        """
        tenant = copy.copy(current_actor().tenant)  # the credential cache's is shared
        tenant.usage = tenancy.usage(tenant)
        return tenant


@own_tenant_blp.route("/settings")
class OwnTenantSettings(MethodView):
    @requires("tenant:admin")
    @own_tenant_blp.arguments(DeclaredSettings)
    @own_tenant_blp.response(200, TenantConfigSchema)
    @own_tenant_blp.alt_response(422, response="ValidationError")
    def patch(self, settings):
        """Change the caller's tenant settings

        `default_content_type`, `allowed_content_types` and `revisions_kept` (at most the
        platform's `revisions_kept` quota); null returns a setting to the default. Quotas are
        the platform's and cannot be changed here.
        """
        changes = tenant_options().validate_change({"settings": settings}, kinds=("settings",))
        tenant = tenancy.update_config(current_actor().tenant_id, changes)
        return tenant.effective_config


# A platform key is an API key without a tenant; every other kind answers as itself.
WHOAMI_TYPES = {"platform": "api_key"}


def describe(actor: Actor) -> dict:
    """What whoami answers for an actor."""
    return {
        "type": WHOAMI_TYPES.get(actor.kind, actor.kind),
        "id": actor.id,
        "tenant": actor.tenant,
        "role": actor.role,
        "permissions": sorted(actor.permissions),
        "project_ids": None if actor.project_ids is None else sorted(actor.project_ids),
        "issuer": actor.issuer,
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
