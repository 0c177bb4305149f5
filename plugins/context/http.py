"""HTTP details of entries: conditional headers, byte ranges, metadata headers, streamed bodies."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from itertools import chain
from typing import Any

import flask
from werkzeug.exceptions import ClientDisconnected
from werkzeug.http import http_date

from ctxcloud import CHUNK_SIZE, BadRequest, ValidationFailed, objects, read_json, tenancy
from ctxcloud.plugins.context.models import EntryVersion
from ctxcloud.plugins.context.options import DEFAULT_CONTENT_TYPE
from ctxcloud.plugins.context.problems import InvalidPath, RangeNotSatisfiable
from ctxcloud.plugins.context.service import Preconditions

METADATA_HEADER = "Entry-Metadata"
# The type HTTP clients put on raw bytes sent without one (curl -d): see content_type().
IMPLICIT_CONTENT_TYPE = "application/x-www-form-urlencoded"
MAX_METADATA_HEADER_BYTES = 8192
_SHA256_HEX = re.compile(r"^[0-9a-fA-F]{64}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# One byte range (RFC 9110 14.1.2): "first-last", "first-" or the suffix "-length"; ASCII digits
# only, and few enough of them that int() is cheap (a longer header is ignored, not parsed).
_SINGLE_BYTE_RANGE = re.compile(
    r"^\s*bytes\s*=\s*([0-9]{0,18})\s*-\s*([0-9]{0,18})\s*$", re.IGNORECASE
)


def entry_path(path: str) -> str:
    """The URL's entry path as decoded; the path rules come after (reads: `existing_path`,
    writes: the write rules).

    werkzeug decodes bytes that are not UTF-8 to U+FFFD; such a path is refused (400
    invalid_path) rather than taken for a path under a replacement character.
    """
    if "\ufffd" in path:
        raw = flask.request.environ.get("PATH_INFO", "")
        try:
            raw.encode("latin-1").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            raise InvalidPath("The entry path is not valid UTF-8.") from None
    return path


def parse_etags(value: str | None, weak_matches: bool) -> tuple[str, ...] | None:
    """An If-Match/If-None-Match list; weak tags count only where weak comparison applies."""
    if value is None:
        return None
    tags = []
    for raw in value.split(","):
        tag = raw.strip()
        if tag.startswith("W/"):
            if not weak_matches:
                continue
            tag = tag[2:]
        if tag:
            tags.append(tag)
    return tuple(tags)


def preconditions() -> Preconditions:
    headers = flask.request.headers
    return Preconditions(
        if_match=parse_etags(headers.get("If-Match"), weak_matches=False),
        if_none_match=parse_etags(headers.get("If-None-Match"), weak_matches=True),
    )


def expected_sha256() -> str | None:
    value = flask.request.headers.get("Content-SHA256")
    if value is None:
        return None
    if not _SHA256_HEX.match(value.strip()):
        raise BadRequest("Content-SHA256 must be 64 hexadecimal characters.")
    return value.strip().lower()


def entry_metadata() -> dict[str, Any]:
    """The Entry-Metadata header's JSON object, read by the strict reader (400 invalid_json).

    Header values reach WSGI as ISO-8859-1 text; their bytes are read as UTF-8, as JSON is.
    """
    raw = flask.request.headers.get(METADATA_HEADER)
    if raw is None:
        return {}
    try:
        data = raw.encode("latin-1")
    except UnicodeEncodeError:  # not from a WSGI server (a test client's str): already text
        data = raw.encode()
    if len(data) > MAX_METADATA_HEADER_BYTES:
        raise ValidationFailed({METADATA_HEADER: [f"At most {MAX_METADATA_HEADER_BYTES} bytes."]})
    value = read_json(data, what=f"The {METADATA_HEADER} header")
    if not isinstance(value, dict):
        raise ValidationFailed({METADATA_HEADER: ["Must be a JSON object."]})
    return value


def content_type(default: str | None = None) -> str:
    """The request's Content-Type, else `default` (the tenant's setting).

    A bare `application/x-www-form-urlencoded` counts as no Content-Type: it is what curl's
    `-d`/`--data-binary` (and other clients' "send these bytes") put on a body whose type the
    caller never chose, and an entry is never a form to decode. With a parameter
    (`application/x-www-form-urlencoded; charset=utf-8`) it is taken as meant and kept.
    """
    value = flask.request.headers.get("Content-Type")
    if value is not None and value.strip().lower() == IMPLICIT_CONTENT_TYPE:
        value = None
    value = value or default or DEFAULT_CONTENT_TYPE
    if len(value) > 255 or _CONTROL.search(value):
        raise ValidationFailed({"Content-Type": ["At most 255 printable characters."]})
    return value


def request_chunks() -> Iterator[bytes]:
    """The request body in chunks, never whole; one cut short raises. How much may come is the
    write rules' to say (plugins/context/write_rules.py), as the chunks stream."""
    request = flask.request
    declared = request.content_length
    # The app-wide limit is for JSON bodies; an entry's is the tenant's max_entry_bytes, which
    # the write rules enforce as the chunks stream (None here would mean the app-wide limit).
    request.max_content_length = tenancy.UNLIMITED_BYTES
    return _read(request.stream, declared)


def _read(stream: Any, declared: int | None) -> Iterator[bytes]:
    total = 0
    try:
        while True:
            chunk = stream.read(CHUNK_SIZE)
            if not chunk:
                break
            total += len(chunk)
            yield chunk
    except ClientDisconnected:
        raise BadRequest("The body ended before Content-Length bytes arrived.") from None
    if declared is not None and total != declared:
        raise BadRequest("The body ended before Content-Length bytes arrived.")


def entry_headers(version: EntryVersion) -> dict[str, str]:
    return {
        "ETag": version.etag,
        "Accept-Ranges": "bytes",
        "Content-Type": version.content_type,
        "Last-Modified": http_date(version.created_at),
        "Entry-Revision": str(version.revision),
        "Entry-SHA256": version.sha256 or "",
        METADATA_HEADER: json.dumps(version.metadata, separators=(",", ":"), ensure_ascii=True),
    }


def not_modified(etag: str) -> bool:
    tags = parse_etags(flask.request.headers.get("If-None-Match"), weak_matches=True)
    return tags is not None and ("*" in tags or etag in tags)


def byte_range(version: EntryVersion) -> tuple[int, int] | None:
    """(start, end inclusive) of a satisfiable single Range, None to send it all, else 416."""
    request = flask.request
    if "Range" not in request.headers:
        return None
    if_range = request.headers.get("If-Range")
    if if_range is not None and if_range.strip() != version.etag:
        return None  # the client's copy is stale: send the whole entry
    matched = _SINGLE_BYTE_RANGE.match(request.headers["Range"])
    if matched is None:
        return None  # other units, several ranges or malformed: ignored, as RFC 9110 allows
    first, last = matched.groups()
    size = version.size
    if first:
        start = int(first)
        if last and int(last) < start:
            return None  # an invalid range-spec: the header is ignored
        end = size - 1 if not last else min(int(last), size - 1)
        satisfiable = start < size
    elif last:
        # A suffix longer than the entry means the whole entry; "-0" asks for nothing.
        start, end = max(size - int(last), 0), size - 1
        satisfiable = int(last) > 0 and size > 0
    else:
        return None  # "bytes=-"
    if not satisfiable:
        raise RangeNotSatisfiable(
            f"The range is outside the entry's {size} bytes.",
            headers={"Content-Range": f"bytes */{size}"},
        )
    return start, end


def entry_response(tenant_id: str, version: EntryVersion, *, head: bool) -> flask.Response:
    """The entry's bytes, streamed and decrypted; an integrity fault before the first byte is a
    500, after it the connection is aborted (the declared length is never completed)."""
    headers = entry_headers(version)
    if not_modified(version.etag):
        return flask.Response(status=304, headers={"ETag": version.etag})
    span = byte_range(version)
    status = 200
    start, end = 0, version.size - 1
    if span is not None:
        start, end = span
        status = 206
        headers["Content-Range"] = f"bytes {start}-{end}/{version.size}"
    length = max(end - start + 1, 0)
    headers["Content-Length"] = str(length)
    if head:
        response = flask.Response(status=status, headers=headers)
        response.headers["Content-Length"] = str(length)
        return response
    chunks = objects.read(
        tenant_id,
        version.project_id,
        version.object_key,
        version.size,
        start,
        end if span is not None else None,
    )
    first = next(chunks, b"")  # authenticates the first piece (1 MiB) before any byte is sent
    return flask.Response(
        chain([first], chunks), status=status, headers=headers, direct_passthrough=True
    )
