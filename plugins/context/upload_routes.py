"""/api/v1/projects/{project}/context/uploads: staged uploads for commits of any size."""

from __future__ import annotations

import flask
from flask.views import MethodView

from ctxcloud import Blueprint, current_actor, requires
from ctxcloud.plugins.context import http, projects, uploads
from ctxcloud.plugins.context.routes import PROJECT_PARAM
from ctxcloud.plugins.context.schemas import UploadSchema, UploadStoredSchema

blp = Blueprint(
    "context_uploads",
    __name__,
    url_prefix="/api/v1/projects/<project>/context/uploads",
    description="Staged uploads: a commit's bytes, sent (streamed) before the commit names "
    "them, so a commit of any size stays one all-or-nothing revision.",
)

UPLOAD_PARAM = {
    "in": "path",
    "name": "upload_id",
    "required": True,
    "schema": {"type": "string"},
    "description": "The upload's id, from `POST .../uploads`",
}


@blp.route("", parameters=[PROJECT_PARAM])
class Uploads(MethodView):
    @requires("context:write")
    @blp.response(201, UploadSchema)
    @blp.alt_response(403, response="QuotaExceeded")
    @blp.alt_response(404, response="NotFound")
    def post(self, project):
        """Open a staged upload

        Send its bytes with `PUT .../uploads/{upload_id}`, then name it in a commit's put
        item (`{"path", "upload_id"}`) before `expires_at` (`CTXCLOUD_UPLOAD_EXPIRES`, a day
        by default). Past the tenant's `max_open_uploads` quota (uploads neither committed
        nor expired): 403 `quota_exceeded`.
        """
        actor = current_actor()
        return uploads.create_upload(actor, projects.resolve(actor, project)), 201


@blp.route("/<upload_id>", parameters=[PROJECT_PARAM, UPLOAD_PARAM])
class UploadItem(MethodView):
    @requires("context:write")
    @blp.doc(
        parameters=[
            {
                "in": "header",
                "name": "Content-SHA256",
                "schema": {"type": "string"},
                "description": "Hex SHA-256 of the body; a mismatch stores nothing (400)",
            }
        ],
        requestBody={
            "required": True,
            "content": {"*/*": {}},
            "description": "The bytes, streamed (the entry's type is given in the commit)",
        },
    )
    @blp.response(200, UploadStoredSchema)
    @blp.alt_response(400, response="BadRequest")
    @blp.alt_response(403, response="QuotaExceeded")
    @blp.alt_response(404, response="NotFound")
    @blp.alt_response(409, response="Conflict")
    @blp.alt_response(413, response="EntryTooLarge")
    def put(self, project, upload_id):
        """Send a staged upload's bytes

        Streams the body to encrypted storage under an entry's rules: past the tenant's
        `max_entry_bytes` it is a 413 (from `Content-Length` before the body is read, else
        while streaming), past `max_storage_bytes` a 403 `quota_exceeded`, a `Content-SHA256`
        mismatch a 400 `checksum_mismatch`; nothing is kept then, and the upload can be sent
        again. Once stored, the bytes count toward the tenant's storage until the upload
        expires or becomes an entry. A second send of stored bytes is a 409; an unknown or
        expired upload a 404.
        """
        actor = current_actor()
        found = projects.resolve(actor, project)
        return uploads.send(
            actor,
            found,
            upload_id,
            http.request_chunks(),
            flask.request.content_length,
            http.expected_sha256(),
        )
