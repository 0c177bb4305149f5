"""Projects and their versioned context: per-tenant projects, addressed by id or slug, and
their entries, atomic commits and revisions, stored encrypted. One feature: a project is the
container of its context, and its head revision is the context's."""

from __future__ import annotations

from ctxcloud import hookimpl
from ctxcloud.plugins.context.migrations import MIGRATIONS
from ctxcloud.plugins.context.options import DEFAULT_CONTENT_TYPE, declared
from ctxcloud.plugins.context.problems import RESPONSES


@hookimpl
def config_defaults():
    # MAX_ENTRY_BYTES and REVISIONS_KEPT are the defaults of the tenant quotas of those names.
    # REVISIONS_KEPT: None keeps every revision; N keeps the last N readable (context prune).
    # MANIFEST_CACHE_BYTES: serialized manifests kept per process (0: none).
    return {
        "MAX_PROJECTS": None,
        "DEFAULT_CONTENT_TYPE": DEFAULT_CONTENT_TYPE,
        "ALLOWED_CONTENT_TYPES": None,
        "MAX_ENTRY_BYTES": 5 * 1024**3,
        "REVISIONS_KEPT": None,
        "MANIFEST_CACHE_BYTES": 16 * 1024**2,
        # Staged uploads: seconds an upload lives uncommitted, and how many a tenant holds.
        "UPLOAD_EXPIRES": 24 * 3600,
        "MAX_OPEN_UPLOADS": 1000,
        # Project import (docs/export-import.md): the largest archive POST /projects/import reads.
        "MAX_IMPORT_BYTES": 10 * 1024**3,
        # Long-polls (docs/changes.md): requests of one process that may wait at once (None: a
        # quarter of the worker's threads, at least 1), the Retry-After past it, the longest
        # wait served (a longer `wait` is shortened), the spacing of waiters woken together,
        # and how often the embedded default's poller looks for changes of other processes.
        "WATCH_MAX_WAITERS": None,
        "WATCH_RETRY_AFTER": 5,
        "WATCH_MAX_WAIT": 60,
        "WATCH_WAKE_SPACING": 0.005,
        "WATCH_POLL_INTERVAL": 0.05,
        # Signed links (docs/links.md): the tenant setting links_enabled's default (off), their
        # own signing keys (unset: derived from the master keys), reads per client address.
        "LINKS_ENABLED": False,
        "LINK_SIGNING_KEYS": None,
        "ACTIVE_LINK_SIGNING_KEY": None,
        "RATE_LIMIT_LINKS": "120/minute",
        # Diffs (docs/diff-and-render.md): the response's default and largest byte budget,
        # the largest entry read to diff, and the bytes one diff reads in all.
        "DIFF_DEFAULT_BYTES": 256 * 1024,
        "DIFF_MAX_BYTES": 4 * 1024**2,
        "DIFF_MAX_ENTRY_BYTES": 512 * 1024,
        "DIFF_MAX_READ_BYTES": 16 * 1024**2,
        # Rendering: the largest token budget, entries considered, the largest entry read,
        # and the bytes one rendering reads in all.
        "RENDER_MAX_TOKENS": 1_000_000,
        "RENDER_MAX_ENTRIES": 2000,
        "RENDER_MAX_ENTRY_BYTES": 1024**2,
        "RENDER_MAX_READ_BYTES": 8 * 1024**2,
    }


@hookimpl
def tenant_options():
    return declared()


@hookimpl
def problem_responses():
    from ctxcloud.plugins.context.export_format import RESPONSES as EXPORT_RESPONSES

    return RESPONSES + EXPORT_RESPONSES


@hookimpl
def startup(app):
    from ctxcloud.plugins.context.link_keys import check_at_startup
    from ctxcloud.plugins.context.manifest_cache import init_manifest_cache
    from ctxcloud.plugins.context.watch import init_watch

    init_manifest_cache(app)
    init_watch(app)
    check_at_startup(app)


@hookimpl
def register_commands(cli):
    from ctxcloud.plugins.context.cli import context_group
    from ctxcloud.plugins.context.project_cli import projects_group

    cli.add_command(context_group)
    cli.add_command(projects_group)


@hookimpl
def register_blueprints(app):
    from ctxcloud.plugins.context.change_routes import blp as changes_blp
    from ctxcloud.plugins.context.export_routes import export_blp, import_blp
    from ctxcloud.plugins.context.link_routes import blp as links_blp
    from ctxcloud.plugins.context.link_routes import reads as link_reads_blp
    from ctxcloud.plugins.context.paths import EntryPathConverter
    from ctxcloud.plugins.context.project_routes import blp as projects_blp
    from ctxcloud.plugins.context.render_routes import diff_blp, render_blp
    from ctxcloud.plugins.context.routes import blp
    from ctxcloud.plugins.context.upload_routes import blp as uploads_blp

    app.url_map.converters["entry_path"] = EntryPathConverter
    return [
        projects_blp,
        blp,
        uploads_blp,
        diff_blp,
        render_blp,
        links_blp,
        link_reads_blp,
        changes_blp,
        export_blp,
        import_blp,
    ]


@hookimpl
def database_migrations():
    return MIGRATIONS


@hookimpl
def tenant_deleting(tenant):
    from ctxcloud.plugins.context.projects import delete_tenant_projects

    return delete_tenant_projects(tenant.id)


@hookimpl
def project_deleting(project):
    from ctxcloud.plugins.context.links import delete_project_links
    from ctxcloud.plugins.context.service import delete_project_context

    delete_project_links(project)
    return delete_project_context(project)


@hookimpl
def tenant_usage(tenant):
    from ctxcloud.plugins.context import projects, service

    return {**projects.usage(tenant.id), **service.usage(tenant.id)}


@hookimpl
def objects_in_use(keys):
    # Across tenants by nature: a storage sweep sees keys, never whose; only keys come back.
    from ctxcloud.plugins.context.models import ContextUpload, EntryVersion

    keys = list(keys)
    versions = EntryVersion.select(EntryVersion.object_key).where(EntryVersion.object_key.in_(keys))
    # A staged upload's bytes are kept until its row goes (committed, or expired and swept).
    uploads = ContextUpload.select(ContextUpload.object_key).where(
        ContextUpload.object_key.in_(keys)
    )
    return [key for (key,) in versions.tuples()] + [key for (key,) in uploads.tuples()]
