"""The narrow streaming storage interface every backend implements.

Backends only ever see ciphertext (the caller encrypts) and opaque keys that
reveal nothing about tenants or entries; so the interface is bytes in, bytes out.
"""

from __future__ import annotations

import abc
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import ClassVar

__all__ = [
    "CHUNK_SIZE",
    "MAX_KEY_LENGTH",
    "MAX_SEGMENT_LENGTH",
    "IncompleteUpload",
    "ObjectInfo",
    "ObjectNotFound",
    "StorageBackend",
    "StorageError",
    "StorageUnavailable",
    "validate_key",
    "validate_prefix",
]

CHUNK_SIZE = 1024 * 1024
MAX_KEY_LENGTH = 512
MAX_SEGMENT_LENGTH = 255  # NAME_MAX on common filesystems: a key must fit any backend

_KEY_RE = re.compile(rf"[a-z0-9][a-z0-9/_.\-]{{0,{MAX_KEY_LENGTH - 1}}}")


class StorageError(Exception):
    """Base of every storage failure, so callers can catch one type."""


class ObjectNotFound(StorageError):
    """The key names no object; a distinct type so callers can answer 404, not 500."""


class StorageUnavailable(StorageError):
    """The backend is down or unreachable; the API answers 503 "unavailable"."""


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What head() and scan() know about an object, without reading its bytes.

    ``modified`` is when the object was last written, as a POSIX timestamp from the store's
    clock (S3 dates a multipart upload's object from the start of the upload), or None when
    the backend cannot tell; sweeps never remove an object of unknown age. It takes no part
    in comparisons: two infos of one object are equal whatever the store's clock said.
    """

    key: str
    size: int
    modified: float | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class IncompleteUpload:
    """An upload begun and never completed nor aborted: its parts are stored, no reader sees them.

    What a writer killed mid-upload leaves behind on stores that keep parts server-side (S3
    multipart uploads); ``started`` is a POSIX timestamp (None if unknown), ``size`` the bytes
    of its parts (None if unknown).
    """

    key: str
    upload_id: str
    started: float | None
    size: int | None = None


def validate_key(key: str) -> str:
    """Return key if it is a safe opaque key, else raise ValueError: defence against traversal.

    Rules: ASCII ``[a-z0-9][a-z0-9/_.-]*``, at most 512 characters, no ``..`` anywhere,
    no leading or trailing ``/``, no ``//``, no segment starting with ``.`` (so no ``.``
    segment and no hidden names a backend could use for itself), segments at most 255
    characters. Uppercase is rejected so keys cannot alias on case-insensitive stores.
    """
    if not isinstance(key, str) or _KEY_RE.fullmatch(key) is None:
        raise ValueError(f"invalid storage key: {key!r}")
    if ".." in key or key.endswith("/"):
        raise ValueError(f"invalid storage key: {key!r}")
    for segment in key.split("/"):
        if not segment or segment[0] == "." or len(segment) > MAX_SEGMENT_LENGTH:
            raise ValueError(f"invalid storage key: {key!r}")
    return key


def validate_prefix(prefix: str) -> str:
    """Return prefix if a valid key could start with it, else ValueError: list() stays in bounds."""
    if prefix == "":
        return prefix
    if not isinstance(prefix, str) or _KEY_RE.fullmatch(prefix) is None:
        raise ValueError(f"invalid storage key prefix: {prefix!r}")
    if ".." in prefix or "//" in prefix or any(s.startswith(".") for s in prefix.split("/")):
        raise ValueError(f"invalid storage key prefix: {prefix!r}")
    return prefix


class StorageBackend(abc.ABC):
    """One implementation per backend, all passing app.testing.storage_conformance."""

    name: ClassVar[str]

    @abc.abstractmethod
    def put(self, key: str, chunks: Iterable[bytes]) -> int:
        """Store chunks atomically under key, return the byte count: no reader sees half an object.

        Overwrites are allowed. Chunks may be any bytes-like objects of any size. An
        exception raised by the iterable or by the backend leaves nothing behind (an
        existing object under key stays intact) and propagates unchanged, except
        backend OSError-like failures, which surface as StorageUnavailable.
        """

    @abc.abstractmethod
    def get(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Stream bytes [start, end] inclusive in chunks <= CHUNK_SIZE: nobody holds a whole object.

        Raises ObjectNotFound at call time, before any chunk. ``end`` None or beyond
        the object is clamped to size - 1; a start at or beyond the size yields
        nothing; start < 0 or end < start raise ValueError. The iterator may hold a
        resource: consume it or call its close().
        """

    @abc.abstractmethod
    def head(self, key: str) -> ObjectInfo | None:
        """Return the object's size, or None if missing, so callers can check without reading."""

    @abc.abstractmethod
    def delete(self, key: str) -> bool:
        """Remove the object, saying if it existed; missing is no error, so deletes can retry."""

    @abc.abstractmethod
    def list(self, prefix: str = "") -> Iterator[str]:
        """Yield every key starting with prefix (order unspecified), for sweeps and audits."""

    def scan(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Yield an ObjectInfo (size, modified) for every key list(prefix) yields: sweeps by age.

        The default asks head() for each listed key, skipping keys deleted meanwhile, so a
        backend that has only list() and head() keeps working; override it where a listing
        already carries sizes and times (a directory walk, ListObjectsV2). Like list(), a
        prefix no valid key could start with raises ValueError before anything is listed.
        """
        keys = self.list(prefix)  # validates the prefix now, not on the first next()
        return (info for key in keys if (info := self.head(key)) is not None)

    def incomplete_uploads(
        self, prefix: str = "", *, started_before: float | None = None
    ) -> Iterator[IncompleteUpload]:
        """Uploads under prefix begun (before ``started_before``, if given) and never finished.

        For sweeps after a crash: a writer killed mid-upload cannot abort its own upload.
        Only stores that keep unfinished uploads themselves have any; the default is none.
        """
        validate_prefix(prefix)
        return iter(())

    def abort_upload(self, upload: IncompleteUpload) -> bool:
        """Drop an incomplete upload's parts, saying if it was still there (idempotent).

        Callers abort only uploads older than a live one can be: a writer whose upload is
        aborted under it fails (and publishes nothing). The default has nothing to abort.
        """
        return False

    @abc.abstractmethod
    def check(self) -> None:
        """Probe the backend for health checks; raise StorageUnavailable if it cannot serve."""

    def close(self) -> None:  # noqa: B027 - optional hook, deliberately not abstract
        """Release connections or handles at shutdown; a no-op for backends that hold none."""
