"""The problems projects and their context answer with, beyond the generic ones."""

from __future__ import annotations

from ctxcloud import BadRequest, PayloadTooLarge, ProblemError, ProblemResponse


class InvalidPath(BadRequest):
    """400 `invalid_path`: an entry path the rules refuse (docs/context.md)."""

    code = "invalid_path"


class ChecksumMismatch(BadRequest):
    """400 `checksum_mismatch`: the body's SHA-256 is not the Content-SHA256 sent."""

    code = "checksum_mismatch"


class EntryTooLarge(PayloadTooLarge):
    """413 `entry_too_large`: an entry past the tenant's max_entry_bytes."""

    code = "entry_too_large"


class RangeNotSatisfiable(ProblemError):
    """416 `range_not_satisfiable`: a Range outside the entry."""

    status, code = 416, "range_not_satisfiable"


RESPONSES = [
    ProblemResponse(
        "EntryTooLarge",
        413,
        "entry_too_large",
        "The entry is larger than the limit of 1048576 bytes.",
        description="Content Too Large: an entry past the tenant's `max_entry_bytes` "
        "(`entry_too_large`), or, where the operation takes JSON, a body past the service's "
        "limit (`payload_too_large`); nothing was stored",
    ),
    ProblemResponse(
        "UnsupportedMediaType",
        415,
        "unsupported_media_type",
        "The tenant allows no entries of type 'image/png'.",
        description="Unsupported Media Type: an entry type the tenant does not allow, or, where "
        "the operation takes JSON, a body not sent as `application/json` "
        "(`unsupported_media_type`); nothing was stored",
    ),
    ProblemResponse(
        "RangeNotSatisfiable", 416, "range_not_satisfiable", "The range is outside the entry."
    ),
]
