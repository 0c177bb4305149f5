"""GET /api/v1/-/plugins: what this process loaded, for operators (platform admins)."""

from __future__ import annotations

import dataclasses

import flask
import marshmallow as ma
from flask.views import MethodView

from ctxcloud.auth import requires
from ctxcloud.blueprint import Blueprint
from ctxcloud.plugin_manager import describe_plugins

blp = Blueprint(
    "introspection",
    __name__,
    url_prefix="/api/v1/-",
    description="Operator introspection (platform admins).",
)


class PluginSchema(ma.Schema):
    name = ma.fields.String(
        metadata={"description": "Entry-point name", "example": "storage_local"}
    )
    module = ma.fields.String(
        metadata={"description": "Imported module", "example": "ctxcloud.plugins.storage_local"}
    )
    distribution = ma.fields.String(
        metadata={"description": "Distribution shipping it", "example": "ctxcloud"}
    )
    version = ma.fields.String(metadata={"description": "Distribution version", "example": "0.1.0"})
    hooks = ma.fields.List(
        ma.fields.String(),
        metadata={"description": "Hooks it implements", "example": ["storage_backends"]},
    )


class PluginListSchema(ma.Schema):
    plugins = ma.fields.List(
        ma.fields.Nested(PluginSchema), metadata={"description": "Every loaded plugin"}
    )
    blocked = ma.fields.List(
        ma.fields.String(),
        metadata={
            "description": "Entry-point names blocked by CTXCLOUD_DISABLED_PLUGINS",
            "example": [],
        },
    )


@blp.route("/plugins")
class Plugins(MethodView):
    @requires("platform:admin")
    @blp.response(200, PluginListSchema)
    def get(self):
        """List loaded plugins

        Every plugin comes from the `ctxcloud.plugins` entry-point group; this shows each one's
        distribution, version and hooks, and the names blocked by configuration.
        """
        ext = flask.current_app.extensions["ctxcloud"]
        return {
            "plugins": [dataclasses.asdict(p) for p in describe_plugins(ext.pm, ext.plugin_dists)],
            "blocked": ext.blocked_plugins,
        }
