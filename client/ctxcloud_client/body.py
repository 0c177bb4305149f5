"""Request bodies that stream: bytes, a binary file object, or an iterator of bytes chunks."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterable, Iterator
from typing import IO, Any

CHUNK_SIZE = 64 * 1024

BodyData = bytes | bytearray | memoryview | IO[bytes] | Iterable[bytes]


class StreamedBody:
    """A body sent in chunks of at most CHUNK_SIZE, never read whole into memory.

    Bytes, and a seekable file object (rewound to where it stood when given), can be sent
    again, so a request with them may be retried; an iterator, or a file that cannot seek (a
    pipe, a socket), can be sent once only, so a request with one is never retried.
    `size` is known for bytes and for seekable files (then `Content-Length` is sent), else the
    body goes with `Transfer-Encoding: chunked`.
    """

    def __init__(self, data: BodyData, size: int | None = None) -> None:
        self._bytes: bytes | None = None
        self._file: IO[bytes] | None = None
        self._iterable: Iterable[bytes] | None = None
        self._start = 0
        self._sent = False
        self.size = size
        self.rewindable = False
        if isinstance(data, (bytes, bytearray, memoryview)):
            self._bytes = bytes(data)
            self.size = len(self._bytes)
            self.rewindable = True
        elif hasattr(data, "read"):
            if isinstance(data, io.TextIOBase):
                raise TypeError("Open the file in binary mode ('rb') to send it.")
            self._file = data  # type: ignore[assignment]
            self._start, file_size = _position_and_size(data)
            if file_size is not None:
                self.rewindable = True
                if self.size is None:
                    self.size = file_size - self._start
        elif isinstance(data, (str,)) or not isinstance(data, Iterable):
            raise TypeError("A body is bytes, a binary file object or an iterator of bytes.")
        else:
            self._iterable = data

    def sha256(self) -> str | None:
        """The SHA-256 of bytes given whole (known without reading anything), else None."""
        if self._bytes is None:
            return None
        return hashlib.sha256(self._bytes).hexdigest()

    def content(self) -> bytes | Iterator[bytes]:
        """What to hand to httpx for one attempt: the bytes, or a fresh chunk iterator (a
        seekable file is rewound first)."""
        if self._bytes is not None:
            return self._bytes
        if self._sent and not self.rewindable:
            raise RuntimeError("This body was already sent and cannot be rewound.")
        self._sent = True
        if self._file is not None:
            if self.rewindable:
                self._file.seek(self._start)
            return _file_chunks(self._file)
        assert self._iterable is not None
        return _checked_chunks(self._iterable)

    def headers(self) -> dict[str, str]:
        return {} if self.size is None else {"Content-Length": str(self.size)}


def _position_and_size(file: Any) -> tuple[int, int | None]:
    """Where a file object stands, and its total size; (0, None) when it cannot seek."""
    try:
        if not file.seekable():
            return 0, None
        start = file.tell()
        try:
            size = os.fstat(file.fileno()).st_size
        except (AttributeError, OSError, io.UnsupportedOperation):
            size = file.seek(0, io.SEEK_END)
            file.seek(start)
        return start, size
    except (AttributeError, OSError, io.UnsupportedOperation):
        return 0, None


def _file_chunks(file: IO[bytes]) -> Iterator[bytes]:
    while True:
        chunk = file.read(CHUNK_SIZE)
        if not chunk:
            return
        if not isinstance(chunk, bytes | bytearray):
            raise TypeError("Open the file in binary mode ('rb') to send it.")
        yield bytes(chunk)


def _checked_chunks(chunks: Iterable[bytes]) -> Iterator[bytes]:
    for chunk in chunks:
        if not isinstance(chunk, bytes | bytearray | memoryview):
            raise TypeError(f"A body iterator must yield bytes, not {type(chunk).__name__}.")
        if chunk:
            yield bytes(chunk)
