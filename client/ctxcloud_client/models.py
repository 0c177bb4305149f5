"""Typed results of the API: frozen dataclasses built from its JSON (and entry headers)."""

from __future__ import annotations

import base64
import datetime
import email.utils
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx


def parse_timestamp(value: Any) -> datetime.datetime | None:
    """An RFC 3339 timestamp of the service (`2026-11-25T18:00:00.000Z`) as an aware datetime."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.datetime.fromisoformat(value)
    except ValueError:
        return None


@dataclass(frozen=True)
class Project:
    id: str
    slug: str
    name: str
    description: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    revision: int = 0
    history_starts_at: int = 0
    created_at: datetime.datetime | None = None
    updated_at: datetime.datetime | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Project:
        return cls(
            id=data["id"],
            slug=data.get("slug", ""),
            name=data.get("name", ""),
            description=data.get("description") or "",
            metadata=dict(data.get("metadata") or {}),
            revision=int(data.get("revision") or 0),
            history_starts_at=int(data.get("history_starts_at") or 0),
            created_at=parse_timestamp(data.get("created_at")),
            updated_at=parse_timestamp(data.get("updated_at")),
        )


@dataclass(frozen=True)
class Entry:
    """One entry version: what a manifest lists, a write answers, or a read's headers say.

    `content` is the inlined text of a manifest read with `include_content=True`, and
    `content_omitted` says why it is absent then (`not_text`, `budget`, `not_utf8`).
    """

    path: str
    size: int
    sha256: str
    content_type: str
    metadata: dict[str, Any] = field(default_factory=dict)
    revision: int = 0
    updated_at: datetime.datetime | None = None
    etag: str | None = None
    content: str | None = None
    content_omitted: str | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Entry:
        return cls(
            path=data["path"],
            size=int(data.get("size") or 0),
            sha256=data.get("sha256") or "",
            content_type=data.get("content_type") or "",
            metadata=dict(data.get("metadata") or {}),
            revision=int(data.get("revision") or 0),
            updated_at=parse_timestamp(data.get("updated_at")),
            etag=data.get("etag"),
            content=data.get("content"),
            content_omitted=data.get("content_omitted"),
        )

    @classmethod
    def from_headers(cls, path: str, headers: httpx.Headers) -> Entry:
        """An entry read's headers (ETag, Content-Length, Entry-SHA256, Entry-Revision...)."""
        try:
            metadata = json.loads(headers.get("Entry-Metadata") or "{}")
        except ValueError:
            metadata = {}
        modified = headers.get("Last-Modified")
        updated_at = None
        if modified:
            try:
                updated_at = email.utils.parsedate_to_datetime(modified)
            except (TypeError, ValueError, IndexError):
                updated_at = None
        return cls(
            path=path,
            size=int(headers.get("Content-Length") or 0),
            sha256=headers.get("Entry-SHA256") or "",
            content_type=headers.get("Content-Type") or "",
            metadata=metadata if isinstance(metadata, dict) else {},
            revision=int(headers.get("Entry-Revision") or 0),
            updated_at=updated_at,
            etag=headers.get("ETag"),
        )


@dataclass(frozen=True)
class WrittenEntry(Entry):
    """A write's answer: the entry, and whether the path was new (201) or replaced (200)."""

    created: bool = False


@dataclass(frozen=True)
class Manifest:
    """A project's context at one revision; `etag` is for `if_none_match` next time."""

    project_id: str
    revision: int
    entries: tuple[Entry, ...]
    total_size: int
    etag: str | None = None
    content_truncated: bool = False

    @classmethod
    def from_json(cls, data: Mapping[str, Any], etag: str | None = None) -> Manifest:
        return cls(
            project_id=data.get("project_id", ""),
            revision=int(data.get("revision") or 0),
            entries=tuple(Entry.from_json(e) for e in data.get("entries") or []),
            total_size=int(data.get("total_size") or 0),
            etag=etag,
            content_truncated=bool(data.get("content_truncated", False)),
        )

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, path: str) -> Entry | None:
        """The entry at `path`, or None."""
        return next((entry for entry in self.entries if entry.path == path), None)

    @property
    def paths(self) -> list[str]:
        return [entry.path for entry in self.entries]


@dataclass(frozen=True)
class NotModified:
    """The manifest did not change since `etag` (a 304 to `If-None-Match`)."""

    etag: str | None

    def __bool__(self) -> bool:
        return False


@dataclass(frozen=True)
class Change:
    path: str
    action: str  # "put" or "delete"


@dataclass(frozen=True)
class Revision:
    revision: int
    created_at: datetime.datetime | None
    actor: str
    message: str
    changes: tuple[Change, ...]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Revision:
        return cls(
            revision=int(data["revision"]),
            created_at=parse_timestamp(data.get("created_at")),
            actor=data.get("actor") or "",
            message=data.get("message") or "",
            changes=tuple(
                Change(path=c["path"], action=c["action"]) for c in data.get("changes") or []
            ),
        )


@dataclass(frozen=True)
class FeedChange:
    """One path-level change of the changes feed: a `put` (with the new version's size and
    SHA-256) or a `delete`, in `revision`."""

    revision: int
    path: str
    action: str  # "put" or "delete"
    size: int | None = None
    sha256: str | None = None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FeedChange:
        size = data.get("size")
        return cls(
            revision=int(data["revision"]),
            path=data["path"],
            action=data["action"],
            size=int(size) if size is not None else None,
            sha256=data.get("sha256"),
        )


@dataclass(frozen=True)
class Changes:
    """The changes after `from_revision` up to `revision` (the head the answer was read at;
    ask again with `since=revision`). Empty when a wait ended with nothing new."""

    from_revision: int
    revision: int
    history_starts_at: int
    changes: tuple[FeedChange, ...]

    def __len__(self) -> int:
        return len(self.changes)

    def __iter__(self) -> Iterator[FeedChange]:
        return iter(self.changes)


@dataclass(frozen=True)
class Upload:
    """A staged upload, to fill with `send_upload` and name in a commit's `put`."""

    upload_id: str
    expires_at: datetime.datetime | None

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Upload:
        return cls(upload_id=data["upload_id"], expires_at=parse_timestamp(data.get("expires_at")))


@dataclass(frozen=True)
class UploadedBody:
    """What the service stored for an upload: its size and SHA-256."""

    upload_id: str
    size: int
    sha256: str

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> UploadedBody:
        return cls(
            upload_id=data["upload_id"], size=int(data.get("size") or 0), sha256=data["sha256"]
        )


@dataclass(frozen=True)
class CommitPut:
    """One `put` of a commit: text `content`, binary `content_base64`, or a staged `upload_id`
    (exactly one). `CommitPut.text`, `.binary` and `.upload` build each kind."""

    path: str
    content: str | None = None
    content_base64: str | None = None
    upload_id: str | None = None
    content_type: str | None = None
    metadata: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        given = [v for v in (self.content, self.content_base64, self.upload_id) if v is not None]
        if len(given) != 1:
            raise ValueError(
                f"put {self.path!r}: give exactly one of content, content_base64 and upload_id"
            )

    @classmethod
    def text(cls, path: str, content: str, **kwargs: Any) -> CommitPut:
        return cls(path, content=content, **kwargs)

    @classmethod
    def binary(cls, path: str, data: bytes, **kwargs: Any) -> CommitPut:
        return cls(path, content_base64=base64.b64encode(data).decode("ascii"), **kwargs)

    @classmethod
    def upload(cls, path: str, upload_id: str, **kwargs: Any) -> CommitPut:
        return cls(path, upload_id=upload_id, **kwargs)

    @classmethod
    def coerce(cls, item: CommitPut | Mapping[str, Any]) -> CommitPut:
        if isinstance(item, CommitPut):
            return item
        known = {"path", "content", "content_base64", "upload_id", "content_type", "metadata"}
        unknown = set(item) - known
        if unknown:
            raise ValueError(f"put item: unknown field(s) {sorted(unknown)}")
        return cls(**item)

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"path": self.path}
        for name in ("content", "content_base64", "upload_id", "content_type", "metadata"):
            value = getattr(self, name)
            if value is not None:
                body[name] = value
        return body


@dataclass(frozen=True)
class ManifestDiff:
    """Paths only in the new manifest, only in the old one, and in both with other bytes."""

    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[str, ...]

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)
