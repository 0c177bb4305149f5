"""Swagger UI's files, served from the installed flask-swagger-ui package: no CDN, works offline."""

from __future__ import annotations

import os

import flask
import flask_swagger_ui

SWAGGER_UI_DIR = os.path.join(os.path.dirname(flask_swagger_ui.__file__), "dist")

assets = flask.Blueprint("docs_assets", __name__, url_prefix="/api/v1/docs/static")


@assets.route("/<path:filename>")
def swagger_ui_file(filename: str) -> flask.Response:
    """Static Swagger UI asset; not an API operation, so it is not in OpenAPI."""
    return flask.send_from_directory(SWAGGER_UI_DIR, filename, max_age=86400)


swagger_ui_file._ctxcloud_public = True  # type: ignore[attr-defined]
