"""What ctxcloud.api relies on in flask-smorest 0.47 beyond its documented API, pinned.

ctxcloud overrides one flask-smorest method, register_blueprint (to write the document when it
is first read), and pins its body; it completes the document through spec_kwargs,
`api.spec.components` and apispec plugins. But three of the components it writes replace
ones flask-smorest registers lazily, under names flask-smorest chooses and its decorators
reference: a response per HTTP status and DEFAULT_ERROR (as `application/json`), and the
X-Pagination header (as a `schema`, OpenAPI's `simple` style). These tests make a bare
flask-smorest Api and fail if an upgrade changes any of that, so that the replacement is
revisited instead of quietly lost (errors back to `application/json`, or an X-Pagination
header documented in the wrong style).
"""

from __future__ import annotations

import http
import inspect

import flask
import flask_smorest
import marshmallow as ma
from flask.views import MethodView

import ctxcloud.api


def bare_app() -> flask.Flask:
    app = flask.Flask("pins")
    app.config.update(API_TITLE="pins", API_VERSION="1", OPENAPI_VERSION="3.1.0")
    return app


def bare_api(api_class: type[flask_smorest.Api] = flask_smorest.Api) -> flask_smorest.Api:
    return api_class(bare_app())


class ItemSchema(ma.Schema):
    name = ma.fields.String()


def documented_operation(api: flask_smorest.Api) -> dict:
    """The document of an operation using @arguments, @response and @paginate."""
    blp = flask_smorest.Blueprint("items", __name__, url_prefix="/items")

    @blp.route("/")
    class Items(MethodView):
        @blp.arguments(ItemSchema, location="query")
        @blp.response(200, ItemSchema(many=True))
        @blp.paginate(flask_smorest.Page)
        def get(self, args: dict) -> list:
            return []

    api.register_blueprint(blp)
    return api.spec.to_dict()["paths"]["/items/"]["get"]


def test_default_responses_are_lazy_one_per_status_and_default_error_as_json():
    api = bare_api()
    components = api.spec.components
    assert components.responses == {}
    expected = {status.name for status in http.HTTPStatus} | {api.DEFAULT_ERROR_RESPONSE_NAME}
    assert set(components.responses_lazy) == expected
    assert api.DEFAULT_ERROR_RESPONSE_NAME == "DEFAULT_ERROR"
    for name in ("UNPROCESSABLE_ENTITY", "NOT_FOUND", "DEFAULT_ERROR"):
        assert list(components.responses_lazy[name]["content"]) == ["application/json"], name


def test_the_error_schema_is_the_one_default_responses_document():
    class ProblemApi(flask_smorest.Api):
        ERROR_SCHEMA = ctxcloud.api.ProblemSchema

    assert "Error" in bare_api().spec.components.schemas  # flask-smorest's own, otherwise
    components = bare_api(ProblemApi).spec.components
    assert "Problem" in components.schemas and "Error" not in components.schemas
    error = components.responses_lazy["NOT_FOUND"]["content"]["application/json"]
    assert error["schema"] == {"$ref": "#/components/schemas/Problem"}


def test_the_pagination_header_is_lazy_and_its_schema_is_pagination_metadata():
    components = bare_api().spec.components
    assert "PAGINATION" in components.headers_lazy and "PAGINATION" not in components.headers
    header = components.headers_lazy["PAGINATION"]
    assert header["schema"] == {"$ref": "#/components/schemas/PaginationMetadata"}
    assert "content" not in header
    assert "PaginationMetadata" in components.schemas


def test_decorators_reference_the_default_components_by_name():
    operation = documented_operation(bare_api())
    responses = operation["responses"]
    assert responses["422"] == {"$ref": "#/components/responses/UNPROCESSABLE_ENTITY"}
    assert responses["default"] == {"$ref": "#/components/responses/DEFAULT_ERROR"}
    assert responses["200"]["headers"]["X-Pagination"] == {
        "$ref": "#/components/headers/PAGINATION"
    }


def test_replacing_a_lazy_component_is_what_references_get():
    """What ctxcloud.api does: drop the lazy entry, register its own (lazy) under the name."""
    api = bare_api()
    components = api.spec.components
    components.responses_lazy.pop("UNPROCESSABLE_ENTITY")
    components.response("UNPROCESSABLE_ENTITY", {"description": "ours"}, lazy=True)
    documented_operation(api)
    assert components.responses["UNPROCESSABLE_ENTITY"] == {"description": "ours"}


def test_no_doc_routes_without_openapi_url_prefix():
    """ctxcloud serves the document itself (built once per app); flask-smorest stays off."""
    app = bare_app()
    flask_smorest.Api(app)
    assert app.config.get("OPENAPI_URL_PREFIX") is None
    assert "api-docs" not in app.blueprints
    assert [rule.rule for rule in app.url_map.iter_rules()] == ["/static/<path:filename>"]


# flask-smorest 0.47's Api.register_blueprint, which ctxcloud.api.Api replaces with the same
# steps, its documentation part queued until the document is first read.
REGISTER_BLUEPRINT_BODY = [
    'blp_name = options.get("name", blp.name)',
    'self._app.extensions["flask-smorest"]["blp_name_to_api"][blp_name] = self',
    "self._app.register_blueprint(blp, **options)",
    "blp.register_views_in_doc(",
    "self,",
    "self._app,",
    "self.spec,",
    "name=blp_name,",
    "parameters=parameters,",
    ")",
    'self.spec.tag({"name": blp_name, "description": blp.description})',
]


def test_ctxcloud_overrides_only_register_blueprint_which_is_unchanged():
    """ctxcloud.api.Api overrides one flask-smorest method (and __init__, and `spec` becomes a
    property): register_blueprint, so that writing a blueprint's documentation waits until the
    document is read. The override repeats flask-smorest's steps: if an upgrade changes them,
    this fails, so the override is revisited rather than quietly diverging."""
    overridden = sorted(
        name
        for name in vars(ctxcloud.api.Api)
        if inspect.isfunction(getattr(flask_smorest.Api, name, None))
    )
    assert overridden == ["__init__", "register_blueprint"]
    source = inspect.getsource(flask_smorest.Api.register_blueprint)
    code = [
        line.strip()
        for line in source.split('"""')[2].splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    assert code == REGISTER_BLUEPRINT_BODY
