"""OIDC federation: a tenant's own identity provider signs its people in.

A tenant admin registers providers (issuer, audiences, key set, claim rules); an access
token of a registered provider is then accepted as ``Authorization: Bearer`` and becomes a
``federated`` actor of that tenant with the role the rules give. docs/authentication.md
("Federation: your own identity provider") is the user's guide.
"""

from __future__ import annotations

from ctxcloud import hookimpl
from ctxcloud.plugins.auth_oidc.migrations import MIGRATIONS
from ctxcloud.plugins.auth_oidc.settings import DEFAULTS


@hookimpl
def config_defaults():
    return DEFAULTS


@hookimpl
def startup(app):
    """Read the settings now: a bad value stops the start, naming the variable."""
    from ctxcloud.plugins.auth_oidc.state import build

    build(app)


@hookimpl
def register_blueprints(app):
    from ctxcloud.plugins.auth_oidc.routes import blp

    return [blp]


@hookimpl
def database_migrations():
    return MIGRATIONS


@hookimpl
def problem_responses():
    from ctxcloud.plugins.auth_oidc.problems import PROBLEM_RESPONSES

    return PROBLEM_RESPONSES


@hookimpl
def authenticate(request):
    """Claim bearer JWTs of another issuer than ours; verify them or refuse them (401)."""
    from ctxcloud.plugins.auth_oidc.verify import presented_token, verify_federated_token

    found = presented_token(request)
    return None if found is None else verify_federated_token(*found)


@hookimpl
def tenant_deleting(tenant):
    from ctxcloud.plugins.auth_oidc.service import delete_tenant_providers

    delete_tenant_providers(tenant.id)
