"""`ctxcloud api-keys create ...` and `ctxcloud platform-keys create ...`."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from ctxcloud import emit, problems_as_click_errors, tenant_from_slug
from ctxcloud.plugins.auth_apikey import service
from ctxcloud.plugins.auth_apikey.schemas import ApiKeyCreatedSchema


def _names(value: str | None) -> list[str] | None:
    return None if value is None else [part.strip() for part in value.split(",") if part.strip()]


def _emit_key(key, secret: str, as_json: bool) -> None:
    key.key = secret
    emit(
        ApiKeyCreatedSchema().dump(key),
        as_json,
        f"created API key {key.name} ({key.id}); key (shown once): {secret}",
    )


@click.group("api-keys")
def api_keys_group() -> None:
    """Tenant API key commands."""


@api_keys_group.command("create")
@click.option("--tenant", "tenant_slug", required=True, help="The tenant's slug.")
@click.option("--name", required=True)
@click.option("--scopes", required=True, help="Comma-separated, e.g. context:read,context:write")
@click.option("--project-ids", help="Comma-separated project ids the key is restricted to.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@with_appcontext
def create_api_key(
    tenant_slug: str, name: str, scopes: str, project_ids: str | None, as_json: bool
) -> None:
    """Create an API key of a tenant; the key is printed once."""
    tenant = tenant_from_slug(tenant_slug)
    with problems_as_click_errors():
        key, secret = service.create_api_key(
            tenant.id, name, _names(scopes) or [], _names(project_ids)
        )
    _emit_key(key, secret, as_json)


@click.group("platform-keys")
def platform_keys_group() -> None:
    """Platform operator key commands."""


@platform_keys_group.command("create")
@click.option("--name", required=True)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@with_appcontext
def create_platform_key(name: str, as_json: bool) -> None:
    """Create a platform:admin key (tenant CRUD, plugins); the key is printed once."""
    with problems_as_click_errors():
        key, secret = service.create_platform_key(name)
    _emit_key(key, secret, as_json)
