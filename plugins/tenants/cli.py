"""`ctxcloud tenants create|config|usage|purge`, and the CLI's error shape."""

from __future__ import annotations

import json
from typing import Any

import click
from flask.cli import with_appcontext

from ctxcloud import emit, problems_as_click_errors, tenancy, tenant_from_slug
from ctxcloud.plugins.tenants.schemas import TenantSchema, UsageSchema
from ctxcloud.tenancy import DELETING, tenant_options


@click.group("tenants")
def tenants_group() -> None:
    """Tenant commands."""


@tenants_group.command("create")
@click.argument("slug")
@click.option("--name", help="Display name (defaults to the slug).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@with_appcontext
def create_tenant(slug: str, name: str | None, as_json: bool) -> None:
    """Create a tenant."""
    with problems_as_click_errors():
        tenant = tenancy.create_tenant(slug, name)
    emit(TenantSchema().dump(tenant), as_json, f"created tenant {tenant.slug} ({tenant.id})")


@tenants_group.command("purge")
@click.argument("slug")
@click.option("--yes", is_flag=True, help="Confirm deleting a tenant that is not yet deleting.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@with_appcontext
def purge_tenant(slug: str, yes: bool, as_json: bool) -> None:
    """Finish deleting a tenant (or delete one, with --yes): data key, rows, objects."""
    tenant = tenant_from_slug(slug)
    if tenant.status != DELETING and not yes:
        raise click.UsageError(
            f"tenant {slug!r} is {tenant.status}, not being deleted; add --yes to delete it"
        )
    with problems_as_click_errors():
        tenancy.delete_tenant(tenant)
    emit(
        {"id": tenant.id, "slug": tenant.slug, "deleted": True},
        as_json,
        f"deleted tenant {tenant.slug} ({tenant.id})",
    )


def _assignments(pairs: tuple[str, ...], kind: str) -> dict[str, Any]:
    """NAME=VALUE pairs; VALUE is JSON when it parses (20, "text/*", ["a"]), `null` resets."""
    values: dict[str, Any] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{pair!r} is not NAME=VALUE", param_hint=f"--{kind}")
        try:
            values[name] = json.loads(raw)
        except ValueError:
            values[name] = raw
    return values


@tenants_group.command("config")
@click.argument("slug")
@click.option("--quota", "quotas", multiple=True, help="NAME=VALUE; null returns to the default.")
@click.option("--setting", "settings", multiple=True, help="NAME=VALUE; null: the default.")
@with_appcontext
def tenant_config(slug: str, quotas: tuple[str, ...], settings: tuple[str, ...]) -> None:
    """Show a tenant's quotas and settings (JSON), or change some first."""
    tenant = tenant_from_slug(slug)
    changes = {
        kind: values
        for kind, values in (
            ("quotas", _assignments(quotas, "quota")),
            ("settings", _assignments(settings, "setting")),
        )
        if values
    }
    with problems_as_click_errors():
        if changes:
            tenant = tenancy.update_config(tenant.id, tenant_options().validate_change(changes))
    click.echo(json.dumps(tenant.effective_config, sort_keys=True))


@tenants_group.command("usage")
@click.argument("slug")
@with_appcontext
def tenant_usage(slug: str) -> None:
    """Print a tenant's usage (JSON): projects, entries, stored bytes, users, API keys."""
    tenant = tenant_from_slug(slug)
    click.echo(json.dumps(UsageSchema().dump(tenancy.usage(tenant)), sort_keys=True))
