"""JWT logins for users (flask-jwt-extended): token, refresh with rotation, revoke."""

from __future__ import annotations

from ctxcloud.hookspecs import hookimpl
from ctxcloud.plugins.auth_jwt.migrations import MIGRATIONS
from ctxcloud.plugins.auth_jwt.verify import presented_token, verify_access_token
from flask_jwt_extended import JWTManager


@hookimpl
def config_defaults():
    return {
        "JWT_ACCESS_TOKEN_EXPIRES": 15 * 60,
        "JWT_REFRESH_TOKEN_EXPIRES": 30 * 24 * 3600,
        "JWT_ISSUER": "ctxcloud",
        "JWT_AUDIENCE": "ctxcloud-api",
    }


@hookimpl
def register_blueprints(app):
    from ctxcloud.plugins.auth_jwt.routes import blp

    return [blp]


@hookimpl
def database_migrations():
    return MIGRATIONS


@hookimpl
def startup(app):
    """flask-jwt-extended on this app only: HS256, our issuer and audience on both ends."""
    app.config.setdefault("JWT_TOKEN_LOCATION", ("headers",))
    app.config.setdefault("JWT_COOKIE_CSRF_PROTECT", False)  # no cookies: no csrf claim
    for end in ("ENCODE", "DECODE"):
        app.config.setdefault(f"JWT_{end}_ISSUER", app.config["JWT_ISSUER"])
        app.config.setdefault(f"JWT_{end}_AUDIENCE", app.config["JWT_AUDIENCE"])
    JWTManager(app)


@hookimpl(trylast=True)
def authenticate(request):
    """Any other bearer credential is an access token: verified here or refused (401)."""
    token = presented_token(request)
    return None if token is None else verify_access_token(token)


@hookimpl
def tenant_deleting(tenant):
    from ctxcloud.plugins.auth_jwt.service import delete_tenant_families

    delete_tenant_families(tenant.id)
