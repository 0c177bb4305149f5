"""The flask-smorest Blueprint every route uses: JSON bodies read strictly, required ones required.

flask-smorest parses `@blp.arguments` through the Blueprint's ARGUMENTS_PARSER, a webargs
FlaskParser, which reads a body with json.loads (NaN, duplicate keys, RecursionError...),
ignores a body sent without `Content-Type: application/json` (the schema then loads `{}`),
and treats an absent body as `{}` although the OpenAPI document marks it required. This
Blueprint's parser reads through app.json_input instead, and a required JSON body that is
absent or empty is a 400 (`invalid_json`, rule `empty`), never an empty change.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import flask
import flask_smorest
import marshmallow as ma
from webargs import core
from webargs.flaskparser import FlaskParser
from werkzeug.datastructures import MultiDict

from ctxcloud import json_input


class _QueryArgs(MultiDict):
    """The query string for webargs: werkzeug's ``MultiDict.get`` answers a missing key by
    raising and catching ``BadRequestKeyError`` (an HTTPException built each time), once per
    field a schema declares and the query leaves out; here a miss is a dict lookup."""

    def get(self, key: Any, default: Any = None, type: Any = None) -> Any:
        if key not in self:
            return default
        return super().get(key, default, type)


# What a query schema loads from an absent query string holds only these (its defaults).
_IMMUTABLE = (str, int, float, bool, bytes, type(None))


class JsonBodyParser(FlaskParser):
    """webargs' Flask parser, its JSON location read by the strict reader (415 if not JSON),
    its query location without an exception per absent parameter.

    Most reads send no query string at all (a manifest, an entry), and what a schema loads
    from nothing is the same every time: its defaults. That result is loaded once per schema
    (through webargs and marshmallow, like any other) and each such request gets a copy.
    Only plain values are kept so (a default that is a list or a dict is loaded each time),
    and only without request-dependent validators."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._loaded_from_nothing: dict[tuple[Any, Any], dict[str, Any]] = {}

    def parse(
        self,
        argmap: Any,
        req: Any = None,
        *,
        location: str | None = None,
        unknown: Any = core._UNKNOWN_DEFAULT_PARAM,
        validate: Any = None,
        **kwargs: Any,
    ) -> Any:
        cacheable = (
            location in ("query", "querystring")
            and validate is None
            and (
                isinstance(argmap, ma.Schema)
                or (isinstance(argmap, type) and issubclass(argmap, ma.Schema))
            )
            and not flask.request.query_string
        )
        if cacheable:
            key = (argmap, unknown)
            loaded = self._loaded_from_nothing.get(key)
            if loaded is not None:
                return dict(loaded)
        parsed = super().parse(
            argmap, req, location=location, unknown=unknown, validate=validate, **kwargs
        )
        if (
            cacheable
            and isinstance(parsed, dict)
            and all(isinstance(value, _IMMUTABLE) for value in parsed.values())
        ):
            self._loaded_from_nothing[key] = dict(parsed)
        return parsed

    def _raw_load_json(self, req: flask.Request) -> Any:
        if not json_input.has_body(req):
            return core.missing
        return json_input.read_body(req)

    def load_querystring(self, req: flask.Request, schema: Any) -> Any:
        return self._makeproxy(_QueryArgs(req.args), schema)


class Blueprint(flask_smorest.Blueprint):
    """flask-smorest's Blueprint with the strict JSON parser and required bodies enforced."""

    ARGUMENTS_PARSER = JsonBodyParser()

    def arguments(
        self, schema: Any, *, location: str = "json", required: bool = True, **kwargs: Any
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        decorate = super().arguments(schema, location=location, required=required, **kwargs)
        if location != "json" or not required:
            return decorate

        def decorator(func: Callable[..., Any]) -> Callable[..., Any]:
            parsing = decorate(func)

            @functools.wraps(parsing)
            def with_body(*args: Any, **kwargs: Any) -> Any:
                json_input.require_body(flask.request)
                return parsing(*args, **kwargs)

            return with_body

        return decorator
