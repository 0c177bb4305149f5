"""Query arguments through the toolkit's Blueprint: a request without a query string gets its
schema's defaults (loaded once per schema), one with a query string gets it parsed, and no
request ever sees another's arguments."""

from __future__ import annotations

import flask
import marshmallow as ma
from flask_smorest import Api

from ctxcloud.blueprint import Blueprint


class Listing(ma.Schema):
    prefix = ma.fields.String(load_default="")
    limit = ma.fields.Integer(load_default=50, validate=ma.validate.Range(min=1, max=100))
    loads = 0

    @ma.post_load
    def count(self, data, **kwargs):
        type(self).loads += 1
        return data


class Tagged(ma.Schema):
    tags = ma.fields.List(ma.fields.String(), load_default=list)


def make_app() -> flask.Flask:
    app = flask.Flask(__name__)
    app.config.update(API_TITLE="t", API_VERSION="1", OPENAPI_VERSION="3.0.3")
    api = Api(app)
    blp = Blueprint("q", __name__)

    @blp.route("/listing")
    @blp.arguments(Listing(), location="query")
    def listing(args):
        answer = dict(args)
        args["prefix"] = "changed by the view"  # must not reach the next request
        return answer

    @blp.route("/tagged")
    @blp.arguments(Tagged, location="query")
    def tagged(args):
        args["tags"].append("changed by the view")  # a mutable default: never shared
        return {"tags": args["tags"]}

    api.register_blueprint(blp)
    return app


def test_a_request_without_a_query_gets_the_defaults_loaded_once():
    client = make_app().test_client()
    Listing.loads = 0
    for _ in range(3):
        assert client.get("/listing").get_json() == {"prefix": "", "limit": 50}
    assert Listing.loads == 1
    client.get("/listing?prefix=a")
    client.get("/listing?prefix=b")
    assert Listing.loads == 3  # a query string is loaded each time


def test_a_query_string_is_parsed_and_checked_between_requests_without_one():
    client = make_app().test_client()
    assert client.get("/listing").get_json() == {"prefix": "", "limit": 50}
    assert client.get("/listing?prefix=docs/&limit=7").get_json() == {
        "prefix": "docs/",
        "limit": 7,
    }
    assert client.get("/listing?limit=0").status_code == 422
    assert client.get("/listing").get_json() == {"prefix": "", "limit": 50}


def test_a_mutable_default_is_never_shared_between_requests():
    client = make_app().test_client()
    for _ in range(3):
        assert client.get("/tagged").get_json() == {"tags": ["changed by the view"]}
