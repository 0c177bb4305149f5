"""Health: liveness (the process) and readiness (every dependency, each checked through a hook)."""

from __future__ import annotations

import logging
from collections.abc import Callable

import flask
import marshmallow as ma
from flask.views import MethodView

from ctxcloud.auth import public
from ctxcloud.blueprint import Blueprint
from ctxcloud.version import VERSION

log = logging.getLogger("ctxcloud.health")
blp = Blueprint(
    "health",
    __name__,
    url_prefix="/api/v1/health",
    description="Liveness and readiness probes (no authentication).",
)


class HealthSchema(ma.Schema):
    status = ma.fields.String(
        required=True,
        metadata={"description": "ok, or unavailable when a check fails", "example": "ok"},
    )
    version = ma.fields.String(
        required=True, metadata={"description": "The service version", "example": "0.1.0"}
    )
    checks = ma.fields.Dict(
        keys=ma.fields.String(),
        values=ma.fields.String(),
        metadata={
            "description": "Each dependency's state: ok or unavailable",
            "example": {"database": "ok", "storage": "ok", "cache": "ok"},
        },
    )
    failing = ma.fields.List(
        ma.fields.String(),
        metadata={
            "description": "Names of the failing checks (present on 503)",
            "example": ["storage"],
        },
    )


class LiveSchema(ma.Schema):
    status = ma.fields.String(
        required=True, metadata={"description": "ok while the process serves", "example": "ok"}
    )
    version = ma.fields.String(
        required=True, metadata={"description": "The service version", "example": "0.1.0"}
    )


def run_checks(checks: dict[str, Callable[[], None]]) -> tuple[dict, int]:
    """Run every check; a failure is named in the body and logged with its cause, never exposed."""
    results: dict[str, str] = {}
    for name, check in checks.items():
        try:
            check()
            results[name] = "ok"
        except Exception as exc:
            log.warning("health check failed", extra={"check": name, "error": type(exc).__name__})
            results[name] = "unavailable"
    failing = [name for name, state in results.items() if state != "ok"]
    body = {"status": "unavailable" if failing else "ok", "version": VERSION, "checks": results}
    if failing:
        body["failing"] = failing
    return body, 503 if failing else 200


def _readiness() -> tuple[dict, int]:
    return run_checks(flask.current_app.extensions["ctxcloud"].health_checks)


@blp.route("")
class Health(MethodView):
    @public
    @blp.response(200, HealthSchema)
    @blp.alt_response(
        503, schema=HealthSchema, description="A dependency is down; `failing` names it"
    )
    def get(self):
        """Service health with every dependency check

        Runs the database, storage and cache checks (and any plugin's) and reports each.
        """
        return _readiness()


@blp.route("/ready")
class Ready(MethodView):
    @public
    @blp.response(200, HealthSchema)
    @blp.alt_response(
        503, schema=HealthSchema, description="A dependency is down; `failing` names it"
    )
    def get(self):
        """Readiness probe

        Same checks as /health: take this replica out of rotation while one fails.
        """
        return _readiness()


@blp.route("/live")
class Live(MethodView):
    @public
    @blp.response(200, LiveSchema)
    def get(self):
        """Liveness probe

        Answers while the process can serve requests; checks no dependency.
        """
        return {"status": "ok", "version": VERSION}
