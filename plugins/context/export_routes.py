"""POST /api/v1/projects/{project}/export and POST /api/v1/projects/import: a project as one
archive, and back (docs/export-import.md).

`/api/v1/projects/import` sits beside `/api/v1/projects/{project}`: the URL map prefers the
fixed segment only for POST (the one method the project route does not answer), so a
project whose slug is `import` is still read, changed and deleted at its own URL."""

from __future__ import annotations

from typing import Any

import flask
import marshmallow as ma
from flask.views import MethodView
from marshmallow import validate
from werkzeug.exceptions import ClientDisconnected

from ctxcloud import (
    SLUG_PATTERN,
    SLUG_RULE,
    BadRequest,
    Blueprint,
    Forbidden,
    PayloadTooLarge,
    UnsupportedMediaType,
    current_actor,
    emit_audit,
    requires,
    setting,
    tenancy,
)
from ctxcloud.plugins.context import archive_crypto, export, importer, projects
from ctxcloud.plugins.context.export_format import (
    ENCRYPTED_TYPE,
    PASSPHRASE_HEADER,
    TAR_TYPE,
)
from ctxcloud.plugins.context.project_schemas import ProjectSchema

export_blp = Blueprint(
    "project_export",
    __name__,
    url_prefix="/api/v1/projects/<project>/export",
    description="A project's whole kept history as one archive (docs/export-import.md).",
)
import_blp = Blueprint(
    "project_import",
    __name__,
    url_prefix="/api/v1/projects/import",
    description="A project archive made into a new project (docs/export-import.md).",
)

PROJECT_PARAM = {
    "in": "path",
    "name": "project",
    "required": True,
    "schema": {"type": "string"},
    "description": "The project's id (`prj_...`) or its slug",
    "example": "handbook",
}
PASSPHRASE_EXAMPLE = "correct horse battery staple"  # noqa: S105  # nosec B105: a docs example
BINARY: dict = {}
# Bodies curl sends with --data-binary and no type, taken as "no type given".
IMPLICIT_TYPES = {"application/x-www-form-urlencoded", ""}
ACCEPTED_TYPES = {TAR_TYPE, ENCRYPTED_TYPE, "application/x-ustar"}


def passphrase(minimum: int) -> bytes | None:
    """The Archive-Passphrase header's bytes (UTF-8), or None without one."""
    raw = flask.request.headers.get(PASSPHRASE_HEADER)
    if raw is None:
        return None
    try:
        data = raw.encode("latin-1")  # WSGI hands header bytes over as ISO-8859-1 text
    except UnicodeEncodeError:  # a test client's str
        data = raw.encode()
    if not minimum <= len(data) <= archive_crypto.MAX_PASSPHRASE_BYTES:
        raise BadRequest(
            f"{PASSPHRASE_HEADER} must be {minimum} to {archive_crypto.MAX_PASSPHRASE_BYTES} bytes."
        )
    return data


@export_blp.route("", parameters=[PROJECT_PARAM])
class ProjectExport(MethodView):
    @requires("projects:write")
    @export_blp.doc(
        parameters=[
            {
                "in": "header",
                "name": PASSPHRASE_HEADER,
                "schema": {"type": "string", "minLength": 8, "maxLength": 1024},
                "description": "Encrypt the archive with this passphrase (scrypt + AES-256-GCM "
                "in 64 KiB segments; docs/export-import.md). Without it the archive is "
                "plaintext: every entry of every kept revision, readable by whoever holds it",
                "example": PASSPHRASE_EXAMPLE,
            }
        ],
        responses={
            "200": {
                "description": "The archive, streamed: a tar (`application/x-tar`), or with "
                "a passphrase the encrypted archive (`application/octet-stream`)",
                "headers": {
                    "Content-Disposition": {
                        "schema": {"type": "string"},
                        "description": 'attachment; filename="<slug>-r<revision>.tar"',
                    },
                    "Export-Revision": {
                        "schema": {"type": "integer"},
                        "description": "The head revision the archive holds",
                    },
                },
                "content": {TAR_TYPE: BINARY, ENCRYPTED_TYPE: BINARY},
            },
            "400": {"$ref": "#/components/responses/BadRequest"},
            "404": {"$ref": "#/components/responses/NotFound"},
        },
    )
    def post(self, project):
        """Export a project

        Every kept revision (number, message, actor, time, changes and whole manifest) and
        the bytes of every entry version, each distinct one once, as one tar with a JSON
        index and the SHA-256 of every file; streamed as it is read. **Plaintext** unless an
        `Archive-Passphrase` header is given: then the archive is encrypted with it. Import
        it with `POST /projects/import` here or on another instance.
        """
        actor = current_actor()
        found = projects.resolve(actor, project)
        secret = passphrase(archive_crypto.MIN_PASSPHRASE_BYTES)
        plan = export.plan(found)
        emit_audit(
            "project_exported",
            project_id=found.id,
            revision=plan.head,
            encrypted=secret is not None,
        )
        filename = plan.filename + (".enc" if secret is not None else "")
        chunks = export.export_chunks(actor.tenant_id, plan, secret)
        return flask.Response(
            chunks,
            mimetype=TAR_TYPE if secret is None else ENCRYPTED_TYPE,
            headers={
                "Content-Disposition": f'attachment; filename="{filename}"',
                "Export-Revision": str(plan.head),
                "Cache-Control": "no-store",
            },
            direct_passthrough=True,
        )


class ImportQuerySchema(ma.Schema):
    slug = ma.fields.String(
        validate=validate.Regexp(SLUG_PATTERN, error=SLUG_RULE),
        metadata={
            "description": "The new project's slug (default: the archive's); a slug the "
            "tenant has is a 409",
            "example": "handbook-copy",
        },
    )


class _RequestBody:
    """The request body as a binary stream; a body cut short is a 400."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def read(self, size: int = -1) -> bytes:
        try:
            return self._stream.read(size)
        except ClientDisconnected:
            raise BadRequest("The body ended before Content-Length bytes arrived.") from None


@import_blp.route("")
class ProjectImport(MethodView):
    @requires("projects:write")
    @import_blp.arguments(ImportQuerySchema(), location="query")
    @import_blp.doc(
        parameters=[
            {
                "in": "header",
                "name": PASSPHRASE_HEADER,
                "schema": {"type": "string", "minLength": 1, "maxLength": 1024},
                "description": "The passphrase of an encrypted archive (required for one; "
                "refused with a plaintext archive)",
                "example": PASSPHRASE_EXAMPLE,
            },
            # Written out: a parameter list given here replaces the one drawn from the schema.
            {
                "in": "query",
                "name": "slug",
                "schema": {"type": "string", "pattern": SLUG_PATTERN, "maxLength": 63},
                "description": "The new project's slug (default: the archive's); a slug the "
                "tenant has is a 409",
                "example": "handbook-copy",
            },
        ],
        requestBody={
            "required": True,
            "description": "The archive as `POST /projects/{project}/export` made it, "
            "streamed: a tar (`application/x-tar`) or an encrypted archive "
            "(`application/octet-stream`); at most `CTXCLOUD_MAX_IMPORT_BYTES`",
            "content": {TAR_TYPE: BINARY, ENCRYPTED_TYPE: BINARY},
        },
    )
    @import_blp.response(201, ProjectSchema)
    @import_blp.alt_response(400, response="InvalidArchive")
    @import_blp.alt_response(403, response="QuotaExceeded")
    @import_blp.alt_response(409, response="Conflict")
    @import_blp.alt_response(413, response="EntryTooLarge")
    @import_blp.alt_response(415, response="UnsupportedMediaType")
    @import_blp.alt_response(422, response="ValidationError")
    def post(self, query):
        """Import a project

        Makes the archive a new project of the caller's tenant: the same revision numbers,
        messages, actors, times and manifests, every entry's bytes at every revision, stored
        encrypted under this tenant's key. All or nothing: a tampered, cut or inconsistent
        archive (400 `invalid_archive`), a wrong passphrase (400 `wrong_passphrase`), a slug
        the tenant has (409), the tenant's projects or storage quota (403
        `quota_exceeded`), an entry past `max_entry_bytes` or a body past
        `CTXCLOUD_MAX_IMPORT_BYTES` (413), an entry type the tenant does not allow (415)
        leave nothing behind. A key restricted to some projects cannot import (403).
        """
        actor = current_actor()
        if actor.project_ids is not None:
            raise Forbidden("A key restricted to some projects cannot create projects.")
        request = flask.request
        kind = (request.mimetype or "").lower()
        if kind not in ACCEPTED_TYPES | IMPLICIT_TYPES:
            raise UnsupportedMediaType(
                f"Send the archive as {TAR_TYPE} or {ENCRYPTED_TYPE}, not {kind[:100]!r}."
            )
        limit = int(setting("MAX_IMPORT_BYTES"))
        if request.content_length is not None and request.content_length > limit:
            raise PayloadTooLarge(f"The archive is larger than the limit of {limit} bytes.")
        secret = passphrase(1)
        # The app-wide body limit is for JSON; the archive's is MAX_IMPORT_BYTES, counted as
        # it streams.
        request.max_content_length = tenancy.UNLIMITED_BYTES
        project = importer.import_archive(
            actor.tenant,
            _RequestBody(request.stream),  # type: ignore[arg-type]
            max_bytes=limit,
            slug=query.get("slug"),
            passphrase=secret,
        )
        emit_audit(
            "project_imported", project_id=project.id, slug=project.slug, revision=project.revision
        )
        return project, 201
