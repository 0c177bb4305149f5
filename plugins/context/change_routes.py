"""/api/v1/projects/{project}/context/changes: the changes feed, and long-polling on it."""

from __future__ import annotations

import marshmallow as ma
from flask.views import MethodView
from marshmallow import validate

from ctxcloud import MAX_PAGE_SIZE, Blueprint, current_actor, page_and_size, requires
from ctxcloud.plugins.context import changes, projects
from ctxcloud.plugins.context.schemas import MAX_REVISION
from ctxcloud.plugins.context.watch import MAX_WAIT

blp = Blueprint(
    "context_changes",
    __name__,
    url_prefix="/api/v1/projects/<project>/context/changes",
    description="What changed in a project's context since a revision, and waiting for it.",
)

PROJECT_PARAM = {
    "in": "path",
    "name": "project",
    "required": True,
    "schema": {"type": "string"},
    "description": "Project id or slug",
    "example": "handbook",
}
_EXAMPLE_SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


def wait_field() -> ma.fields.Float:
    return ma.fields.Float(
        validate=validate.Range(min=0, min_inclusive=False, max=MAX_WAIT),
        metadata={
            "description": "Seconds to wait (0 < wait <= 60) for the project to move past the "
            "revision asked about, when it has not yet; the answer comes as soon as it moves",
            "example": 30,
        },
    )


class ChangesQuerySchema(ma.Schema):
    since = ma.fields.Integer(
        required=True,
        validate=validate.Range(min=0, max=MAX_REVISION),
        metadata={
            "description": "The revision the caller has: changes after it are listed",
            "example": 3,
        },
    )
    wait = wait_field()


class FeedChangeSchema(ma.Schema):
    revision = ma.fields.Integer(
        metadata={"description": "The revision that made the change", "example": 4}
    )
    path = ma.fields.String(metadata={"description": "Entry path", "example": "docs/adr/0002.md"})
    action = ma.fields.String(
        validate=validate.OneOf(["put", "delete"]),
        metadata={"description": "`put` (written) or `delete`", "example": "put"},
    )
    size = ma.fields.Integer(metadata={"description": "Bytes written (puts only)", "example": 1234})
    sha256 = ma.fields.String(
        metadata={
            "description": "SHA-256 of the bytes written (puts only)",
            "example": _EXAMPLE_SHA,
        }
    )


class ChangesSchema(ma.Schema):
    from_revision = ma.fields.Integer(
        metadata={"description": "`since`, as asked: changes after it are listed", "example": 3}
    )
    revision = ma.fields.Integer(
        metadata={
            "description": "The head this answer is up to: continue with `since` set to it once "
            "every page is read",
            "example": 5,
        }
    )
    history_starts_at = ma.fields.Integer(
        metadata={
            "description": "The oldest readable revision (revisions before it were pruned); a "
            "`since` before it is a 410 `history_pruned`",
            "example": 0,
        }
    )
    changes = ma.fields.List(
        ma.fields.Nested(FeedChangeSchema),
        metadata={
            "description": "Every path-level change after `from_revision` up to `revision`, "
            "by revision then path (one per path and revision)",
        },
    )


EXAMPLE = {
    "from_revision": 3,
    "revision": 5,
    "history_starts_at": 0,
    "changes": [
        {"revision": 4, "path": "docs/adr/0002.md", "action": "put", "size": 1234,
         "sha256": _EXAMPLE_SHA},
        {"revision": 5, "path": "notes/old.md", "action": "delete"},
    ],
}  # fmt: skip


@blp.route("", parameters=[PROJECT_PARAM])
class Changes(MethodView):
    @requires("context:read")
    @blp.arguments(ChangesQuerySchema(), location="query")
    @blp.response(200, ChangesSchema, example=EXAMPLE)
    @blp.paginate(max_page_size=MAX_PAGE_SIZE)
    @blp.alt_response(404, response="NotFound")
    @blp.alt_response(409, response="RevisionAhead")
    @blp.alt_response(410, response="HistoryPruned")
    @blp.alt_response(422, response="ValidationError")
    @blp.alt_response(503, response="TooManyWatchers")
    def get(self, query, project, pagination_parameters):
        """List the changes since a revision

        Every path-level change (`put` with its size and SHA-256, or `delete`) of the revisions
        after `since` up to the head, by revision then path, paginated (`page`, `page_size`,
        `X-Pagination`). Read every page, then ask again with `since` set to the answer's
        `revision`. A `since` older than the kept history (`history_starts_at`) is a 410
        `history_pruned`: read the manifest at the head and continue from its revision; a
        `since` past the head is a 409 `revision_ahead`.

        With `wait` (seconds, at most 60), when the head is still `since`, the request waits
        and answers as soon as a change commits, or with no changes after `wait` seconds.
        Each server process lets at most `WATCH_MAX_WAITERS` requests wait at once; past that
        the answer is at once a 503 `too_many_watchers` with `Retry-After`.
        """
        actor = current_actor()
        found = projects.resolve(actor, project)
        since = query["since"]
        changes.check_since(found, since)
        if "wait" in query and found.revision == since:
            found = changes.wait_for_change(actor, project, found, query["wait"])
        body, total = changes.list_changes(found, since, *page_and_size(pagination_parameters))
        pagination_parameters.item_count = total
        return body
