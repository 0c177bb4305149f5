"""`ctxcloud tenants create SLUG [--name NAME] [--json]`, and the CLI's error shape."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click
from flask.cli import with_appcontext

from app.cli import emit
from app.errors import ProblemError
from plugins.tenants import service
from plugins.tenants.models import DELETING, Tenant
from plugins.tenants.schemas import TenantSchema


@contextmanager
def problems_as_click_errors() -> Iterator[None]:
    """A service's typed error becomes a one-line message and exit status 1."""
    try:
        yield
    except ProblemError as exc:
        errors = exc.extra.get("errors") or {}
        details = "; ".join(
            f"{field}: {' '.join(map(str, messages)) if isinstance(messages, list) else messages}"
            for field, messages in errors.items()
        )
        raise click.ClickException(f"{exc.detail} {details}".strip()) from None


def tenant_from_slug(slug: str) -> Tenant:
    tenant = service.tenant_by_slug(slug)
    if tenant is None:
        raise click.ClickException(f"no tenant with the slug {slug!r}")
    return tenant


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
        tenant = service.create_tenant(slug, name)
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
        service.delete_tenant(tenant)
    emit(
        {"id": tenant.id, "slug": tenant.slug, "deleted": True},
        as_json,
        f"deleted tenant {tenant.slug} ({tenant.id})",
    )
