"""API keys: service credentials (``Authorization: Bearer ctx_...`` or ``X-API-Key``)."""

from __future__ import annotations

from ctxcloud import Count, Quota, hookimpl
from ctxcloud.plugins.auth_apikey.migrations import MIGRATIONS
from ctxcloud.plugins.auth_apikey.verify import presented_key, verify_api_key


@hookimpl
def config_defaults():
    # Seconds between two writes of a key's last-used time.
    return {"API_KEY_LAST_USED_INTERVAL": 60, "MAX_API_KEYS": None}


@hookimpl
def tenant_options():
    return [
        Quota(
            "max_api_keys",
            Count(0),
            default="MAX_API_KEYS",
            description="Live (unrevoked, unexpired) API keys the tenant may have",
            example=200,
        )
    ]


@hookimpl
def register_blueprints(app):
    from ctxcloud.plugins.auth_apikey.routes import blp

    return [blp]


@hookimpl
def register_commands(cli):
    from ctxcloud.plugins.auth_apikey.cli import api_keys_group, platform_keys_group

    cli.add_command(api_keys_group)
    cli.add_command(platform_keys_group)


@hookimpl
def database_migrations():
    return MIGRATIONS


@hookimpl
def authenticate(request):
    """Claim requests carrying an API key; a bad key is 401 and never falls through."""
    key = presented_key(request)
    return None if key is None else verify_api_key(key)


@hookimpl
def tenant_deleting(tenant):
    from ctxcloud.plugins.auth_apikey.service import delete_tenant_keys

    delete_tenant_keys(tenant.id)


@hookimpl
def tenant_usage(tenant):
    from ctxcloud.plugins.auth_apikey.service import usage

    return usage(tenant.id)
