"""Signed links: made, listed and revoked under /api/v1/projects/{project}/context/links, read
without a credential under /api/v1/links/{link_id}?token=... (docs/links.md)."""

from __future__ import annotations

import flask
import marshmallow as ma
from flask.views import MethodView
from marshmallow import validate

from ctxcloud import (
    MAX_PAGE_SIZE,
    Blueprint,
    Timestamp,
    ValidationFailed,
    client_address,
    current_actor,
    page_and_size,
    public,
    requires,
    setting,
    shared_limit,
)
from ctxcloud.plugins.context import http, links, projects, service
from ctxcloud.plugins.context.paths import validate_prefix
from ctxcloud.plugins.context.problems import InvalidPath
from ctxcloud.plugins.context.render import FORMATS, MIN_TOKENS, render
from ctxcloud.plugins.context.render_routes import RenderSchema
from ctxcloud.plugins.context.routes import (
    BINARY,
    ENTRY_HEADERS,
    PATH_PARAM,
    PROJECT_PARAM,
    manifest_etag,
)
from ctxcloud.plugins.context.schemas import MAX_REVISION, PATH_RULE, ManifestSchema

blp = Blueprint(
    "context_links",
    __name__,
    url_prefix="/api/v1/projects/<project>/context/links",
    description="Signed links: a URL that reads one revision of a project (or one entry at it) "
    "without a credential, until it expires or is revoked. The tenant's `links_enabled` "
    "setting must be on.",
)

reads = Blueprint(
    "context_link_reads",
    __name__,
    url_prefix="/api/v1/links",
    description="Reads through a signed link: no credential, the link's token in the query. "
    "Every link that does not work (unknown, tampered, expired, revoked, its tenant suspended "
    "or its setting off, its project deleted, its revision pruned) is the same 404.",
)

_EXAMPLE_ID = "lnk_q2m8x7c1n4b6z9aak5v3"
# An example's shape, signing nothing.
_EXAMPLE_TOKEN = "k7m2q9x4c1n8.3dJ0cF9mH1bQ2wS5eR7tY8uI0oP3aZ6xC4vB1nM9kL2"  # noqa: S105  # nosec B105
_EXAMPLE_URL = f"https://ctx.example.com/api/v1/links/{_EXAMPLE_ID}?token={_EXAMPLE_TOKEN}"
_NO_STORE = {"Cache-Control": "no-store"}
# A link's answers: never kept by a shared cache (a revoked link must stop at once), never
# passed on as a Referer (the token is in the URL), never indexed.
_READ_HEADERS = {
    "Cache-Control": "private, no-cache",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
}

LINK_PARAM = {
    "in": "path",
    "name": "link_id",
    "required": True,
    "schema": {"type": "string"},
    "description": "The link's id (`lnk_...`), as `POST .../links` answered",
    "example": _EXAMPLE_ID,
}
TOKEN_PARAM = {
    "in": "query",
    "name": "token",
    "required": True,
    "schema": {"type": "string"},
    "description": "The link's token, as in its `url`: `<key id>.<signature>`",
    "example": _EXAMPLE_TOKEN,
}


class LinkCreateSchema(ma.Schema):
    revision = ma.fields.Integer(
        required=True,
        strict=True,
        validate=validate.Range(min=0, max=MAX_REVISION),
        metadata={"description": "The revision the link reads (never another)", "example": 3},
    )
    path = ma.fields.String(
        allow_none=True,
        validate=validate.Length(min=1, max=4096),
        metadata={
            "description": "One entry's path: the link reads only that entry at `revision`. "
            "Absent or null: the whole manifest at `revision`, its entries and its render",
            "example": "docs/adr/0001.md",
            "pattern": PATH_RULE["pattern"],
        },
    )
    expires_in = ma.fields.Integer(
        required=True,
        strict=True,
        validate=validate.Range(min=links.MIN_EXPIRES_IN, max=links.MAX_EXPIRES_IN),
        metadata={
            "description": f"Seconds the link works, {links.MIN_EXPIRES_IN} to "
            f"{links.MAX_EXPIRES_IN} (30 days)",
            "example": 86400,
        },
    )


class _LinkFields(ma.Schema):
    id = ma.fields.String(
        dump_only=True, metadata={"description": "The link's id", "example": _EXAMPLE_ID}
    )
    project_id = ma.fields.String(
        dump_only=True,
        metadata={"description": "The project it reads", "example": "prj_k5v3q2m8x7c1n4b6z9aa"},
    )
    revision = ma.fields.Integer(
        dump_only=True, metadata={"description": "The revision it reads", "example": 3}
    )
    path = ma.fields.String(
        dump_only=True,
        allow_none=True,
        metadata={
            "description": "The one entry it reads; null: the whole revision",
            "example": "docs/adr/0001.md",
        },
    )
    created_at = Timestamp(dump_only=True, metadata={"description": "When it was made"})
    expires_at = Timestamp(dump_only=True, metadata={"description": "When it stops working"})


class LinkCreatedSchema(_LinkFields):
    url = ma.fields.String(
        dump_only=True,
        metadata={
            "description": "The URL to share: read it without a credential. Shown only here, "
            "once: the list never shows it again (revoke and make another if it is lost)",
            "example": _EXAMPLE_URL,
        },
    )


class LinkSchema(_LinkFields):
    created_by = ma.fields.String(
        dump_only=True,
        metadata={"description": "Who made it", "example": "api_key:key_k5v3q2m8x7c1n4b6z9aa"},
    )
    status = ma.fields.String(
        dump_only=True,
        metadata={
            "description": "active, expired or revoked",
            "example": "active",
            "enum": [links.ACTIVE, links.EXPIRED, links.REVOKED],
        },
    )
    revoked_at = Timestamp(
        dump_only=True,
        allow_none=True,
        metadata={"description": "When it was revoked; null: not revoked"},
    )


def link_reads() -> str:
    """Reads through links per client address (``CTXCLOUD_RATE_LIMIT_LINKS``, read per
    request)."""
    return setting("RATE_LIMIT_LINKS")


@blp.route("", parameters=[PROJECT_PARAM])
class Links(MethodView):
    @requires("context:read")
    @blp.arguments(LinkCreateSchema, example={"revision": 3, "expires_in": 86400})
    @blp.response(201, LinkCreatedSchema, headers={"Cache-Control": {"schema": {"type": "string"}}})
    @blp.alt_response(400, response="BadRequest")
    @blp.alt_response(403, response="LinksDisabled")
    @blp.alt_response(404, response="NotFound")
    @blp.alt_response(422, response="ValidationError")
    def post(self, data, project):
        """Make a signed link

        A URL that reads the project at `revision` without a credential for `expires_in`
        seconds (at most 30 days): with `path`, that one entry; without, the manifest, every
        entry and the render at that revision. Needs the tenant's `links_enabled` setting
        (else 403 `links_disabled`). A revision past the head or pruned, or a path with no
        entry at that revision, is a 404. The `url` is in this answer only.
        """
        actor = current_actor()
        found = projects.resolve(actor, project)
        link = links.create(actor, found, data)
        body = {
            "id": link.id,
            "url": links.link_url(link),
            "project_id": found.id,
            "revision": link.revision,
            "created_at": link.created_at,
            "expires_at": link.expires_at,
        }
        if link.path is not None:
            body["path"] = link.path
        return body, 201, _NO_STORE

    @requires("context:read")
    @blp.response(200, LinkSchema(many=True))
    @blp.paginate(max_page_size=MAX_PAGE_SIZE)
    @blp.alt_response(404, response="NotFound")
    def get(self, project, pagination_parameters):
        """List signed links

        The project's links, newest first, with their status (active, expired or revoked);
        never their URLs. Ended links are forgotten 30 days after they stopped working.
        """
        found = projects.resolve(current_actor(), project)
        items, total = links.list_links(found, *page_and_size(pagination_parameters))
        pagination_parameters.item_count = total
        return items


@blp.route("/<link_id>", parameters=[PROJECT_PARAM, LINK_PARAM])
class LinkItem(MethodView):
    @requires("context:read")
    @blp.response(204, description="Revoked: the URL stops working at once, on every server")
    @blp.alt_response(404, response="NotFound")
    def delete(self, project, link_id):
        """Revoke a signed link

        From now on, its URL answers 404 everywhere. Revoking a revoked link changes nothing.
        """
        actor = current_actor()
        links.revoke(actor, projects.resolve(actor, project), link_id)


# Reads through a link ----------------------------------------------------------------------


def _opened(link_id: str):
    return links.open_link(link_id, flask.request.args.get("token"))


def _head() -> bool:
    return flask.request.method == "HEAD"


def _with_read_headers(response: flask.Response) -> flask.Response:
    response.headers.update(_READ_HEADERS)
    return response


_ENTRY_RESPONSES = {
    "200": {
        "description": "The entry's bytes (a link with a path), or the manifest at the "
        "link's revision (a link without)",
        "headers": ENTRY_HEADERS,
        "content": {
            "application/json": {"schema": ManifestSchema},
            "*/*": BINARY,
        },
    },
    "206": {
        "description": "The requested range of the entry",
        "headers": {**ENTRY_HEADERS, "Content-Range": {"schema": {"type": "string"}}},
        "content": {"*/*": BINARY},
    },
    "304": {"description": "Not modified"},
    "404": {"$ref": "#/components/responses/NotFound"},
    "416": {"$ref": "#/components/responses/RangeNotSatisfiable"},
    "429": {"$ref": "#/components/responses/RateLimited"},
}
_RANGE_PARAMS = [
    {
        "in": "header",
        "name": "Range",
        "schema": {"type": "string"},
        "description": "One byte range of the entry, e.g. bytes=0-1023",
    },
    {"in": "header", "name": "If-None-Match", "schema": {"type": "string"}},
]


@reads.route("/<link_id>", parameters=[LINK_PARAM, TOKEN_PARAM], merge_slashes=False)
class LinkRoot(MethodView):
    @public
    @shared_limit(link_reads, "link_reads", key_func=client_address)
    @reads.doc(parameters=_RANGE_PARAMS, responses=_ENTRY_RESPONSES)
    def get(self, link_id):
        """Read through a signed link

        No credential: the `token` is the proof. A link with a path answers its entry's
        bytes, as the entry GET does (ETag, Range, If-None-Match, its content type); a link
        without answers the manifest at its revision (read its entries under
        `.../entries/{path}` with the same token). Any link that does not work is one 404.
        """
        link, project = _opened(link_id)
        if link.path is not None:
            version = links.pinned_entry(link, project, None)
            links.used(link, "entry", version.path)
            response = http.entry_response(link.tenant_id, version, head=_head())
            return _with_read_headers(response)
        etag = manifest_etag(project.id, link.revision, {"link": link.id})
        links.used(link, "manifest")
        if http.not_modified(etag):
            return _with_read_headers(flask.Response(status=304, headers={"ETag": etag}))
        versions = service.manifest(project, link.revision, "")
        body = {
            "project_id": project.id,
            "revision": link.revision,
            "entries": versions,
            "total_size": sum(v.size for v in versions),
        }
        response = flask.current_app.json.response(ManifestSchema().dump(body))
        response.headers["ETag"] = etag
        return _with_read_headers(response)


@reads.route(
    "/<link_id>/entries/<entry_path:path>",
    parameters=[LINK_PARAM, PATH_PARAM, TOKEN_PARAM],
    merge_slashes=False,
)
class LinkEntry(MethodView):
    @public
    @shared_limit(link_reads, "link_reads", key_func=client_address)
    @reads.doc(
        parameters=_RANGE_PARAMS,
        responses={
            **_ENTRY_RESPONSES,
            "200": {
                "description": "The entry's bytes at the link's revision",
                "headers": ENTRY_HEADERS,
                "content": {"*/*": BINARY},
            },
        },
    )
    def get(self, link_id, path):
        """Read an entry through a signed link

        An entry of the revision a link without a path reads, streamed as the entry GET
        does. A link with a path reaches nothing here: it is read at its own URL.
        """
        link, project = _opened(link_id)
        try:
            wanted = http.entry_path(path)
        except InvalidPath:
            raise links.no_such_link() from None
        version = links.pinned_entry(link, project, wanted)
        links.used(link, "entry", version.path)
        return _with_read_headers(http.entry_response(link.tenant_id, version, head=_head()))


class LinkRenderQuerySchema(ma.Schema):
    token = ma.fields.String(
        load_default="",
        metadata={
            "description": "The link's token, as in its `url`: `<key id>.<signature>`",
            "example": _EXAMPLE_TOKEN,
        },
    )
    max_tokens = ma.fields.Integer(
        required=True,
        validate=validate.Range(min=MIN_TOKENS, max=MAX_REVISION),
        metadata={
            "description": f"The token budget, at least {MIN_TOKENS} and at most "
            "`CTXCLOUD_RENDER_MAX_TOKENS`, as for the project's render",
            "example": 2000,
        },
    )
    prefix = ma.fields.String(
        load_default="",
        validate=validate.Length(max=1024),
        metadata={"description": "Only entries whose path starts with this", "example": "docs/"},
    )
    format = ma.fields.String(
        validate=validate.OneOf(FORMATS),
        metadata={
            "description": "markdown, text or json: overrides the `Accept` header",
            "example": "markdown",
        },
    )


def _negotiated_format() -> str:
    best = flask.request.accept_mimetypes.best_match(
        ["text/markdown", "text/plain", "application/json"], default="text/markdown"
    )
    return {"text/plain": "text", "application/json": "json"}.get(best, "markdown")


@reads.route("/<link_id>/render", parameters=[LINK_PARAM], merge_slashes=False)
class LinkRender(MethodView):
    @public
    @shared_limit(link_reads, "link_reads", key_func=client_address)
    @reads.arguments(LinkRenderQuerySchema(), location="query")
    @reads.doc(
        responses={
            "200": {
                "description": "The document at the link's revision: Markdown by default, plain "
                "text for `Accept: text/plain`, parts and counts for `Accept: application/json` "
                "(or `format=`)",
                "headers": {
                    "Context-Revision": {
                        "schema": {"type": "integer"},
                        "description": "Revision rendered",
                    },
                    "Render-Tokens": {
                        "schema": {"type": "integer"},
                        "description": "Tokens of the document",
                    },
                },
                "content": {
                    "text/markdown": {"schema": {"type": "string"}},
                    "text/plain": {"schema": {"type": "string"}},
                    "application/json": {"schema": RenderSchema},
                },
            },
            "400": {"$ref": "#/components/responses/BadRequest"},
            "404": {"$ref": "#/components/responses/NotFound"},
            "422": {"$ref": "#/components/responses/ValidationError"},
            "429": {"$ref": "#/components/responses/RateLimited"},
        }
    )
    def get(self, query, link_id):
        """Render through a signed link

        The render of the link's revision (a link without a path), within `max_tokens`, as
        the project's render answers it; a link with a path reaches nothing here.
        """
        link, project = links.open_link(link_id, query["token"])
        if link.path is not None:
            raise links.no_such_link()
        prefix = validate_prefix(query["prefix"])
        limit_tokens = int(setting("RENDER_MAX_TOKENS"))
        if query["max_tokens"] > limit_tokens:
            raise ValidationFailed({"max_tokens": [f"At most {limit_tokens}."]})
        output = query.get("format") or _negotiated_format()
        rendered = render(project, link.revision, query["max_tokens"], prefix, output)
        links.used(link, "render")
        return _with_read_headers(rendered.response())
