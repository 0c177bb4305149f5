"""Users: people of a tenant with a role (viewer, member, admin, owner) and a password."""

from __future__ import annotations

from ctxcloud.hookspecs import hookimpl
from ctxcloud.plugins.users.migrations import MIGRATIONS


@hookimpl
def config_defaults():
    # argon2id costs (RFC 9106's second recommendation: 64 MiB, 3 passes, 4 lanes).
    # bandit B105 reads these names as passwords: they are cost parameters, not secrets.
    return {
        "PASSWORD_HASH_TIME_COST": 3,  # nosec B105
        "PASSWORD_HASH_MEMORY_COST": 65536,  # nosec B105
        "PASSWORD_HASH_PARALLELISM": 4,  # nosec B105
    }


@hookimpl
def register_blueprints(app):
    from ctxcloud.plugins.users.routes import blp

    return [blp]


@hookimpl
def register_commands(cli):
    from ctxcloud.plugins.users.cli import users_group

    cli.add_command(users_group)


@hookimpl
def database_migrations():
    return MIGRATIONS


@hookimpl
def tenant_deleting(tenant):
    from ctxcloud.plugins.users.service import delete_tenant_users

    delete_tenant_users(tenant.id)


@hookimpl
def tenant_usage(tenant):
    from ctxcloud.plugins.users.service import usage

    return usage(tenant.id)
