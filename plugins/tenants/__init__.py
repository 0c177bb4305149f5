"""Tenants, for platform operators: the admin routes and CLI over the core's tenancy, the
caller's own tenant (`/tenant`), and whoami."""

from __future__ import annotations

from ctxcloud import hookimpl


@hookimpl
def register_blueprints(app):
    from ctxcloud.plugins.tenants.routes import own_tenant_blp, tenants_blp, whoami_blp

    return [tenants_blp, own_tenant_blp, whoami_blp]


@hookimpl
def register_commands(cli):
    from ctxcloud.plugins.tenants.cli import tenants_group

    cli.add_command(tenants_group)
