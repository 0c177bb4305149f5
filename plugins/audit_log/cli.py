"""`ctxcloud audit verify` and `ctxcloud audit sweep`."""

from __future__ import annotations

import json

import click
from flask.cli import with_appcontext

from ctxcloud import tenant_from_slug
from ctxcloud.plugins.audit_log import chain as audit_chain
from ctxcloud.plugins.audit_log import retention
from ctxcloud.plugins.audit_log.models import PLATFORM_CHAIN


def _chain_named(tenant_slug: str | None, platform: bool) -> str | None:
    if tenant_slug is not None and platform:
        raise click.UsageError("give --tenant or --platform, not both")
    if platform:
        return PLATFORM_CHAIN
    return None if tenant_slug is None else tenant_from_slug(tenant_slug).id


@click.group("audit")
def audit_group() -> None:
    """Audit log commands: verify the hash chains, sweep expired events."""


@audit_group.command("verify")
@click.option("--tenant", "tenant_slug", help="Only this tenant's chain (its slug).")
@click.option("--platform", is_flag=True, help="Only the platform chain.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@with_appcontext
def verify(tenant_slug: str | None, platform: bool, as_json: bool) -> None:
    """Walk each chain from its checkpoint to its head; exit 1 on any problem.

    Reports an edited row, rows deleted in the middle, rows reordered or replaced, and rows
    deleted at the head (the chain's head row still names them). Prints each chain's head
    (seq and hash): keep them elsewhere to detect a rewrite of the head itself.
    """
    reports = audit_chain.verify(_chain_named(tenant_slug, platform))
    ok = all(report.ok for report in reports)
    if as_json:
        click.echo(json.dumps({"ok": ok, "chains": [r.as_dict() for r in reports]}))
    else:
        for report in reports:
            state = "ok" if report.ok else f"{len(report.problems or [])} problem(s)"
            click.echo(
                f"{report.chain}: {report.rows} rows, head {report.head_seq} "
                f"{report.head_hash[:16]}, checkpoint {report.checkpoint_seq}: {state}"
            )
            for problem in report.problems or ():
                where = "" if problem.seq is None else f" at seq {problem.seq} (id {problem.id})"
                click.echo(f"  {problem.kind}{where}: {problem.detail}")
        if not reports:
            click.echo("no audit chains")
    if not ok:
        raise SystemExit(1)


@audit_group.command("sweep")
@click.option("--tenant", "tenant_slug", help="Only this tenant's chain (its slug).")
@click.option("--platform", is_flag=True, help="Only the platform chain.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@with_appcontext
def sweep(tenant_slug: str | None, platform: bool, as_json: bool) -> None:
    """Delete events older than each chain's retention (audit_retention_days); the chain's
    checkpoint moves to the last deleted row. A chain that does not verify is not swept
    (exit 1)."""
    reports = retention.sweep(_chain_named(tenant_slug, platform))
    ok = not any(report.problems for report in reports)
    if as_json:
        click.echo(json.dumps({"ok": ok, "chains": [r.as_dict() for r in reports]}))
    else:
        for report in reports:
            kept = "forever" if report.retention_days is None else f"{report.retention_days} d"
            line = f"{report.chain}: deleted {report.deleted} (kept {kept})"
            if report.problems:
                line += f"; not swept: {report.problems[0].kind} at seq {report.problems[0].seq}"
            click.echo(line)
    if not ok:
        raise SystemExit(1)
