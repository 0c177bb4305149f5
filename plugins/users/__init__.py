"""Users: people of a tenant with a role (viewer, member, admin, owner) and a password, and
their logins: JWT access tokens (flask-jwt-extended) with rotating refresh tokens, revoked
at once. One feature: a login is a user's, and a token is only as good as its user."""

from __future__ import annotations

from ctxcloud import Count, Quota, hookimpl
from ctxcloud.plugins.users.migrations import MIGRATIONS
from ctxcloud.plugins.users.verify import presented_token, verify_access_token


@hookimpl
def config_defaults():
    # argon2id costs (RFC 9106's second recommendation: 64 MiB, 3 passes, 4 lanes).
    # bandit B105 reads these names as passwords: they are cost parameters, not secrets.
    return {
        "PASSWORD_HASH_TIME_COST": 3,  # nosec B105
        "PASSWORD_HASH_MEMORY_COST": 65536,  # nosec B105
        "PASSWORD_HASH_PARALLELISM": 4,  # nosec B105
        "MAX_USERS": None,
        "JWT_ACCESS_TOKEN_EXPIRES": 15 * 60,
        "JWT_REFRESH_TOKEN_EXPIRES": 30 * 24 * 3600,
    }


@hookimpl
def tenant_options():
    return [
        Quota(
            "max_users",
            Count(0),
            default="MAX_USERS",
            description="Users the tenant may have",
            example=50,
        )
    ]


@hookimpl
def register_blueprints(app):
    from ctxcloud.plugins.users.login_routes import blp as logins_blp
    from ctxcloud.plugins.users.routes import blp

    return [blp, logins_blp]


@hookimpl
def register_commands(cli):
    from ctxcloud.plugins.users.cli import users_group

    cli.add_command(users_group)


@hookimpl
def database_migrations():
    return MIGRATIONS


@hookimpl(trylast=True)
def authenticate(request):
    """Any other bearer credential is an access token: verified here or refused (401)."""
    token = presented_token(request)
    return None if token is None else verify_access_token(token)


@hookimpl
def tenant_deleting(tenant):
    from ctxcloud.plugins.users.logins import delete_tenant_families
    from ctxcloud.plugins.users.service import delete_tenant_users

    delete_tenant_families(tenant.id)
    delete_tenant_users(tenant.id)


@hookimpl
def tenant_usage(tenant):
    from ctxcloud.plugins.users.service import usage

    return usage(tenant.id)
