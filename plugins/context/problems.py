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
    ProblemResponse(
        "LinksDisabled",
        403,
        "links_disabled",
        "Signed links are off for this tenant: its owner turns them on with the setting "
        "links_enabled (PATCH /api/v1/tenant/settings).",
        description="Forbidden: the credential lacks the permission (`forbidden`), or the "
        "tenant's `links_enabled` setting is off (`links_disabled`)",
    ),
    ProblemResponse(
        "HistoryPruned",
        410,
        "history_pruned",
        "Revisions before 40 were pruned: read the manifest at the head (revision 52) and "
        "continue from there.",
        description="Gone: `since` is older than the project's kept history; the problem "
        "carries `history_starts_at` and the head `revision`",
    ),
    ProblemResponse(
        "RevisionAhead",
        409,
        "revision_ahead",
        "since is 60 but the head is 52.",
        description="Conflict: `since` is past the project's head (`revision` in the problem)",
    ),
    ProblemResponse(
        "TooManyWatchers",
        503,
        "too_many_watchers",
        "This server already holds 2 waiting requests: poll again later, or ask without `wait`.",
        description="Service Unavailable: this server process already holds "
        "`WATCH_MAX_WAITERS` waiting requests; ask again after `Retry-After` seconds",
    ),
]
