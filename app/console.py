"""The ``ctxcloud`` console script: a Flask CLI group on create_app, with every app's commands."""

from __future__ import annotations

import click
import flask
from flask.cli import FlaskGroup

from ctxcloud.cli import keys_group
from ctxcloud.factory import create_app
from ctxcloud.settings import ConfigError


def _create_app() -> flask.Flask:
    return create_app()


@click.group(
    cls=FlaskGroup,
    create_app=_create_app,
    add_default_commands=False,
    add_version_option=False,
    load_dotenv=False,
    set_debug_flag=False,
)
def cli_group() -> None:
    """ctxcloud: versioned project context, multi-tenant."""


# Found before any app is built: `keys new-signing-key` makes the key a production app
# refuses to start without. The other key commands build the app when they run.
cli_group.add_command(keys_group)


def main() -> None:
    """The console script: a configuration problem is one clear line and exit status 2."""
    try:
        cli_group(standalone_mode=True)
    except ConfigError as exc:
        click.echo(f"ctxcloud: configuration error: {exc}", err=True)
        raise SystemExit(2) from None
