"""`ctxcloud projects export` and `ctxcloud projects import`: a project as one archive file,
and back, on this instance or another (docs/export-import.md)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import click
from flask.cli import with_appcontext

from ctxcloud import tenancy
from ctxcloud.plugins.context import archive_crypto

PLAINTEXT_WARNING = (
    "warning: {file} holds every entry of every kept revision in plaintext: anyone who can "
    "read the file reads the project (encrypt it with --passphrase-file or --encrypt)"
)


@click.group("projects")
def projects_group() -> None:
    """Project commands: export a project to an archive, import one."""


def _passphrase_from(path: str) -> bytes:
    data = Path(path).read_bytes()
    if data.endswith(b"\r\n"):
        data = data[:-2]
    elif data.endswith(b"\n"):
        data = data[:-1]
    return data


def _checked(passphrase: bytes, minimum: int) -> bytes:
    if not minimum <= len(passphrase) <= archive_crypto.MAX_PASSPHRASE_BYTES:
        raise click.ClickException(
            f"the passphrase must be {minimum} to {archive_crypto.MAX_PASSPHRASE_BYTES} bytes"
        )
    return passphrase


@projects_group.command("export")
@click.option("--tenant", "tenant_slug", required=True, help="The tenant's slug.")
@click.option(
    "--passphrase-file",
    type=click.Path(exists=True, dir_okay=False),
    help="Encrypt the archive with the passphrase in this file (one line).",
)
@click.option("--encrypt", is_flag=True, help="Encrypt the archive with a passphrase asked for.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.argument("project")
@click.argument("file", type=click.Path(dir_okay=False, writable=True))
@with_appcontext
def export_command(
    tenant_slug: str,
    passphrase_file: str | None,
    encrypt: bool,
    as_json: bool,
    project: str,
    file: str,
) -> None:
    """Write PROJECT (slug or id) of the tenant, every kept revision and entry, to FILE.

    Plaintext unless --passphrase-file or --encrypt is given (a warning says so).
    """
    from ctxcloud import emit, emit_audit, problems_as_click_errors, tenant_from_slug
    from ctxcloud.plugins.context import export

    tenant = tenant_from_slug(tenant_slug)
    found = export.find_project(tenant.id, project)
    if found is None:
        raise click.ClickException(f"no project {project!r} in the tenant {tenant_slug!r}")
    passphrase = None
    if passphrase_file:
        passphrase = _checked(
            _passphrase_from(passphrase_file), archive_crypto.MIN_PASSPHRASE_BYTES
        )
    elif encrypt:
        typed = click.prompt("Passphrase", hide_input=True, confirmation_prompt=True, err=True)
        passphrase = _checked(typed.encode(), archive_crypto.MIN_PASSPHRASE_BYTES)
    else:
        click.echo(PLAINTEXT_WARNING.format(file=file), err=True)
    plan = export.plan(found)
    target = Path(file)
    partial = target.with_name(f".{target.name}.part")
    size = 0
    try:
        with problems_as_click_errors(), open(partial, "wb") as out:
            for chunk in export.export_chunks(tenant.id, plan, passphrase):
                out.write(chunk)
                size += len(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, target)
        emit_audit(
            "project_exported",
            tenant_id=tenant.id,
            project_id=found.id,
            revision=plan.head,
            encrypted=passphrase is not None,
        )
    except export.ExportFailed as exc:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise click.ClickException(str(exc)) from None
    except BaseException:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise
    emit(
        {
            "project": found.slug,
            "revision": plan.head,
            "revisions": len(plan.revisions),
            "bytes": size,
            "encrypted": passphrase is not None,
            "file": str(target),
        },
        as_json,
        f"exported {found.slug} ({len(plan.revisions)} revision(s), head {plan.head}) to "
        f"{target}: {size} bytes" + (", encrypted" if passphrase is not None else ""),
    )


@projects_group.command("import")
@click.option("--tenant", "tenant_slug", required=True, help="The tenant's slug.")
@click.option("--slug", help="The new project's slug (default: the archive's).")
@click.option(
    "--passphrase-file",
    type=click.Path(exists=True, dir_okay=False),
    help="The encrypted archive's passphrase, in this file (else asked for).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@with_appcontext
def import_command(
    tenant_slug: str, slug: str | None, passphrase_file: str | None, as_json: bool, file: str
) -> None:
    """Make the archive FILE a new project of the tenant (all or nothing)."""
    from ctxcloud import emit, emit_audit, problems_as_click_errors, tenant_from_slug
    from ctxcloud.plugins.context import importer

    tenant = tenant_from_slug(tenant_slug)
    with open(file, "rb") as archive:
        encrypted = archive_crypto.is_encrypted(archive.read(len(archive_crypto.MAGIC)))
        archive.seek(0)
        passphrase = None
        if passphrase_file:  # a plaintext archive given one is refused, as by the API
            passphrase = _checked(_passphrase_from(passphrase_file), 1)
        elif encrypted:
            typed = click.prompt("Passphrase", hide_input=True, err=True)
            passphrase = _checked(typed.encode(), 1)
        with problems_as_click_errors():
            project = importer.import_archive(
                tenant,
                archive,
                max_bytes=tenancy.UNLIMITED_BYTES,
                slug=slug,
                passphrase=passphrase,
            )
    emit_audit(
        "project_imported",
        tenant_id=tenant.id,
        project_id=project.id,
        slug=project.slug,
        revision=project.revision,
    )
    emit(
        {"id": project.id, "slug": project.slug, "revision": project.revision},
        as_json,
        f"imported {project.slug} ({project.id}) at revision {project.revision}",
    )
