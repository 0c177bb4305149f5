"""Entry paths in URLs: percent-encoded as any URL path, with `/` kept."""

from __future__ import annotations

import re
import urllib.parse

from ctxcloud_client.errors import InvalidPath

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def quote_entry_path(path: str) -> str:
    """The path for `/entries/{path}`, refused first where an HTTP library would change its
    meaning: a `.` or `..` segment would be resolved away (`a/../b` is `b` to a URL), an empty
    segment or a leading `/` would be merged. The service checks the rest of its rules."""
    if not isinstance(path, str) or not path:
        raise InvalidPath("An entry path must be a non-empty string.")
    if "\\" in path or _CONTROL.search(path):
        raise InvalidPath(f"Invalid entry path {path!r}: no backslash or control character.")
    if any(segment in ("", ".", "..") for segment in path.split("/")):
        raise InvalidPath(
            f"Invalid entry path {path!r}: relative, with no empty, '.' or '..' segment."
        )
    return urllib.parse.quote(path, safe="/")


def quote_segment(value: str) -> str:
    """A project id or slug, an upload id: one URL segment, `/` encoded too."""
    return urllib.parse.quote(str(value), safe="")
