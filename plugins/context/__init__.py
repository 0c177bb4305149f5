"""Versioned context: entries, atomic commits and revisions, stored encrypted."""

from __future__ import annotations

from ctxcloud.hookspecs import hookimpl
from ctxcloud.plugins.context.migrations import MIGRATIONS


@hookimpl
def config_defaults():
    # MAX_ENTRY_BYTES and REVISIONS_KEPT are the defaults of the tenant quotas of those names.
    # REVISIONS_KEPT: None keeps every revision; N keeps the last N readable (context prune).
    # MANIFEST_CACHE_BYTES: serialized manifests kept per process (0: none).
    return {
        "MAX_ENTRY_BYTES": 5 * 1024**3,
        "REVISIONS_KEPT": None,
        "MANIFEST_CACHE_BYTES": 16 * 1024**2,
    }


@hookimpl
def startup(app):
    from ctxcloud.plugins.context.manifest_cache import init_manifest_cache

    init_manifest_cache(app)


@hookimpl
def register_commands(cli):
    from ctxcloud.plugins.context.cli import context_group

    cli.add_command(context_group)


@hookimpl
def register_blueprints(app):
    from ctxcloud.plugins.context.paths import EntryPathConverter
    from ctxcloud.plugins.context.routes import blp

    app.url_map.converters["entry_path"] = EntryPathConverter
    return [blp]


@hookimpl
def database_migrations():
    return MIGRATIONS


@hookimpl
def project_deleting(project):
    from ctxcloud.plugins.context.service import delete_project_context

    return delete_project_context(project)


@hookimpl
def tenant_usage(tenant):
    from ctxcloud.plugins.context.service import usage

    return usage(tenant.id)


@hookimpl
def objects_in_use(keys):
    # Across tenants by nature: a storage sweep sees keys, never whose; only keys come back.
    from ctxcloud.plugins.context.models import EntryVersion

    query = EntryVersion.select(EntryVersion.object_key).where(
        EntryVersion.object_key.in_(list(keys))
    )
    return [key for (key,) in query.tuples()]
