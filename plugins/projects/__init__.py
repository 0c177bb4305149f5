"""Projects: per-tenant containers of versioned context, addressed by id or slug."""

from __future__ import annotations

from app.hookspecs import hookimpl
from plugins.projects.migrations import MIGRATIONS


@hookimpl
def register_blueprints(app):
    from plugins.projects.routes import blp

    return [blp]


@hookimpl
def database_migrations():
    return MIGRATIONS


@hookimpl
def tenant_deleting(tenant):
    from plugins.projects.service import delete_tenant_projects

    return delete_tenant_projects(tenant.id)


@hookimpl
def tenant_usage(tenant):
    from plugins.projects.service import usage

    return usage(tenant.id)
