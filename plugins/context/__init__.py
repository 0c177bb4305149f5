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
    }


@hookimpl
def tenant_options():
    return declared()


@hookimpl
def problem_responses():
    return RESPONSES


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
    from ctxcloud.plugins.context.project_routes import blp as projects_blp
    from ctxcloud.plugins.context.routes import blp
    from ctxcloud.plugins.context.upload_routes import blp as uploads_blp

    app.url_map.converters["entry_path"] = EntryPathConverter
    return [projects_blp, blp, uploads_blp]


@hookimpl
def database_migrations():
    return MIGRATIONS


@hookimpl
def tenant_deleting(tenant):
    from ctxcloud.plugins.context.projects import delete_tenant_projects

    return delete_tenant_projects(tenant.id)


@hookimpl
def project_deleting(project):
    from ctxcloud.plugins.context.service import delete_project_context

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
