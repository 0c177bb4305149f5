"""The project archive's format (docs/export-import.md), shared by export and import: member
names, the format marker, the problems an import answers with, and the passphrase."""

from __future__ import annotations

import re

from ctxcloud import BadRequest, ProblemResponse

FORMAT = "ctxcloud-project-export"
VERSION = 1
PROJECT_MEMBER = "project.json"
INDEX_MEMBER = "index.json"
REVISION_MEMBER = re.compile(r"^revisions/([0-9]{1,18})\.json$")
BLOB_MEMBER = re.compile(r"^blobs/([0-9a-f]{64})$")
# JSON members are read whole: a revision's manifest or the index past this is refused.
MAX_JSON_MEMBER = 64 * 1024 * 1024
MAX_PROJECT_MEMBER = 1024 * 1024
PASSPHRASE_HEADER = "Archive-Passphrase"  # noqa: S105  # nosec B105: a header name
TAR_TYPE = "application/x-tar"
ENCRYPTED_TYPE = "application/octet-stream"


def revision_member(number: int) -> str:
    return f"revisions/{number:08d}.json"


def blob_member(sha256: str) -> str:
    return f"blobs/{sha256}"


class InvalidArchive(BadRequest):
    """400 `invalid_archive`: not an archive this service wrote, or one changed since."""

    code = "invalid_archive"


class WrongPassphrase(BadRequest):
    """400 `wrong_passphrase`: the passphrase does not open this encrypted archive."""

    code = "wrong_passphrase"


class PassphraseRequired(BadRequest):
    """400 `passphrase_required`: the archive is encrypted and no passphrase was given."""

    code = "passphrase_required"


RESPONSES = [
    ProblemResponse(
        "InvalidArchive",
        400,
        "invalid_archive",
        "The archive was changed: blobs/3f1c... does not match its SHA-256.",
        description="Bad Request: the body is not a project archive this service reads "
        "(`invalid_archive`: a digest mismatch, an index that disagrees with the files, an "
        "unknown, duplicate or missing member, a link, device or directory member, a cut or "
        "damaged archive), the passphrase does not open it (`wrong_passphrase`), it is "
        "encrypted and no passphrase was given (`passphrase_required`), or a header is "
        "malformed (`bad_request`); nothing was kept",
    ),
]
