"""Entry paths: relative, '/'-separated UTF-8, at most 1024 bytes, nothing that could escape."""

from __future__ import annotations

import re

from werkzeug.routing import BaseConverter

from app.errors import InvalidPath

MAX_PATH_BYTES = 1024
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def validate_path(path: str) -> str:
    """Return the path unchanged if valid, else raise InvalidPath (400) saying why."""
    if not path:
        raise InvalidPath("The entry path is empty.")
    if len(path.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise InvalidPath(f"The entry path is longer than {MAX_PATH_BYTES} bytes.")
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidPath("The entry path is not valid UTF-8.") from None
    if path.startswith("/"):
        raise InvalidPath("The entry path must be relative (no leading '/').")
    if "\\" in path:
        raise InvalidPath("The entry path must not contain a backslash.")
    if _CONTROL.search(path):
        raise InvalidPath("The entry path must not contain control characters.")
    for segment in path.split("/"):
        if segment in ("", ".", ".."):
            raise InvalidPath("The entry path has an empty, '.' or '..' segment.")
    return path


def validate_prefix(prefix: str) -> str:
    """A manifest filter: a path's beginning (it may end with '/'); same characters as paths."""
    if prefix == "":
        return prefix
    validate_path(prefix[:-1] if prefix.endswith("/") else prefix)
    return prefix


class EntryPathConverter(BaseConverter):
    """The rest of the URL as an entry path, whatever it holds (even nothing, a leading '/' or
    a newline), so that every bad path reaches validate_path and is a 400 invalid_path rather
    than a 404 or a redirect from the router. Rules using it must set merge_slashes=False."""

    regex = r"[\s\S]*"
    part_isolating = False
    weight = 200
