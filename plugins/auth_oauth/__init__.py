"""OAuth 2 clients of a tenant and the client-credentials grant (RFC 6749 §4.4), with token
introspection (RFC 7662), revocation (RFC 7009) and server metadata (RFC 8414), by Authlib.

A client's token is a JWT signed like every token of the service (verifiable with
``/.well-known/jwks.json``); it carries the client's tenant, holds the scopes it was granted
within the client's, obeys the client's project restriction and spends the client's
rate-limit budget.
"""

from __future__ import annotations

import limits

from ctxcloud import ConfigError, Count, Quota, hookimpl
from ctxcloud.plugins.auth_oauth.migrations import MIGRATIONS
from ctxcloud.plugins.auth_oauth.verify import authenticate_client_token


@hookimpl
def config_defaults():
    return {
        # Seconds a client-credentials token lives (covered by a signing key's retirement).
        # bandit B105 reads "TOKEN" in these names as a password: lifetimes and limits.
        "JWT_CLIENT_TOKEN_EXPIRES": 3600,  # nosec B105
        # Client authentications per window at the token, introspection and revocation
        # endpoints, per client address and per client id.
        "RATE_LIMIT_OAUTH_TOKEN": "60/minute",  # nosec B105
        # The `issuer` of the RFC 8414 metadata (the service's public URL); None: JWT_ISSUER
        # when it is a URL, else the request's root URL.
        "OAUTH_ISSUER": None,
        "MAX_OAUTH_CLIENTS": None,
    }


@hookimpl
def tenant_options():
    return [
        Quota(
            "max_oauth_clients",
            Count(0),
            default="MAX_OAUTH_CLIENTS",
            description="Live OAuth clients the tenant may have",
            example=50,
        )
    ]


@hookimpl
def register_blueprints(app):
    from ctxcloud.plugins.auth_oauth.protocol import build_server
    from ctxcloud.plugins.auth_oauth.protocol_routes import blp as protocol_blp
    from ctxcloud.plugins.auth_oauth.protocol_routes import metadata_blp
    from ctxcloud.plugins.auth_oauth.routes import blp

    build_server(app)
    return [blp, protocol_blp, metadata_blp]


@hookimpl
def startup(app):
    """A malformed limit stops the start, rather than leaving the token endpoint unguarded."""
    value = app.config["RATE_LIMIT_OAUTH_TOKEN"]
    try:
        limits.parse_many(str(value))
    except ValueError:
        raise ConfigError(
            f"CTXCLOUD_RATE_LIMIT_OAUTH_TOKEN is not a rate limit (e.g. 60/minute): {value!r}"
        ) from None
    lifetime = app.config["JWT_CLIENT_TOKEN_EXPIRES"]
    if not isinstance(lifetime, int) or isinstance(lifetime, bool) or lifetime <= 0:
        raise ConfigError("CTXCLOUD_JWT_CLIENT_TOKEN_EXPIRES must be a positive number of seconds")


@hookimpl
def register_commands(cli):
    from ctxcloud.plugins.auth_oauth.cli import oauth_clients_group

    cli.add_command(oauth_clients_group)


@hookimpl
def database_migrations():
    return MIGRATIONS


@hookimpl
def authenticate(request):
    """Claim client-credentials tokens of ours; a bad one is 401 and never falls through."""
    return authenticate_client_token(request)


@hookimpl
def tenant_deleting(tenant):
    from ctxcloud.plugins.auth_oauth.service import delete_tenant_clients

    delete_tenant_clients(tenant.id)


@hookimpl
def tenant_usage(tenant):
    from ctxcloud.plugins.auth_oauth.service import usage

    return usage(tenant.id)
