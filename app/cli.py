"""The core's commands (db, keys, storage) and what every command shares (one JSON object with
--json, problems as one-line errors, a tenant from its slug); plugins add theirs.

The console script itself is ctxcloud.console (it builds the app)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
import flask
from flask.cli import with_appcontext

from ctxcloud import keystore, storage_gc
from ctxcloud.db import describe_database
from ctxcloud.errors import ProblemError
from ctxcloud.migrations import Migration, pending, upgrade
from ctxcloud.storage import StorageError
from ctxcloud.tenancy.lifecycle import tenant_by_slug
from ctxcloud.tenancy.models import Tenant

# Below this, `storage gc` warns: an upload in progress (or its commit) may outlast the grace.
MIN_SAFE_GRACE = 3600.0


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
    """The tenant of a command's SLUG argument; a clear error when there is none."""
    tenant = tenant_by_slug(slug)
    if tenant is None:
        raise click.ClickException(f"no tenant with the slug {slug!r}")
    return tenant


def emit(data: dict[str, Any], as_json: bool, human: str) -> None:
    """Print exactly one JSON object with --json, a human line otherwise."""
    if as_json:
        click.echo(json.dumps(data, default=str))
    else:
        click.echo(human)


def all_migrations() -> list[Migration]:
    """The core's migrations and every loaded plugin's."""
    pm = flask.current_app.extensions["ctxcloud"].pm
    plugin_migrations = [m for result in pm.hook.database_migrations() for m in (result or [])]
    return [*keystore.MIGRATIONS, *plugin_migrations]


@click.group("db")
def db_group() -> None:
    """Database schema commands."""


@db_group.command("upgrade")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@with_appcontext
def db_upgrade(as_json: bool) -> None:
    """Create or migrate the schema (idempotent)."""
    db = flask.current_app.extensions["ctxcloud"].database
    applied_now = upgrade(db, all_migrations())
    db.close()
    emit(
        {"database": describe_database(db), "applied": applied_now},
        as_json,
        f"{describe_database(db)}: applied {len(applied_now)} migration(s)"
        + "".join(f"\n  {m}" for m in applied_now),
    )


@db_group.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@with_appcontext
def db_status(as_json: bool) -> None:
    """List migrations not yet applied (exit 1 when some are pending)."""
    db = flask.current_app.extensions["ctxcloud"].database
    waiting = pending(db, all_migrations())
    db.close()
    emit(
        {"database": describe_database(db), "pending": waiting},
        as_json,
        f"{describe_database(db)}: {len(waiting)} pending" + "".join(f"\n  {m}" for m in waiting),
    )
    if waiting:
        raise SystemExit(1)


@click.group("keys")
def keys_group() -> None:
    """Master and data key commands."""


@keys_group.command("rotate-master")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@with_appcontext
def keys_rotate_master(as_json: bool) -> None:
    """Re-wrap every tenant data key under the active master key (objects are untouched)."""
    store = keystore.current_keystore()
    rotated = store.rotate_master()
    in_use = store.master_keys_in_use()
    emit(
        {"active": store.keyring.active_id, "rotated": rotated, "in_use": in_use},
        as_json,
        f"re-wrapped {rotated} data key(s) under {store.keyring.active_id}; "
        f"data keys per master key: {in_use}",
    )


@click.group("storage")
def storage_group() -> None:
    """Storage maintenance commands."""


@storage_group.command("gc")
@click.option("--delete", is_flag=True, help="Remove the orphans and abort old incomplete uploads.")
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=storage_gc.DEFAULT_GRACE_SECONDS,
    show_default=True,
    metavar="SECONDS",
    help="Never touch objects or uploads younger than this (a write in flight stores its "
    "object before it commits). Keep it above the longest upload.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@with_appcontext
def storage_gc_command(delete: bool, grace: float, as_json: bool) -> None:
    """Find orphaned objects (stored, never recorded) and, with --delete, remove them.

    An orphan is what a process killed between storing an object and committing its record
    leaves behind. A dry run by default; exit status 1 if a removal failed.
    """
    ext = flask.current_app.extensions["ctxcloud"]
    if grace < MIN_SAFE_GRACE:
        click.echo(
            f"warning: --grace {grace:g} is under an hour: an upload still in progress may "
            "look orphaned",
            err=True,
        )
    try:
        report = storage_gc.collect_garbage(ext.storage, ext.pm, grace=grace, delete=delete)
    except (storage_gc.GcRefused, StorageError) as exc:
        raise click.ClickException(str(exc)) from exc
    finally:
        ext.database.close()
    emit(report.as_dict(), as_json, report.describe())
    if report.failures:
        raise SystemExit(1)
