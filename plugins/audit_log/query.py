"""Reading the audit log: the filters of `GET /api/v1/audit-events`, checked (400) and applied."""

from __future__ import annotations

import datetime
import re
from collections.abc import Mapping
from typing import Any

import peewee

from ctxcloud import BadRequest, NotFound, tenancy
from ctxcloud.plugins.audit_log.models import PLATFORM_CHAIN, AuditEvent

TYPE = re.compile(r"^[a-z][a-z0-9_.]{0,63}$")
ACTOR = re.compile(r"^(?:([a-z][a-z_]{0,31}):)?([A-Za-z0-9_.@:/+-]{0,299}[A-Za-z0-9_.@/+-])$")
TENANT = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
MAX_TYPES = 20


def _moment(name: str, value: str) -> datetime.datetime:
    try:
        moment = datetime.datetime.fromisoformat(value.strip().replace("z", "Z"))
    except ValueError:
        raise BadRequest(
            f"{name}: not an RFC 3339 time (e.g. 2026-12-01T00:00:00Z): {value[:64]!r}."
        ) from None
    if moment.tzinfo is None:
        raise BadRequest(f"{name}: give the offset, e.g. 2026-12-01T00:00:00Z.")
    return moment.astimezone(datetime.UTC).replace(tzinfo=None)


def parse(query: Mapping[str, Any]) -> dict[str, Any]:
    """The filters of a query string, or 400 naming the bad parameter."""
    filters: dict[str, Any] = {}
    if query.get("type") is not None:
        types = [part.strip() for part in query["type"].split(",") if part.strip()]
        if not types or len(types) > MAX_TYPES or not all(TYPE.match(t) for t in types):
            raise BadRequest(
                "type: one or more event types, comma-separated (at most 20), "
                "each lowercase letters, digits, '_' and '.', e.g. login_failed,link.used."
            )
        filters["types"] = types
    if query.get("actor") is not None:
        found = ACTOR.match(query["actor"].strip())
        if not found:
            raise BadRequest("actor: an actor as kind:id (e.g. user:usr_...) or an id.")
        filters["actor"] = found.groups()
    for name in ("since", "until"):
        if query.get(name) is not None:
            filters[name] = _moment(name, query[name])
    if "since" in filters and "until" in filters and filters["since"] > filters["until"]:
        raise BadRequest("since is after until.")
    if query.get("tenant") is not None:
        if not TENANT.match(query["tenant"]):
            raise BadRequest("tenant: a tenant's id or slug, or `platform`.")
        filters["tenant"] = query["tenant"]
    return filters


def tenant_chain(value: str) -> str:
    """A platform key's `tenant=` (an id, a slug, or ``platform``) as the chain it names."""
    if value == PLATFORM_CHAIN:
        return value
    by_slug = tenancy.tenant_by_slug(value)
    return by_slug.id if by_slug is not None else value


def events(
    filters: Mapping[str, Any], tenant_id: str | None, page: int, page_size: int
) -> tuple[list[AuditEvent], int]:
    """Newest first. `tenant_id` None: every chain (a platform key), else that tenant's only."""
    # A tenant's chain holds exactly its rows with that tenant_id, and the platform chain the
    # rows without one: filtering on tenant_id lets the (tenant_id, id) index serve the order.
    query = AuditEvent.select()
    if tenant_id is None and "tenant" in filters:
        chain = tenant_chain(filters["tenant"])
        tenant_id = None if chain == PLATFORM_CHAIN else chain
        query = query.where(
            AuditEvent.tenant_id.is_null()
            if tenant_id is None
            else AuditEvent.tenant_id == tenant_id
        )
    elif tenant_id is not None:
        query = query.where(AuditEvent.tenant_id == tenant_id)
    if "types" in filters:
        query = query.where(AuditEvent.type.in_(filters["types"]))
    if "actor" in filters:
        kind, actor_id = filters["actor"]
        condition: peewee.Expression = AuditEvent.actor_id == actor_id
        if kind is not None:
            condition &= AuditEvent.actor_kind == kind
        query = query.where(condition)
    if "since" in filters:
        query = query.where(AuditEvent.occurred_at >= filters["since"])
    if "until" in filters:
        query = query.where(AuditEvent.occurred_at <= filters["until"])
    items = list(query.order_by(AuditEvent.id.desc()).paginate(page, page_size))
    return items, query.count()


def own_tenant_only(filters: Mapping[str, Any], tenant_id: str, tenant: Any) -> None:
    """A tenant's credential may name its own tenant in `tenant=`; any other is a 404."""
    wanted = filters.get("tenant")
    if wanted is not None and wanted not in (tenant_id, getattr(tenant, "slug", None)):
        raise NotFound("No such tenant.")
