"""/api/v1/audit-events: the audit log, read-only (tenant:admin; platform keys: every tenant)."""

from __future__ import annotations

from flask.views import MethodView

from ctxcloud import (
    MAX_PAGE_SIZE,
    Blueprint,
    Forbidden,
    current_actor,
    emit_audit,
    is_allowed,
    page_and_size,
    requires_authentication,
)
from ctxcloud.plugins.audit_log import query as audit_query
from ctxcloud.plugins.audit_log.schemas import AuditEventSchema, AuditQuerySchema

blp = Blueprint(
    "audit_events",
    __name__,
    url_prefix="/api/v1/audit-events",
    description="The audit log: security events, hash-chained per tenant, read-only.",
)

TENANT_PERMISSION = "tenant:admin"
PLATFORM_PERMISSION = "platform:admin"


@blp.route("")
class AuditEvents(MethodView):
    @requires_authentication
    @blp.doc(**{"x-permission": TENANT_PERMISSION})
    @blp.arguments(AuditQuerySchema, location="query")
    @blp.response(200, AuditEventSchema(many=True))
    @blp.paginate(max_page_size=MAX_PAGE_SIZE)
    @blp.alt_response(400, response="BadRequest")
    @blp.alt_response(403, response="Forbidden")
    @blp.alt_response(404, response="NotFound")
    def get(self, args, pagination_parameters):
        """List audit events

        The tenant's security events (logins, keys, OAuth clients, identity providers,
        permission denials, settings, deletions, links), read-only. A tenant's credential
        needs `tenant:admin` and sees its own tenant's events only; a platform key
        (`platform:admin`) reads every tenant's and the platform's (`tenant_id` null),
        optionally one tenant's with `tenant=` (an id, a slug, or `platform`). Anything
        else is a 403, itself recorded as a `permission_denied` event.

        Newest first (by `id`, the order they were stored), paginated with `page` and
        `page_size` like every list (`X-Pagination`); a page past the end is empty. New
        events land on page 1, so pin `until=` to page through a fixed set. Filters combine:
        `type` (comma-separated), `actor` (`kind:id` or the id), `since` and `until`
        (RFC 3339 with an offset, inclusive). A malformed filter, or `since` after `until`,
        is a 400 naming it. The log is append-only: this route has no write methods (405).
        """
        actor = current_actor()
        platform = is_allowed(actor, PLATFORM_PERMISSION)
        if not platform and (actor.tenant_id is None or not is_allowed(actor, TENANT_PERMISSION)):
            emit_audit("permission_denied", action=TENANT_PERMISSION)
            raise Forbidden(f"This credential lacks the permission {TENANT_PERMISSION!r}.")
        filters = audit_query.parse(args)
        tenant_id = None
        if not platform:
            audit_query.own_tenant_only(filters, actor.tenant_id, actor.tenant)
            tenant_id = actor.tenant_id
        items, total = audit_query.events(filters, tenant_id, *page_and_size(pagination_parameters))
        pagination_parameters.item_count = total
        return items
