"""Tenants: the tenant model and its API, whoami, and the credential revocation mechanism."""

from __future__ import annotations

from ctxcloud.hookspecs import hookimpl
from ctxcloud.plugins.tenants.migrations import MIGRATIONS


@hookimpl
def config_defaults():
    return {
        # Seconds a process trusts a verified credential before re-reading it (revocations
        # reach every process at once through the generation counters regardless).
        "AUTH_CACHE_TTL": 30,
        # Verified credentials kept per process and kind.
        "AUTH_CACHE_MAX_ENTRIES": 10000,
        # Quotas every tenant gets unless its config overrides them (None: unlimited).
        "MAX_PROJECTS": None,
        "MAX_STORAGE_BYTES": None,
        "MAX_USERS": None,
        "MAX_API_KEYS": None,
        # Requests per window of all a tenant's credentials together (None: no ceiling).
        "RATE_LIMIT_TENANT": None,
        # Settings every tenant gets unless its owner changes them.
        "DEFAULT_CONTENT_TYPE": "application/octet-stream",
        "ALLOWED_CONTENT_TYPES": None,
    }


@hookimpl
def register_blueprints(app):
    from ctxcloud.plugins.tenants.routes import own_tenant_blp, tenants_blp, whoami_blp

    return [tenants_blp, own_tenant_blp, whoami_blp]


@hookimpl
def register_commands(cli):
    from ctxcloud.plugins.tenants.cli import tenants_group

    cli.add_command(tenants_group)


@hookimpl
def database_migrations():
    return MIGRATIONS


@hookimpl
def startup(app):
    from ctxcloud.plugins.tenants.config import check_service_defaults
    from ctxcloud.plugins.tenants.revocation import init_credentials

    check_service_defaults(app.config)
    init_credentials(app)


@hookimpl
def tenant_resolved(tenant, actor):
    from ctxcloud.plugins.tenants.service import refuse_suspended

    refuse_suspended(tenant)
