"""Request and response shapes of the context API."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import validate

from ctxcloud import Timestamp
from ctxcloud.plugins.context.paths import MAX_PATH_BYTES, PATH_PATTERN

# Revision numbers are 64-bit in the database; a larger one is a 422, not an overflow.
MAX_REVISION = 2**63 - 1

# Documented, not enforced here: a path that breaks the rule is a 400 `invalid_path` from the
# service, as in entry URLs, not a 422 (paths.py holds the whole rule).
PATH_RULE = {"minLength": 1, "maxLength": MAX_PATH_BYTES, "pattern": PATH_PATTERN}

_EXAMPLE_SHA = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


class EntrySchema(ma.Schema):
    path = ma.fields.String(metadata={"description": "Entry path", "example": "docs/adr/0001.md"})
    size = ma.fields.Integer(metadata={"description": "Bytes", "example": 1234})
    sha256 = ma.fields.String(
        metadata={"description": "SHA-256 of the bytes (hex)", "example": _EXAMPLE_SHA}
    )
    content_type = ma.fields.String(
        metadata={"description": "The Content-Type it was written with", "example": "text/markdown"}
    )
    metadata = ma.fields.Dict(
        metadata={"description": "Entry metadata (JSON object)", "example": {"author": "ana"}}
    )
    revision = ma.fields.Integer(
        metadata={"description": "Revision that wrote this version", "example": 7}
    )
    updated_at = Timestamp(
        attribute="created_at",
        metadata={
            "description": "When this version was written",
            "example": "2026-11-25T18:00:00.000Z",
        },
    )
    etag = ma.fields.String(
        metadata={
            "description": "The entry's ETag (also in the header)",
            "example": '"r7-9f86d081884c7d65"',
        }
    )


class ManifestEntrySchema(EntrySchema):
    content = ma.fields.String(
        metadata={
            "description": "The text, when include_content=true and it fit the budget",
            "example": "# Use PostgreSQL\n",
        }
    )
    content_omitted = ma.fields.String(
        metadata={
            "description": "Why content is absent with include_content=true: not_text, budget or "
            "not_utf8",
            "example": "budget",
        }
    )


class ManifestSchema(ma.Schema):
    project_id = ma.fields.String(
        metadata={"description": "The project's id", "example": "prj_k5v3q2m8x7c1n4b6z9aa"}
    )
    revision = ma.fields.Integer(
        metadata={"description": "The revision this manifest shows", "example": 7}
    )
    entries = ma.fields.List(
        ma.fields.Nested(ManifestEntrySchema),
        metadata={"description": "Every entry at that revision, sorted by path"},
    )
    total_size = ma.fields.Integer(
        metadata={"description": "Sum of the entries' sizes", "example": 1234}
    )
    content_truncated = ma.fields.Boolean(
        metadata={
            "description": "With include_content: true when some text entry was left out",
            "example": False,
        }
    )


class ManifestQuerySchema(ma.Schema):
    revision = ma.fields.Integer(
        validate=validate.Range(min=0, max=MAX_REVISION),
        metadata={
            "description": "Show the context as it was at this revision (default: head)",
            "example": 3,
        },
    )
    prefix = ma.fields.String(
        load_default="",
        validate=validate.Length(max=1024),
        metadata={"description": "Only entries whose path starts with this", "example": "docs/"},
    )
    include_content = ma.fields.Boolean(
        load_default=False,
        metadata={"description": "Inline text entries as `content`, up to max_bytes in all"},
    )
    max_bytes = ma.fields.Integer(
        load_default=1024 * 1024,
        validate=validate.Range(min=0, max=16 * 1024 * 1024),
        metadata={
            "description": "Budget for inlined content (bytes, at most 16 MiB)",
            "example": 65536,
        },
    )


class EntryQuerySchema(ma.Schema):
    revision = ma.fields.Integer(
        validate=validate.Range(min=0, max=MAX_REVISION),
        metadata={
            "description": "Read the entry as it was at this revision (default: head)",
            "example": 3,
        },
    )


class CommitPutSchema(ma.Schema):
    # The service takes exactly one of content and content_base64 (422 otherwise): the
    # document says so (app/api.py SchemaKeywords), with an example that obeys it.
    OPENAPI_KEYWORDS = {
        "oneOf": [
            {"required": ["content"]},
            {"required": ["content_base64"]},
            {"required": ["upload_id"]},
        ],
        "example": {
            "path": "docs/adr/0002.md",
            "content": "# Use Redis for rate limits\n",
            "content_type": "text/markdown",
            "metadata": {"author": "ana"},
        },
    }

    path = ma.fields.String(
        required=True,
        metadata={
            "description": "Entry path, as in entry URLs (normalised to NFC; an invalid one is "
            "a 400 `invalid_path`)",
            "example": "docs/adr/0002.md",
            **PATH_RULE,
        },
    )
    content = ma.fields.String(
        metadata={
            "description": "Text content (stored as UTF-8)",
            "example": "# Use Redis for rate limits\n",
        }
    )
    content_base64 = ma.fields.String(
        metadata={"description": "Binary content, base64", "example": "AAECAw=="}
    )
    upload_id = ma.fields.String(
        validate=validate.Length(min=1, max=32),
        metadata={
            "description": "A staged upload's bytes (`POST .../context/uploads`, then `PUT` "
            "its bytes): for entries of any size. The commit takes it, or fails whole",
            "example": "upl_q2m8x7c1n4b6z9aak5v3",
        },
    )
    content_type = ma.fields.String(
        validate=validate.Length(min=1, max=255),
        metadata={
            "description": "Defaults to text/plain; charset=utf-8 for content, the tenant's "
            "default_content_type for content_base64 and upload_id",
            "example": "text/markdown",
        },
    )
    metadata = ma.fields.Dict(
        load_default=dict,
        metadata={"description": "Entry metadata (JSON object)", "example": {"author": "ana"}},
    )


class CommitSchema(ma.Schema):
    message = ma.fields.String(
        load_default="",
        validate=validate.Length(max=10000),
        metadata={
            "description": "Why, recorded on the revision",
            "example": "Record the Redis decision",
        },
    )
    parent_revision = ma.fields.Integer(
        validate=validate.Range(min=0, max=MAX_REVISION),
        metadata={
            "description": "The head this commit was made against; another head is a 409",
            "example": 7,
        },
    )
    put = ma.fields.List(
        ma.fields.Nested(CommitPutSchema),
        load_default=list,
        validate=validate.Length(max=1000),
        metadata={"description": "Entries to write (at most 1000)"},
    )
    delete = ma.fields.List(
        ma.fields.String(metadata=PATH_RULE),
        load_default=list,
        validate=validate.Length(max=1000),
        metadata={
            "description": "Paths to delete (at most 1000); each must exist",
            "example": ["docs/old.md"],
        },
    )


class ChangeSchema(ma.Schema):
    path = ma.fields.String(metadata={"description": "Entry path", "example": "docs/adr/0002.md"})
    action = ma.fields.String(metadata={"description": "put or delete", "example": "put"})


class RevisionSchema(ma.Schema):
    revision = ma.fields.Integer(
        attribute="number", metadata={"description": "The revision number", "example": 8}
    )
    created_at = Timestamp(
        metadata={"description": "When it was made", "example": "2026-11-25T18:00:00.000Z"}
    )
    actor = ma.fields.String(
        metadata={
            "description": "Who made it (kind:id)",
            "example": "user:usr_3k2j4h5g6f7d8s9a0q1w",
        }
    )
    message = ma.fields.String(
        metadata={
            "description": "The commit message (empty for single writes)",
            "example": "Record the Redis decision",
        }
    )
    changes = ma.fields.List(
        ma.fields.Nested(ChangeSchema),
        metadata={"description": "The paths this revision wrote or deleted"},
    )


class UploadSchema(ma.Schema):
    upload_id = ma.fields.String(
        attribute="id",
        dump_only=True,
        metadata={
            "description": "Names the upload in a commit",
            "example": "upl_q2m8x7c1n4b6z9aak5v3",
        },
    )
    expires_at = Timestamp(
        dump_only=True,
        metadata={"description": "Commit it before then, or it is swept and its bytes freed"},
    )


class UploadStoredSchema(ma.Schema):
    upload_id = ma.fields.String(
        attribute="id",
        dump_only=True,
        metadata={
            "description": "Names the upload in a commit",
            "example": "upl_q2m8x7c1n4b6z9aak5v3",
        },
    )
    size = ma.fields.Integer(
        dump_only=True, metadata={"description": "Bytes stored", "example": 209715200}
    )
    sha256 = ma.fields.String(
        dump_only=True,
        metadata={
            "description": "SHA-256 of the bytes (hex)",
            "example": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        },
    )
    expires_at = Timestamp(
        dump_only=True,
        metadata={"description": "Commit it before then, or it is swept and its bytes freed"},
    )
