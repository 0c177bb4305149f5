"""`ctxcloud tenants create SLUG [--name NAME] [--json]`, and the CLI's error shape."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click
from flask.cli import with_appcontext

from app.cli import emit
from app.errors import ProblemError
from plugins.tenants import service
from plugins.tenants.models import Tenant
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
