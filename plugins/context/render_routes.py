"""/api/v1/projects/{project}/context/diff and .../render: what changed between two revisions,
and the context as one document within a token budget (docs/diff-and-render.md)."""

from __future__ import annotations

import hashlib

import flask
import marshmallow as ma
from flask.views import MethodView
from marshmallow import validate

from ctxcloud import Blueprint, ValidationFailed, current_actor, requires, setting
from ctxcloud.plugins.context import http, projects
from ctxcloud.plugins.context.diff import check_kept, diff
from ctxcloud.plugins.context.paths import validate_prefix
from ctxcloud.plugins.context.render import FORMATS, MIN_TOKENS, render
from ctxcloud.plugins.context.routes import PROJECT_PARAM
from ctxcloud.plugins.context.schemas import MAX_REVISION
from ctxcloud.plugins.context.tokens import COUNTER

diff_blp = Blueprint(
    "context_diff",
    __name__,
    url_prefix="/api/v1/projects/<project>/context/diff",
    description="What changed between two kept revisions: paths added, removed and changed, "
    "with unified diffs of text, within a byte budget.",
)
render_blp = Blueprint(
    "context_render",
    __name__,
    url_prefix="/api/v1/projects/<project>/context/render",
    description="The context as one Markdown or plain-text document within a token budget.",
)

# Part of every ETag: raised when a change of this code changes what the same query answers.
OUTPUT_VERSION = 1
ETAG_HEADER = {
    "schema": {"type": "string"},
    "description": "Strong validator of this answer (send it back as `If-None-Match`: 304)",
}
IF_NONE_MATCH = {
    "in": "header",
    "name": "If-None-Match",
    "schema": {"type": "string"},
    "description": "The ETag of an earlier answer to the same query: 304 while it still holds",
}


def answer_etag(kind: str, project_id: str, *parts: object) -> str:
    """A strong ETag for a diff or render: the query with its revisions resolved, the bounds
    in force, and this code's output version. A revision's context never changes, so the same
    query at the same revisions gives the same bytes."""
    fingerprint = "|".join(str(part) for part in (kind, OUTPUT_VERSION, project_id, *parts))
    return '"' + kind[0] + hashlib.sha256(fingerprint.encode()).hexdigest()[:32] + '"'


def _settings(*names: str) -> list:
    return [setting(name) for name in names]


_SHA_A = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
_SHA_B = "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752"
_PROBLEM = "application/problem+json"


def _problem(status: int, code: str, detail: str, description: str) -> dict:
    return {
        "description": description,
        "content": {
            _PROBLEM: {
                "schema": {"$ref": "#/components/schemas/Problem"},
                "example": {
                    "type": f"urn:ctxcloud:problem:{code}",
                    "title": {
                        400: "Bad Request",
                        404: "Not Found",
                        410: "Gone",
                        422: "Unprocessable Entity",
                    }[status],
                    "status": status,
                    "detail": detail,
                    "code": code,
                    "request_id": "req_5f2c9a1e7b3d4c6a",
                },
            }
        },
    }


def _pruned() -> dict:
    response = _problem(
        410,
        "history_pruned",
        "Revision 2 was pruned: history starts at 5.",
        "Gone: a revision older than the project's kept history (`revisions_kept`); the "
        "problem carries `history_starts_at` and the head `revision`",
    )
    response["content"][_PROBLEM]["example"].update(history_starts_at=5, revision=6)
    return response


# Diff --------------------------------------------------------------------------------------


class DiffQuerySchema(ma.Schema):
    from_ = ma.fields.Integer(
        data_key="from",
        required=True,
        validate=validate.Range(min=0, max=MAX_REVISION),
        metadata={"description": "The revision to compare from (kept: not pruned)", "example": 1},
    )
    to = ma.fields.Integer(
        validate=validate.Range(min=0, max=MAX_REVISION),
        metadata={
            "description": "The revision to compare to (default: the head); smaller than "
            "`from` gives the reverse diff",
            "example": 3,
        },
    )
    max_bytes = ma.fields.Integer(
        validate=validate.Range(min=1024),
        metadata={
            "description": "Bound on the whole JSON response, in bytes (default "
            "`CTXCLOUD_DIFF_DEFAULT_BYTES`, 256 KiB; at most `CTXCLOUD_DIFF_MAX_BYTES`, 4 MiB)",
            "example": 65536,
        },
    )
    prefix = ma.fields.String(
        load_default="",
        validate=validate.Length(max=1024),
        metadata={"description": "Only paths starting with this", "example": "docs/"},
    )


class DiffItemSchema(ma.Schema):
    path = ma.fields.String(metadata={"description": "Entry path", "example": "docs/new.md"})
    size = ma.fields.Integer(metadata={"description": "Bytes", "example": 12})
    sha256 = ma.fields.String(metadata={"description": "SHA-256 of the bytes", "example": _SHA_A})


class DiffChangeSchema(ma.Schema):
    path = ma.fields.String(metadata={"description": "Entry path", "example": "docs/adr/0001.md"})
    from_sha256 = ma.fields.String(metadata={"description": "SHA-256 at `from`", "example": _SHA_A})
    to_sha256 = ma.fields.String(metadata={"description": "SHA-256 at `to`", "example": _SHA_B})
    from_size = ma.fields.Integer(metadata={"description": "Bytes at `from`", "example": 17})
    to_size = ma.fields.Integer(metadata={"description": "Bytes at `to`", "example": 25})
    binary = ma.fields.Boolean(
        metadata={
            "description": "Not text on one side or both (a type that is not text, or bytes "
            "that are not UTF-8): no diff, compare the digests",
            "example": False,
        }
    )
    diff = ma.fields.String(
        metadata={
            "description": "Unified diff (3 lines of context), cut at a line when `diff_truncated`",
            "example": "--- a/docs/adr/0001.md@1\n+++ b/docs/adr/0001.md@3\n@@ -1 +1 @@\n"
            "-# Use PostgreSQL\n+# Use PostgreSQL, really\n",
        }
    )
    diff_truncated = ma.fields.Boolean(
        metadata={"description": "The diff was cut (or left out) by `max_bytes`", "example": False}
    )
    diff_omitted = ma.fields.String(
        metadata={
            "description": "Why a text entry has no diff: `budget` (max_bytes spent), "
            "`too_large` (a side past `CTXCLOUD_DIFF_MAX_ENTRY_BYTES`), `read_limit` "
            "(`CTXCLOUD_DIFF_MAX_READ_BYTES` read already)",
            "example": "too_large",
        }
    )


class DiffCountsSchema(ma.Schema):
    added = ma.fields.Integer(metadata={"description": "Paths added in all", "example": 1})
    removed = ma.fields.Integer(metadata={"description": "Paths removed in all", "example": 1})
    changed = ma.fields.Integer(metadata={"description": "Paths changed in all", "example": 1})


class DiffSchema(ma.Schema):
    project_id = ma.fields.String(
        metadata={"description": "The project's id", "example": "prj_k5v3q2m8x7c1n4b6z9aa"}
    )
    from_ = ma.fields.Integer(
        data_key="from", attribute="from", metadata={"description": "From", "example": 1}
    )
    to = ma.fields.Integer(metadata={"description": "To", "example": 3})
    counts = ma.fields.Nested(
        DiffCountsSchema, metadata={"description": "How many paths each list has in all"}
    )
    truncated = ma.fields.Boolean(
        metadata={
            "description": "The lists were cut by `max_bytes` (see `counts`); no diffs then",
            "example": False,
        }
    )
    added = ma.fields.List(
        ma.fields.Nested(DiffItemSchema),
        metadata={"description": "Paths only at `to`, by path", "example": []},
    )
    removed = ma.fields.List(
        ma.fields.Nested(DiffItemSchema),
        metadata={"description": "Paths only at `from`, by path", "example": []},
    )
    changed = ma.fields.List(
        ma.fields.Nested(DiffChangeSchema),
        metadata={"description": "Paths at both with other bytes, by path"},
    )


# What both routes answer about their prefix and revisions (documented once, used twice).
_REVISION_ERRORS = {
    "400": _problem(
        400,
        "invalid_path",
        "The prefix has U+202E RIGHT-TO-LEFT OVERRIDE at character 5 (segment 1).",
        "Bad Request: a `prefix` the path rules refuse (`invalid_path`)",
    ),
    "404": _problem(
        404,
        "not_found",
        "No revision 9: the head is 6.",
        "Not Found: no such project (or another tenant's), or a revision beyond the head",
    ),
    "410": _pruned(),
}


@diff_blp.route("", parameters=[PROJECT_PARAM, IF_NONE_MATCH])
class Diff(MethodView):
    @requires("context:read")
    @diff_blp.arguments(DiffQuerySchema(), location="query")
    @diff_blp.response(200, DiffSchema, headers={"ETag": ETAG_HEADER})
    @diff_blp.alt_response(304, description="Not modified (If-None-Match matched the ETag)")
    @diff_blp.doc(
        responses={
            **_REVISION_ERRORS,
            "422": _problem(
                422,
                "validation_error",
                "The request is not valid.",
                "Unprocessable: `from` missing, a revision or `max_bytes` not a whole number "
                "in range (`max_bytes` past `CTXCLOUD_DIFF_MAX_BYTES`)",
            ),
        },
    )
    @diff_blp.alt_response(500, response="IntegrityError")
    def get(self, query, project):
        """Compare two revisions

        Paths added, removed and changed from revision `from` to `to` (default: the head;
        either order), under `prefix`. Changed text entries carry a unified diff; entries
        that are not text (type, or bytes not UTF-8) are `binary` with both digests. The
        whole response stays within `max_bytes`: what was cut says so (`truncated`,
        `diff_truncated`, `diff_omitted`). A revision beyond the head is a 404, a pruned one
        a 410 `history_pruned`.
        """
        found = projects.resolve(current_actor(), project)
        prefix = validate_prefix(query["prefix"])
        limit = int(setting("DIFF_MAX_BYTES"))
        max_bytes = query.get("max_bytes", min(int(setting("DIFF_DEFAULT_BYTES")), limit))
        if max_bytes > limit:
            raise ValidationFailed({"max_bytes": [f"At most {limit}."]})
        to = query.get("to", found.revision)
        check_kept(found, query["from_"])
        check_kept(found, to)
        bounds = _settings("DIFF_MAX_ENTRY_BYTES", "DIFF_MAX_READ_BYTES")
        etag = answer_etag("diff", found.id, query["from_"], to, max_bytes, prefix, *bounds)
        if http.not_modified(etag):
            return flask.Response(status=304, headers={"ETag": etag})
        return diff(found, query["from_"], to, max_bytes, prefix), 200, {"ETag": etag}


# Render ------------------------------------------------------------------------------------


class RenderQuerySchema(ma.Schema):
    max_tokens = ma.fields.Integer(
        required=True,
        validate=validate.Range(min=MIN_TOKENS, max=MAX_REVISION),
        metadata={
            "description": f"The token budget, at least {MIN_TOKENS} and at most "
            "`CTXCLOUD_RENDER_MAX_TOKENS` (1,000,000); the whole document, trailer included, "
            f"stays within it by the service's counter ({COUNTER})",
            "example": 2000,
        },
    )
    prefix = ma.fields.String(
        load_default="",
        validate=validate.Length(max=1024),
        metadata={"description": "Only entries whose path starts with this", "example": "docs/"},
    )
    revision = ma.fields.Integer(
        validate=validate.Range(min=0, max=MAX_REVISION),
        metadata={"description": "Render the context as it was then (default: head)", "example": 3},
    )
    format = ma.fields.String(
        validate=validate.OneOf(FORMATS),
        metadata={
            "description": "markdown, text or json: overrides the `Accept` header",
            "example": "markdown",
        },
    )


class RenderPartSchema(ma.Schema):
    path = ma.fields.String(metadata={"description": "Entry path", "example": "docs/adr/0001.md"})
    content_type = ma.fields.String(
        metadata={"description": "The entry's content type", "example": "text/markdown"}
    )
    revision = ma.fields.Integer(
        metadata={"description": "Revision that wrote this version", "example": 3}
    )
    tokens = ma.fields.Integer(
        metadata={"description": "Tokens of its section (heading and text)", "example": 14}
    )
    text = ma.fields.String(
        metadata={"description": "The entry's text", "example": "# Use PostgreSQL, really\n"}
    )


class RenderOmittedSchema(ma.Schema):
    path = ma.fields.String(metadata={"description": "Entry path", "example": "img/logo.png"})
    reason = ma.fields.String(
        metadata={
            "description": "budget, binary, not_utf8, too_large, read_limit or entry_limit",
            "example": "binary",
        }
    )


class RenderSchema(ma.Schema):
    project_id = ma.fields.String(
        metadata={"description": "The project's id", "example": "prj_k5v3q2m8x7c1n4b6z9aa"}
    )
    revision = ma.fields.Integer(metadata={"description": "Revision rendered", "example": 3})
    max_tokens = ma.fields.Integer(metadata={"description": "The budget", "example": 2000})
    tokens = ma.fields.Integer(
        metadata={"description": "Tokens of the whole Markdown document", "example": 37}
    )
    counter = ma.fields.String(
        metadata={"description": "The token counter's name and version", "example": COUNTER}
    )
    parts = ma.fields.List(
        ma.fields.Nested(RenderPartSchema),
        metadata={"description": "The entries included, in document order"},
    )
    omitted = ma.fields.List(
        ma.fields.Nested(RenderOmittedSchema),
        metadata={"description": "The entries left out, in document order, and why"},
    )


_MARKDOWN_EXAMPLE = (
    "## docs/adr/0001.md\n\n# Use PostgreSQL, really\n\n"
    "---\n\nLeft out: 1 of 2 entries:\n\n- img/logo.png: binary\n"
)
_TEXT_EXAMPLE = (
    "==> docs/adr/0001.md <==\n# Use PostgreSQL, really\n\n"
    "==> Left out: 1 of 2 entries <==\n- img/logo.png: binary\n"
)
_RENDER_HEADERS = {
    "ETag": ETAG_HEADER,
    "Context-Revision": {"schema": {"type": "integer"}, "description": "Revision rendered"},
    "Render-Tokens": {
        "schema": {"type": "integer"},
        "description": "Tokens of the document (the JSON form: of its Markdown)",
    },
}


@render_blp.route("", parameters=[PROJECT_PARAM, IF_NONE_MATCH])
class Render(MethodView):
    @requires("context:read")
    @render_blp.arguments(RenderQuerySchema(), location="query")
    @render_blp.alt_response(304, description="Not modified (If-None-Match matched the ETag)")
    @render_blp.doc(
        responses={
            "200": {
                "description": "The document: Markdown by default, plain text for "
                "`Accept: text/plain`, parts and counts for `Accept: application/json` "
                "(or `format=`)",
                "headers": _RENDER_HEADERS,
                "content": {
                    "text/markdown": {"schema": {"type": "string"}, "example": _MARKDOWN_EXAMPLE},
                    "text/plain": {"schema": {"type": "string"}, "example": _TEXT_EXAMPLE},
                    "application/json": {"schema": RenderSchema},
                },
            },
            **_REVISION_ERRORS,
            "422": _problem(
                422,
                "validation_error",
                "The request is not valid.",
                f"Unprocessable: `max_tokens` missing, below {MIN_TOKENS} or past "
                "`CTXCLOUD_RENDER_MAX_TOKENS`, a revision not a whole number, an unknown "
                "`format`",
            ),
        },
    )
    @render_blp.alt_response(500, response="IntegrityError")
    def get(self, query, project):
        """Render the context within a token budget

        One document of the project's text entries (at `revision`, under `prefix`): entries
        with a numeric `order` in their metadata first, by it, then by path; each headed by
        its path; whole or not at all (one that does not fit is skipped, smaller ones after
        it are still tried); then a trailer listing what was left out and why (`budget`,
        `binary`, `not_utf8`, `too_large`, `read_limit`, `entry_limit`), whose tokens count
        too. Tokens are counted offline by an approximation of cl100k_base
        (docs/diff-and-render.md has its measured error). A revision beyond the head is a
        404, a pruned one a 410 `history_pruned`.
        """
        found = projects.resolve(current_actor(), project)
        prefix = validate_prefix(query["prefix"])
        limit = int(setting("RENDER_MAX_TOKENS"))
        if query["max_tokens"] > limit:
            raise ValidationFailed({"max_tokens": [f"At most {limit}."]})
        output = query.get("format") or _negotiated()
        revision = query.get("revision", found.revision)
        check_kept(found, revision)
        bounds = _settings("RENDER_MAX_ENTRIES", "RENDER_MAX_ENTRY_BYTES", "RENDER_MAX_READ_BYTES")
        etag = answer_etag(
            "render", found.id, revision, query["max_tokens"], prefix, output, COUNTER, *bounds
        )
        if http.not_modified(etag):
            return flask.Response(status=304, headers={"ETag": etag, "Vary": "Accept"})
        # No revision: the head as read above (the faster head query), the same context.
        rendered = render(found, query.get("revision"), query["max_tokens"], prefix, output)
        return rendered.response({"ETag": etag})


def _negotiated() -> str:
    best = flask.request.accept_mimetypes.best_match(
        ["text/markdown", "text/plain", "application/json"], default="text/markdown"
    )
    return {"text/plain": "text", "application/json": "json"}.get(best, "markdown")
