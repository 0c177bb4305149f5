"""A store's response body as a storage backend's get() hands it on. Public through the
toolkit (``ctxcloud.StreamedBody``)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from ctxcloud.storage import StorageUnavailable

__all__ = ["StreamedBody"]


class StreamedBody(Iterator[bytes]):
    """The body's chunks, clipped to the bytes asked for, released as soon as they are not.

    A store that ignored the Range header sends the whole object: give the range's first byte
    as `skip` and its length as `limit`, and only those bytes come out. The body is released
    (`release`, e.g. the response's ``close``) once read to the end, when a read fails, or when
    the caller drops or closes the iterator early (a client that went away), so a connection
    never waits for a reader that is gone. A read error of one of the types in `errors`
    becomes the StorageUnavailable that `unavailable(exc)` builds; any other propagates as
    it is.
    """

    __slots__ = ("_chunks", "_errors", "_release", "_remaining", "_skip", "_unavailable")

    def __init__(
        self,
        chunks: Iterator[Any],
        release: Callable[[], object],
        unavailable: Callable[[BaseException], StorageUnavailable],
        errors: tuple[type[BaseException], ...] = (OSError,),
        skip: int = 0,
        limit: int | None = None,
    ) -> None:
        self._chunks: Iterator[Any] | None = chunks
        self._release: Callable[[], object] | None = release
        self._unavailable = unavailable
        self._errors = errors
        self._skip = skip
        self._remaining = limit

    def __iter__(self) -> StreamedBody:
        return self

    def __next__(self) -> bytes:
        while self._chunks is not None:
            if self._remaining is not None and self._remaining <= 0:
                break
            try:
                chunk = next(self._chunks)
            except StopIteration:
                break
            except self._errors as exc:
                self.close()
                raise self._unavailable(exc) from exc
            if self._skip:
                dropped = min(self._skip, len(chunk))
                self._skip -= dropped
                chunk = chunk[dropped:]
            if self._remaining is not None:
                chunk = chunk[: self._remaining]
                self._remaining -= len(chunk)
            if chunk:
                return bytes(chunk)
        self.close()
        raise StopIteration

    def close(self) -> None:
        """Release the body now; later reads end at once."""
        release = getattr(self, "_release", None)
        self._chunks = self._release = None
        if release is not None:
            with contextlib.suppress(Exception):
                release()

    def __del__(self) -> None:
        self.close()
