"""`ctxcloud users create --tenant SLUG --username NAME --role ROLE [--password-stdin] [--json]`."""

from __future__ import annotations

import sys

import click
from flask.cli import with_appcontext

from ctxcloud import ROLES, emit, problems_as_click_errors, tenant_from_slug
from ctxcloud.plugins.users import service
from ctxcloud.plugins.users.passwords import generate_password
from ctxcloud.plugins.users.schemas import UserSchema


@click.group("users")
def users_group() -> None:
    """User commands."""


@users_group.command("create")
@click.option("--tenant", "tenant_slug", required=True, help="The tenant's slug.")
@click.option("--username", required=True)
@click.option("--role", required=True, type=click.Choice(ROLES))
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from stdin; without it a strong one is generated and printed once.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@with_appcontext
def create_user(
    tenant_slug: str, username: str, role: str, password_stdin: bool, as_json: bool
) -> None:
    """Create a user of a tenant."""
    tenant = tenant_from_slug(tenant_slug)
    password = sys.stdin.readline().rstrip("\r\n") if password_stdin else generate_password()
    with problems_as_click_errors():
        user = service.create_user(tenant.id, username, password, role)
    data = UserSchema().dump(user)
    human = f"created user {user.username} ({user.id}) with the role {user.role}"
    if not password_stdin:
        data["password"] = password
        human += f"\npassword (shown once): {password}"
    emit(data, as_json, human)
