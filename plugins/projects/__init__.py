"""Projects: per-tenant containers of versioned context, addressed by id or slug."""

from __future__ import annotations

from ctxcloud.hookspecs import hookimpl
from ctxcloud.plugins.projects.migrations import MIGRATIONS


@hookimpl
def register_blueprints(app):
    from ctxcloud.plugins.projects.routes import blp

    return [blp]


@hookimpl
def database_migrations():
    return MIGRATIONS


@hookimpl
def tenant_deleting(tenant):
    from ctxcloud.plugins.projects.service import delete_tenant_projects

    return delete_tenant_projects(tenant.id)


@hookimpl
def tenant_usage(tenant):
    from ctxcloud.plugins.projects.service import usage

    return usage(tenant.id)
