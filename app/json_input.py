"""The one strict reader for every JSON text a client sends: bodies, get_json and headers.

Python's json module takes what RFC 8259 forbids or leaves open, and fails badly on the rest:
NaN and Infinity literals (and 1e309, read as infinity) that the service would store and then
echo as invalid JSON; the last of two equal keys, silently (a proxy that keeps the first sees
another request); a RecursionError on deep nesting and a ValueError on an integer of
thousands of digits (both 500s). This reader refuses each of them, before anything reads the
value, with a 400 `invalid_json` whose `rule` names what was broken and whose `line` and
`column` say where, when that is known.

Requests whose body is too large are refused by the request class (a 413); this module also
gives Flask that class and the JSON provider that reads through this reader and writes only
strict RFC 8259 JSON.
"""

from __future__ import annotations

import codecs
import json
import logging
import math
import re
from itertools import accumulate
from typing import IO, Any

import flask
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.utils import cached_property
from werkzeug.wsgi import LimitedStream, get_input_stream

from ctxcloud.errors import InvalidJson, UnsupportedMediaType

# Deep enough for any real document (metadata included), far below Python's recursion limit.
MAX_DEPTH = 64
# Digits of one number (integer, fraction and exponent together); checked before int() or
# float() sees it, so no number costs more than a constant to read.
MAX_NUMBER_DIGITS = 100
JSON_MEDIA_TYPE = "application/json"

log = logging.getLogger("ctxcloud.json")

# A string literal; an unterminated one runs to the end of the text (the parser then says so).
_STRING = r'"[^"\\]*(?:\\[\s\S]?[^"\\]*)*(?:"|\Z)'
_STRINGS = re.compile(_STRING)
_NOT_BRACKETS = re.compile(r"[^\[\]{}]+")
_NESTING = {"[": 1, "{": 1, "]": -1, "}": -1}
# Numbers that could break a limit: a long run of number characters, or an exponent of three
# digits (the only way to overflow to infinity with at most 100 digits). Matches inside
# strings merely send the text through the slower, checking decoder.
_RISKY_NUMBER = re.compile(rf"[0-9.eE+-]{{{MAX_NUMBER_DIGITS + 1}}}|[eE][+-]?[0-9]{{3}}")
# What may be a \uD800-\uDFFF escape (or an escaped backslash before "ud800": the scan decides).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
# Tokens the position scan reads at most: past them a refused text's problem has no position
# (a text of millions of tokens is refused at once rather than scanned for seconds).
MAX_SCANNED_TOKENS = 200_000
# The tokens that can break a rule, in document order (see _first_violation).
_TOKENS = re.compile(
    rf"(?P<string>{_STRING})(?P<key>\s*:)?"
    r"|(?P<open>[\[{])|(?P<close>[\]}])"
    r"|(?P<number>-?[0-9][0-9.eE+-]*)"
    r"|(?P<constant>NaN|-?Infinity)"
)

_UNPAIRED_SURROGATE = "holds an unpaired surrogate escape (\\ud800-\\udfff): no Unicode character"

RULES = (
    "syntax",
    "empty",
    "encoding",
    "depth",
    "number_digits",
    "non_finite_number",
    "duplicate_key",
)


def loads(data: bytes | str, *, what: str = "The body") -> Any:
    """Parse one JSON text strictly; any broken rule is a 400 `invalid_json` (see the module).

    `what` names the text in the problem's detail ("The Entry-Metadata header").
    """
    text = _text(data, what)
    if not text:
        raise InvalidJson(f"{what} is empty, where a JSON text was expected.", rule="empty")
    if _nests_deeper_than_allowed(text):
        raise _first_violation(text, what) or _problem("depth", None, what)
    decoder = _CHECKING if _RISKY_NUMBER.search(text) else _FAST
    try:
        value = decoder.decode(text)
    except _Refused as refused:
        located = _first_violation(text, what)
        raise located or _problem(refused.rule, refused.subject, what) from None
    except json.JSONDecodeError as exc:
        raise InvalidJson(
            f"{what} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno}).",
            rule="syntax",
            line=exc.lineno,
            column=exc.colno,
        ) from None
    except RecursionError:  # only if MAX_DEPTH were raised past what the stack allows
        raise _problem("depth", None, what) from None
    if _SURROGATE_ESCAPE.search(text):
        problem = _first_violation(text, what)
        if problem is not None:
            raise problem
    return value


# The toolkit's name for the strict reader (ctxcloud.read_json).
read_json = loads


def is_json_media_type(mimetype: str | None) -> bool:
    """application/json or application/<anything>+json; parameters (charset) do not matter."""
    mimetype = (mimetype or "").split(";", 1)[0].strip().lower()
    return mimetype == JSON_MEDIA_TYPE or (
        mimetype.startswith("application/") and mimetype.endswith("+json")
    )


def not_json_problem(mimetype: str | None) -> UnsupportedMediaType:
    """The 415 for a body sent as something other than JSON, naming the type to send."""
    sent = f"'{mimetype[:100]}'" if mimetype else "no Content-Type"
    return UnsupportedMediaType(
        f"This operation takes a JSON body: send it with Content-Type: {JSON_MEDIA_TYPE} "
        f"(the request has {sent})."
    )


def has_body(request: flask.Request) -> bool:
    """Whether the request carries body bytes (a chunked body is read, within the limit)."""
    if request.content_length is not None:
        return request.content_length > 0
    return bool(request.get_data(cache=True))


def read_body(request: flask.Request) -> Any:
    """The request's JSON body, strictly parsed: 415 if it is not sent as JSON.

    Call it only when `has_body`; an absent body is the caller's to judge (required or not).
    """
    if not is_json_media_type(request.mimetype):
        raise not_json_problem(request.mimetype)
    return loads(request.get_data(cache=True))


def require_body(request: flask.Request) -> None:
    """A required JSON body that is absent or empty is a 400, never an empty change."""
    if not has_body(request):
        raise InvalidJson(
            f"The request has no body; this operation takes a JSON body "
            f"(Content-Type: {JSON_MEDIA_TYPE}).",
            rule="empty",
        )


# --- reading --------------------------------------------------------------------------------


class _Refused(Exception):
    """Raised from a decoder hook: the rule broken and what broke it."""

    def __init__(self, rule: str, subject: str | None = None) -> None:
        super().__init__(rule)
        self.rule, self.subject = rule, subject


def _text(data: bytes | str, what: str) -> str:
    if isinstance(data, bytes | bytearray | memoryview):
        data = bytes(data)
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            prefix = data[: exc.start].decode("utf-8", errors="replace")
            raise _problem("encoding", f"is not UTF-8 ({exc.reason})", what, prefix) from None
    else:
        text = data
    if text.startswith(codecs.BOM_UTF8.decode("utf-8")):
        raise _problem("encoding", "starts with a byte order mark (send UTF-8 without)", what, "")
    return text


def _nests_deeper_than_allowed(text: str) -> bool:
    """Depth before parsing, at C speed: brackets outside strings, as a running sum."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return False
    brackets = _NOT_BRACKETS.sub("", _STRINGS.sub("", text))
    return max(accumulate(map(_NESTING.__getitem__, brackets)), default=0) > MAX_DEPTH


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) < len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _Refused("duplicate_key", key)
            seen.add(key)
    return value


def _constant(name: str) -> Any:
    raise _Refused("non_finite_number", name)


def _checked_int(literal: str) -> int:
    if len(literal) - literal.startswith("-") > MAX_NUMBER_DIGITS:
        raise _Refused("number_digits", literal)
    return int(literal)


def _checked_float(literal: str) -> float:
    if sum(character.isdigit() for character in literal) > MAX_NUMBER_DIGITS:
        raise _Refused("number_digits", literal)
    value = float(literal)
    if math.isinf(value):
        raise _Refused("non_finite_number", literal)
    return value


# Module-level decoders, as json.loads keeps its own: most texts need no per-number hook.
_FAST = json.JSONDecoder(object_pairs_hook=_object, parse_constant=_constant)
_CHECKING = json.JSONDecoder(
    object_pairs_hook=_object,
    parse_constant=_constant,
    parse_int=_checked_int,
    parse_float=_checked_float,
)


# --- saying what and where ------------------------------------------------------------------


def _position(text: str, offset: int) -> tuple[int, int]:
    """1-based line and column of `offset`, counted as json.JSONDecodeError counts them."""
    return text.count("\n", 0, offset) + 1, offset - text.rfind("\n", 0, offset)


def _shown(literal: str) -> str:
    return literal if len(literal) <= 24 else f"{literal[:12]}...{literal[-6:]}"


def _problem(rule: str, subject: str | None, what: str, before: str | None = None) -> InvalidJson:
    """The problem for a broken rule; `before` is the text up to where it broke, if known."""
    if rule == "depth":
        detail = f"{what} nests deeper than {MAX_DEPTH} levels of arrays and objects"
    elif rule == "number_digits":
        detail = f"{what} holds a number of more than {MAX_NUMBER_DIGITS} digits"
    elif rule == "non_finite_number":
        detail = (
            f"{what} holds {_shown(subject or '')}: NaN, Infinity and numbers past the "
            "double range are no JSON numbers"
        )
    elif rule == "duplicate_key":
        detail = f"{what} holds the key {json.dumps(_shown(subject or ''))} twice in one object"
    else:  # encoding: the subject says how
        detail = f"{what} {subject}"
    extra: dict[str, Any] = {}
    if before is not None:
        line, column = _position(before, len(before))
        detail += f" (line {line}, column {column})"
        extra = {"line": line, "column": column}
    return InvalidJson(detail + ".", rule=rule, **extra)


def _string_value(literal: str) -> str:
    try:
        return json.loads(literal)
    except ValueError:
        return literal


def _first_violation(text: str, what: str) -> InvalidJson | None:
    """The first broken rule in document order, with its position; None if none is found
    (within MAX_SCANNED_TOKENS).

    The decoders' hooks learn what broke a rule but not where, and a depth found before
    parsing has no position either: this scan, run only once a text is refused, finds it.
    """
    nesting: list[set[str] | None] = []

    def at(rule: str, subject: str | None, offset: int) -> InvalidJson:
        return _problem(rule, subject, what, text[:offset])

    for count, token in enumerate(_TOKENS.finditer(text)):
        if count == MAX_SCANNED_TOKENS:
            return None
        if token["open"]:
            nesting.append(set() if token["open"] == "{" else None)
            if len(nesting) > MAX_DEPTH:
                return at("depth", None, token.start())
        elif token["close"]:
            if nesting:
                nesting.pop()
        elif token["string"] is not None:
            literal = token["string"]
            value = _string_value(literal) if "\\" in literal else literal[1:-1]
            if "\\u" in literal and not _is_unicode(value):
                return at("encoding", _UNPAIRED_SURROGATE, token.start())
            keys = nesting[-1] if nesting else None
            if token["key"] and keys is not None:
                if value in keys:
                    return at("duplicate_key", value, token.start())
                keys.add(value)
        elif token["number"]:
            literal = token["number"]
            if sum(character.isdigit() for character in literal) > MAX_NUMBER_DIGITS:
                return at("number_digits", literal, token.start())
            if _overflows(literal):
                return at("non_finite_number", literal, token.start())
        elif token["constant"]:
            return at("non_finite_number", token["constant"], token.start())
    return None


def _is_unicode(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _overflows(literal: str) -> bool:
    try:
        return math.isinf(float(literal))
    except ValueError:
        return False  # not a number the parser would take: it reports the syntax error


# --- Flask's side: the request class and the JSON provider ----------------------------------


def body_too_large(limit: int) -> RequestEntityTooLarge:
    """The 413 (`payload_too_large`) for a body past the request's limit."""
    return RequestEntityTooLarge(f"The request body is larger than the limit of {limit} bytes.")


class _BoundedStream(LimitedStream):
    """A body stream limited to a maximum that says when the client sent more.

    werkzeug's LimitedStream, limited by max_content_length rather than Content-Length (the
    case of every chunked body, whose length nobody declared), stops reading at the limit and
    returns what it read from readall(): the body cut short, which then reads as malformed
    JSON (a 400) instead of a 413. This one reads one byte further to know.
    """

    def __init__(self, stream: IO[bytes], limit: int) -> None:
        super().__init__(stream, limit, is_max=True)
        self._source = stream

    def on_exhausted(self) -> None:
        raise body_too_large(self.limit)

    def readall(self) -> bytes:
        data = super().readall()
        if self.is_exhausted and self._source.read(1):
            raise body_too_large(self.limit)
        return data


class Request(flask.Request):
    """Flask's request, with a body past `max_content_length` always a 413 (never cut short)
    and JSON problems (`get_json`) answered as problem+json rather than werkzeug's text."""

    @cached_property
    def stream(self) -> IO[bytes]:
        if self.shallow:
            raise RuntimeError("This request was created with 'shallow=True'.")
        limit = self.max_content_length
        declared = self.content_length
        if limit is not None and declared is not None and declared > limit:
            raise body_too_large(limit)
        if limit is not None and "wsgi.input_terminated" in self.environ:
            # The server ends the stream (gunicorn does, and de-chunks chunked bodies).
            return _BoundedStream(self.environ["wsgi.input"], limit)
        return get_input_stream(self.environ, max_content_length=limit)

    def on_json_loading_failed(self, e: ValueError | None) -> Any:
        if isinstance(e, InvalidJson):
            raise e
        if e is None:
            raise not_json_problem(self.mimetype)
        return super().on_json_loading_failed(e)


_non_finite_logged = False


def _finite(value: Any) -> Any:
    """`value` with every NaN or infinity (in dicts, lists and tuples) replaced by None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


class JSONProvider(DefaultJSONProvider):
    """The app's JSON: read with the strict reader, written as strict RFC 8259 JSON.

    A NaN or infinity that reaches a response (none should: stored values are cleaned when
    read) is written as null and logged once, rather than as invalid JSON or a 500.
    """

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        if kwargs:
            raise TypeError(f"the strict JSON reader takes no options ({', '.join(kwargs)})")
        return loads(s)

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        kwargs.setdefault("allow_nan", False)
        try:
            return super().dumps(obj, **kwargs)
        except ValueError as exc:
            if kwargs["allow_nan"] or "Out of range float" not in str(exc):
                raise
        global _non_finite_logged
        if not _non_finite_logged:
            _non_finite_logged = True
            log.warning("a response held NaN or Infinity; written as null (logged once)")
        return super().dumps(_finite(obj), **kwargs)


def install(app: flask.Flask, sort_keys: bool = False) -> None:
    """Make `app` read every body, get_json included, and write every JSON, strictly."""
    app.request_class = Request
    app.json = JSONProvider(app)
    app.json.sort_keys = sort_keys
