"""`ctxcloud oauth-clients create|list|delete|rotate-secret ...`."""

from __future__ import annotations

import click
from flask.cli import with_appcontext

from ctxcloud import emit, problems_as_click_errors, tenant_from_slug
from ctxcloud.plugins.auth_oauth import service
from ctxcloud.plugins.auth_oauth.schemas import ClientCreatedSchema, ClientSchema


def _names(value: str | None) -> list[str] | None:
    return None if value is None else [part.strip() for part in value.split(",") if part.strip()]


def _emit_secret(client, secret: str, as_json: bool, what: str) -> None:
    client.client_secret = secret
    emit(
        ClientCreatedSchema().dump(client),
        as_json,
        f"{what} OAuth client {client.name} ({client.client_id}); "
        f"client secret (shown once): {secret}",
    )


@click.group("oauth-clients")
def oauth_clients_group() -> None:
    """A tenant's OAuth clients (client-credentials grant)."""


@oauth_clients_group.command("create")
@click.option("--tenant", "tenant_slug", required=True, help="The tenant's slug.")
@click.option("--name", required=True)
@click.option("--scopes", required=True, help="Comma-separated, e.g. context:read,context:write")
@click.option("--project-ids", help="Comma-separated project ids its tokens are restricted to.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@with_appcontext
def create_client(
    tenant_slug: str, name: str, scopes: str, project_ids: str | None, as_json: bool
) -> None:
    """Create an OAuth client of a tenant; its secret is printed once."""
    tenant = tenant_from_slug(tenant_slug)
    with problems_as_click_errors():
        client, secret = service.create_client(
            tenant.id, name, _names(scopes) or [], _names(project_ids)
        )
    _emit_secret(client, secret, as_json, "created")


@oauth_clients_group.command("list")
@click.option("--tenant", "tenant_slug", required=True, help="The tenant's slug.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@with_appcontext
def list_clients(tenant_slug: str, as_json: bool) -> None:
    """List a tenant's live OAuth clients (never a secret)."""
    tenant = tenant_from_slug(tenant_slug)
    clients = list(service.all_clients_of(tenant.id))
    lines = [f"{c.client_id}  {c.name}  {','.join(c.scopes)}" for c in clients]
    emit(
        {"clients": ClientSchema(many=True).dump(clients)},
        as_json,
        "\n".join(lines) or "no OAuth clients",
    )


@oauth_clients_group.command("delete")
@click.option("--tenant", "tenant_slug", required=True, help="The tenant's slug.")
@click.argument("client_id")
@with_appcontext
def delete_client(tenant_slug: str, client_id: str) -> None:
    """Delete an OAuth client: its secret and tokens stop working at once."""
    tenant = tenant_from_slug(tenant_slug)
    with problems_as_click_errors():
        service.delete_client(tenant.id, client_id)
    click.echo(f"deleted OAuth client {client_id}")


@oauth_clients_group.command("rotate-secret")
@click.option("--tenant", "tenant_slug", required=True, help="The tenant's slug.")
@click.argument("client_id")
@click.option("--revoke-tokens", is_flag=True, help="Also revoke every token issued so far.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@with_appcontext
def rotate_secret(tenant_slug: str, client_id: str, revoke_tokens: bool, as_json: bool) -> None:
    """Give an OAuth client a new secret (printed once); the old one dies at once."""
    tenant = tenant_from_slug(tenant_slug)
    with problems_as_click_errors():
        client, secret = service.rotate_secret(tenant.id, client_id, revoke_tokens=revoke_tokens)
    _emit_secret(client, secret, as_json, "rotated the secret of")
