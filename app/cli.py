"""The core's commands (db, keys, storage) and what every command shares (one JSON object with
--json, problems as one-line errors, a tenant from its slug); plugins add theirs.

The console script itself is ctxcloud.console (it builds the app)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
import flask
from flask.cli import with_appcontext

from ctxcloud import dev_secrets, keystore, signing_keys, storage_gc, storage_migrate
from ctxcloud.db import describe_database
from ctxcloud.errors import ProblemError
from ctxcloud.migrations import Migration, pending, upgrade
from ctxcloud.plugin_manager import merged_mapping
from ctxcloud.settings import ConfigError
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
    return [*keystore.MIGRATIONS, *signing_keys.MIGRATIONS, *plugin_migrations]


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
    """Master, data and token signing key commands."""


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


def _signing_keys() -> signing_keys.SigningKeys:
    keys = flask.current_app.extensions["ctxcloud"].signing_keys
    if keys is None:
        raise click.ClickException(
            "CTXCLOUD_JWT_ALGORITHM=HS256 signs with a shared secret: there are no signing "
            "keys to list or rotate"
        )
    return keys


@keys_group.command("signing-keys")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@with_appcontext
def keys_signing_keys(as_json: bool) -> None:
    """List the token signing keys with their states (standby, active, retired, removed)."""
    keys = _signing_keys()
    states = keys.states()
    emit(
        {"algorithm": keys.algorithm, "retire_after": keys.retire_after, "keys": states},
        as_json,
        "\n".join(
            f"{key['kid']}  {key['state']:<8}  {'' if key['held'] else '(not held here)'}".rstrip()
            for key in states
        )
        or "no signing keys yet: they are recorded on first use",
    )


@keys_group.command("rotate-signing")
@click.option(
    "--remove-retired",
    is_flag=True,
    help="A key leaked: remove every retired key at once, the one retired now included.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@with_appcontext
def keys_rotate_signing(remove_retired: bool, as_json: bool) -> None:
    """Make the oldest standby signing key active, retire the active one, and remove retired
    keys whose tokens have all expired. Development generates the standby key when none is
    waiting; production takes it from CTXCLOUD_JWT_SIGNING_KEYS."""
    keys = _signing_keys()
    app = flask.current_app
    try:
        moved = keys.rotate(remove_retired=remove_retired)
    except signing_keys.NoStandbyKey as exc:
        if not app.config.get("JWT_SIGNING_KEYS_FROM_DATA_DIR"):
            raise click.ClickException(str(exc)) from None
        kid, pem = signing_keys.new_signing_key(keys.algorithm)
        dev_secrets.add_signing_key(app.config["DATA_DIR"], keys.algorithm, kid, pem)
        keys.add_private_key(signing_keys.parse_signing_keys({kid: pem}, keys.algorithm)[kid])
        moved = keys.rotate(remove_retired=remove_retired)
    emit(
        moved,
        as_json,
        f"active: {moved['activated']}; retired: {', '.join(moved['retired']) or 'none'}; "
        f"removed: {', '.join(moved['removed']) or 'none'}",
    )


@keys_group.command("new-signing-key")
@click.option(
    "--algorithm",
    type=click.Choice(signing_keys.ALGORITHMS),
    default=signing_keys.ALGORITHMS[0],
    show_default=True,
)
def keys_new_signing_key(algorithm: str) -> None:
    """Print a new private signing key as one JSON object {kid: PEM}: a value of
    CTXCLOUD_JWT_SIGNING_KEYS (merge it into the current one to add the key as standby)."""
    kid, pem = signing_keys.new_signing_key(algorithm)
    click.echo(json.dumps({kid: pem}))


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


@storage_group.command("migrate")
@click.option("--to", "target_name", required=True, metavar="BACKEND", help="Backend to copy to.")
@click.option(
    "--to-setting",
    "target_settings",
    multiple=True,
    metavar="NAME=VALUE",
    help="A setting of the target only (e.g. S3_BUCKET=new-bucket); the others are the "
    "service's (CTXCLOUD_*), so the target's own settings can simply be set in the environment.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object at the end.")
@with_appcontext
def storage_migrate_command(
    target_name: str, target_settings: tuple[str, ...], as_json: bool
) -> None:
    """Copy every stored object to another backend, as ciphertext, verified and resumable.

    Run it again after an interruption, or after the service wrote more to the old backend:
    what the target already holds byte for byte is skipped. Exit status 1 if a copy failed.
    Then switch CTXCLOUD_STORAGE_BACKEND (docs/storage.md, "Moving to another backend").
    """
    app = flask.current_app
    ext = app.extensions["ctxcloud"]
    backends = merged_mapping(ext.pm.hook.storage_backends(), "storage backend")
    if target_name not in backends:
        raise click.BadParameter(
            f"{target_name!r} is not provided by any loaded plugin "
            f"(available: {', '.join(sorted(backends))})",
            param_hint="--to",
        )
    overrides: dict[str, Any] = {}
    for pair in target_settings:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            raise click.BadParameter(f"{pair!r} is not NAME=VALUE", param_hint="--to-setting")
        overrides[name.removeprefix("CTXCLOUD_")] = value
    source_name = str(app.config["STORAGE_BACKEND"])
    try:
        target = backends[target_name]({**app.config, **overrides})
        objects = list(ext.storage.scan(""))
        with migration_progress(objects, as_json) as progress:
            report = storage_migrate.migrate_objects(
                ext.storage,
                target,
                source_name=source_name,
                target_name=target_name,
                objects=objects,
                progress=progress,
            )
    except (ConfigError, StorageError) as exc:
        raise click.ClickException(str(exc)) from exc
    emit(report.as_dict(), as_json, report.describe())
    if report.failed:
        raise SystemExit(1)


@contextmanager
def migration_progress(objects: list, quiet: bool) -> Iterator[Any]:
    """A progress bar (bytes) on a terminal; plain lines (every 1,000 objects) otherwise;
    nothing with --json (stdout is one JSON object)."""
    total = sum(info.size for info in objects)
    if quiet:
        yield None
        return
    if sys.stderr.isatty():
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        columns = (BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
        with Progress(*columns, transient=False) as bar:
            task = bar.add_task("copying", total=total)
            yield lambda size, report: bar.advance(task, size)
        return

    def line(size: int, report: Any) -> None:
        done = report.copied + report.already_there + report.failed
        if done % 1000 == 0 or done == len(objects):
            click.echo(
                f"{done}/{len(objects)} objects ({report.copied} copied, "
                f"{report.already_there} already there, {report.failed} failed)",
                err=True,
            )

    yield line
