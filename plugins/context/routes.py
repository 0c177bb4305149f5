"""/api/v1/projects/{project}/context: manifest, entries, commits and revisions."""

from __future__ import annotations

import hashlib

import flask
from flask.views import MethodView

from ctxcloud import (
    MAX_PAGE_SIZE,
    Blueprint,
    NotFound,
    current_actor,
    page_and_size,
    requires,
)
from ctxcloud.plugins.context import changes, http, projects, service
from ctxcloud.plugins.context.change_routes import wait_field
from ctxcloud.plugins.context.manifest_cache import manifest_cache
from ctxcloud.plugins.context.paths import existing_path, validate_prefix
from ctxcloud.plugins.context.schemas import (
    MAX_REVISION,
    PATH_RULE,
    CommitSchema,
    EntryQuerySchema,
    EntrySchema,
    ManifestQuerySchema,
    ManifestSchema,
    RevisionSchema,
)
from ctxcloud.plugins.context.write_rules import EntryWrite

# One schema instance for every write's answer: building one copies its fields each time.
_ENTRY = EntrySchema()

blp = Blueprint(
    "context",
    __name__,
    url_prefix="/api/v1/projects/<project>/context",
    description="A project's versioned context: entries, commits and revisions.",
)

# Bytes of any type (OpenAPI 3.1: a media type without a schema; `format: binary` is 3.0's).
BINARY: dict = {}
ETAG_HEADER = {"schema": {"type": "string"}, "description": "The entry version's strong ETag"}
ENTRY_HEADERS = {
    "ETag": ETAG_HEADER,
    "Content-Length": {"schema": {"type": "integer"}},
    "Accept-Ranges": {"schema": {"type": "string", "enum": ["bytes"]}},
    "Entry-Revision": {
        "schema": {"type": "integer"},
        "description": "Revision that wrote this version",
    },
    "Entry-SHA256": {"schema": {"type": "string"}, "description": "SHA-256 of the whole entry"},
    "Entry-Metadata": {"schema": {"type": "string"}, "description": "The metadata, as JSON"},
}
CONDITIONAL_PARAMS = [
    {
        "in": "header",
        "name": "If-Match",
        "schema": {"type": "string"},
        "description": "Write/delete only if the entry's ETag is one of these (or `*`: exists)",
    },
    {
        "in": "header",
        "name": "If-None-Match",
        "schema": {"type": "string"},
        "description": "`*`: create only (412 if it exists); a tag: 304 on reads",
    },
]
PATH_PARAM = {
    "in": "path",
    "name": "path",
    "required": True,
    # What a regular expression can say of the rule; paths.py (and docs/context.md) has it all.
    "schema": {"type": "string", **PATH_RULE},
    "description": "Entry path: relative, '/'-separated, normalised to NFC, at most 1024 bytes "
    "of UTF-8; no empty, '.' or '..' segment, no backslash, no control, bidirectional, "
    "noncharacter or invisible format character, no segment that shows nothing "
    "(else 400 `invalid_path`). Percent-encode it as any URL path; '/' stays as is.",
    "example": "docs/adr/0001.md",
}
PROJECT_PARAM = {
    "in": "path",
    "name": "project",
    "required": True,
    "schema": {"type": "string"},
    "description": "Project id or slug",
    "example": "handbook",
}

NUMBER_PARAM = {"in": "path", "name": "number", "description": "Revision number", "example": 7}


class WatchedManifestQuerySchema(ManifestQuerySchema):
    """The manifest's query, and `wait` (docs/changes.md): not part of the manifest's ETag."""

    wait = wait_field()


def manifest_etag(project_id: str, revision: int, query: dict) -> str:
    fingerprint = f"{project_id}|{revision}|{sorted(query.items())}".encode()
    return '"m' + hashlib.sha256(fingerprint).hexdigest()[:32] + '"'


@blp.route("", parameters=[PROJECT_PARAM])
class Manifest(MethodView):
    @requires("context:read")
    @blp.arguments(WatchedManifestQuerySchema(), location="query")
    @blp.response(200, ManifestSchema, headers={"ETag": ETAG_HEADER})
    @blp.alt_response(
        304,
        description="Not modified (If-None-Match matched the ETag; with `wait`, nothing "
        "changed within `wait` seconds)",
    )
    @blp.alt_response(400, response="BadRequest")
    @blp.alt_response(404, response="NotFound")
    @blp.alt_response(422, response="ValidationError")
    @blp.alt_response(503, response="TooManyWatchers")
    def get(self, query, project):
        """Read the context manifest

        Every live entry (path, size, sha256, type, metadata, revision) at the head or at
        `revision`, optionally under `prefix`; with `include_content=true`, text entries are
        inlined as `content` up to `max_bytes` in all, and each entry left out says why.

        With `wait` (seconds, at most 60) and an `If-None-Match` that matches the head's ETag,
        the request waits: the new manifest as soon as the project changes, else 304 after
        `wait` seconds (docs/changes.md). With `revision`, `wait` is ignored (that manifest
        never changes).
        Past the process's `WATCH_MAX_WAITERS`, a 503 `too_many_watchers` with `Retry-After`.
        """
        actor = current_actor()
        found = projects.resolve(actor, project)
        wait = query.pop("wait", None)
        if "revision" in query:
            wait = None  # a past revision's manifest never changes: `wait` watches the head
        prefix = validate_prefix(query["prefix"])
        revision = query.get("revision", found.revision)
        if "revision" in query:
            service.check_revision(found, revision)
        etag = manifest_etag(found.id, revision, query)
        if http.not_modified(etag) and wait is not None:
            found = changes.wait_for_change(actor, project, found, wait)
            revision = found.revision
            etag = manifest_etag(found.id, revision, query)
        if http.not_modified(etag):
            return flask.Response(status=304, headers={"ETag": etag})

        def build() -> dict:
            versions = service.manifest(found, query.get("revision"), prefix)
            return {
                "project_id": found.id,
                "revision": revision,
                "entries": versions,
                "total_size": sum(v.size for v in versions),
            }

        if not query["include_content"]:
            # Kept per process by ETag; concurrent misses build it once.
            serialized = manifest_cache().get_or_build(
                etag,
                lambda: flask.current_app.json.response(ManifestSchema().dump(build())).get_data(),
            )
            return flask.Response(serialized, mimetype="application/json", headers={"ETag": etag})
        body = build()
        versions = body["entries"]
        contents, omitted = service.inline_contents(
            actor.tenant_id, found, versions, query["max_bytes"]
        )
        for version in versions:
            if version.path in contents:
                version.content = contents[version.path]
            else:
                version.content_omitted = omitted[version.path]
        body["content_truncated"] = "budget" in omitted.values()
        return body, 200, {"ETag": etag}


@blp.route(
    "/entries/<entry_path:path>", parameters=[PROJECT_PARAM, PATH_PARAM], merge_slashes=False
)
class EntryItem(MethodView):
    @requires("context:read")
    @blp.arguments(EntryQuerySchema(), location="query")
    @blp.doc(
        parameters=[
            {
                "in": "header",
                "name": "Range",
                "schema": {"type": "string"},
                "description": "One byte range, e.g. bytes=0-1023",
            },
            {"in": "header", "name": "If-None-Match", "schema": {"type": "string"}},
        ],
        responses={
            "200": {
                "description": "The entry's bytes",
                "headers": ENTRY_HEADERS,
                "content": {"*/*": BINARY},
            },
            "206": {
                "description": "The requested range",
                "headers": {**ENTRY_HEADERS, "Content-Range": {"schema": {"type": "string"}}},
                "content": {"*/*": BINARY},
            },
            "304": {"description": "Not modified"},
            "400": {"$ref": "#/components/responses/BadRequest"},
            "404": {"$ref": "#/components/responses/NotFound"},
            "416": {"$ref": "#/components/responses/RangeNotSatisfiable"},
            "422": {"$ref": "#/components/responses/ValidationError"},
            "500": {"$ref": "#/components/responses/IntegrityError"},
        },
    )
    def get(self, query, project, path):
        """Read an entry

        The bytes as stored, with `ETag`; `Range` (one range) gives 206, `If-None-Match` 304,
        `revision` reads a past version. A stored object that fails its integrity check is never
        served as if whole.
        """
        actor = current_actor()
        version = _version(actor, project, path, query.get("revision"))
        return http.entry_response(actor.tenant_id, version, head=False)

    @requires("context:read")
    @blp.arguments(EntryQuerySchema(), location="query")
    @blp.doc(
        responses={
            "200": {"description": "The entry's headers", "headers": ENTRY_HEADERS},
            "304": {"description": "Not modified"},
            "400": {"description": "Not a valid entry path (`invalid_path`)"},
            "404": {"description": "No such entry"},
        }
    )
    def head(self, query, project, path):
        """Read an entry's headers

        Same headers as GET (ETag, Content-Length, type, revision, metadata), no body.
        """
        actor = current_actor()
        version = _version(actor, project, path, query.get("revision"))
        return http.entry_response(actor.tenant_id, version, head=True)

    @requires("context:write")
    @blp.doc(
        parameters=[
            *CONDITIONAL_PARAMS,
            {
                "in": "header",
                "name": "Content-SHA256",
                "schema": {"type": "string"},
                "description": "Hex SHA-256 of the body; a mismatch stores nothing (400)",
            },
            {
                "in": "header",
                "name": "Entry-Metadata",
                "schema": {"type": "string"},
                "description": "The entry's metadata as a JSON object (at most 8 KiB)",
            },
        ],
        requestBody={
            "required": True,
            "content": {"*/*": BINARY},
            "description": "The entry's bytes; Content-Type is kept (none, or a bare "
            "`application/x-www-form-urlencoded` as curl -d sends: the tenant's "
            "`default_content_type`)",
        },
        responses={
            "200": {
                "description": "Replaced",
                "headers": {"ETag": ETAG_HEADER},
                "content": {"application/json": {"schema": EntrySchema}},
            },
            "201": {
                "description": "Created",
                "headers": {"ETag": ETAG_HEADER},
                "content": {"application/json": {"schema": EntrySchema}},
            },
            "400": {"$ref": "#/components/responses/BadRequest"},
            "403": {"$ref": "#/components/responses/QuotaExceeded"},
            "404": {"$ref": "#/components/responses/NotFound"},
            "412": {"$ref": "#/components/responses/PreconditionFailed"},
            "413": {"$ref": "#/components/responses/EntryTooLarge"},
            "415": {"$ref": "#/components/responses/UnsupportedMediaType"},
            "422": {"$ref": "#/components/responses/ValidationError"},
        },
    )
    def put(self, project, path):
        """Write an entry

        Streams the body to encrypted storage and records it as a new revision: 201 when the
        path is new, 200 when it replaced a version. Honours `If-Match` and
        `If-None-Match: *`; verifies `Content-SHA256`. An entry past the tenant's
        `max_entry_bytes` is a 413 (from `Content-Length` before the body is read, else while
        streaming); bytes that would pass `max_storage_bytes` are a 403 `quota_exceeded`; a
        type outside the tenant's `allowed_content_types` is a 415. Nothing is stored then.
        """
        actor = current_actor()
        found = projects.resolve(actor, project)
        write = EntryWrite(
            path=http.entry_path(path),
            chunks=http.request_chunks(),
            content_type=http.content_type(actor.tenant.setting("default_content_type")),
            metadata=http.entry_metadata(),
            size_hint=flask.request.content_length,
        )
        expected = http.expected_sha256()
        version, created = service.put_entry(actor, found, write, http.preconditions(), expected)
        return flask.Response(
            flask.json.dumps(_ENTRY.dump(version)),
            status=201 if created else 200,
            mimetype="application/json",
            headers={"ETag": version.etag},
        )

    @requires("context:write")
    @blp.doc(parameters=CONDITIONAL_PARAMS[:1])
    @blp.response(204, description="Deleted: a new revision records it")
    @blp.alt_response(400, response="BadRequest")
    @blp.alt_response(404, response="NotFound")
    @blp.alt_response(412, response="PreconditionFailed")
    def delete(self, project, path):
        """Delete an entry

        Records the deletion as a new revision (the entry stays readable at older revisions).
        """
        actor = current_actor()
        found = projects.resolve(actor, project)
        service.delete_entry(actor, found, http.entry_path(path), http.preconditions())


def _version(actor, project_ref: str, path: str, revision: int | None):
    found = projects.resolve(actor, project_ref)
    path = existing_path(
        http.entry_path(path), lambda p: service.entry_at(found, p, revision) is not None
    )
    version = service.entry_at(found, path, revision)
    if version is None:
        raise NotFound("No such entry.")
    return version


@blp.route("/commits", parameters=[PROJECT_PARAM])
class Commits(MethodView):
    @requires("context:write")
    @blp.arguments(CommitSchema)
    @blp.response(201, RevisionSchema)
    @blp.alt_response(400, response="BadRequest")
    @blp.alt_response(403, response="QuotaExceeded")
    @blp.alt_response(404, response="NotFound")
    @blp.alt_response(409, response="Conflict")
    @blp.alt_response(413, response="EntryTooLarge")
    @blp.alt_response(415, response="UnsupportedMediaType")
    @blp.alt_response(422, response="ValidationError")
    def post(self, data, project):
        """Commit several changes atomically

        Every put and delete becomes one revision, or nothing changes. With `parent_revision`,
        a head that moved since is a 409; deleting an absent entry is a 409; an invalid path is
        a 400 `invalid_path`, as in entry URLs. Quotas apply as for single writes: 413 for an
        entry past `max_entry_bytes`, 403 `quota_exceeded` when the puts together would pass
        `max_storage_bytes`, 415 for a type the tenant does not allow.
        """
        actor = current_actor()
        found = projects.resolve(actor, project)
        writes = service.decode_commit_puts(
            data["put"], actor.tenant.setting("default_content_type")
        )
        return service.commit(
            actor,
            found,
            message=data["message"],
            parent_revision=data.get("parent_revision"),
            puts=writes,
            deletes=data["delete"],
        )


@blp.route("/revisions", parameters=[PROJECT_PARAM])
class Revisions(MethodView):
    @requires("context:read")
    @blp.response(200, RevisionSchema(many=True))
    @blp.paginate(max_page_size=MAX_PAGE_SIZE)
    @blp.alt_response(404, response="NotFound")
    def get(self, project, pagination_parameters):
        """List revisions

        Newest first, with who made each, when, why, and which paths changed.
        """
        found = projects.resolve(current_actor(), project)
        items, total = service.revisions(found, *page_and_size(pagination_parameters))
        pagination_parameters.item_count = total
        return items


@blp.route(f"/revisions/<int(max={MAX_REVISION}):number>", parameters=[PROJECT_PARAM, NUMBER_PARAM])
class RevisionItem(MethodView):
    @requires("context:read")
    @blp.response(200, RevisionSchema)
    @blp.alt_response(404, response="NotFound")
    def get(self, project, number):
        """Read a revision

        Who made it, when, with what message, and which paths it wrote or deleted. The
        context as it was then is the manifest with `?revision=N`.
        """
        return service.revision_detail(projects.resolve(current_actor(), project), number)
