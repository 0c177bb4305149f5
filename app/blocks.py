"""A chunk stream cut into fixed-size blocks in one reusable buffer, for a storage backend's
put(): the parts of a multipart upload, the chunks of a resumable one, the blocks of a block
blob. Public through the toolkit (``ctxcloud.Blocks``, ``ctxcloud.byte_view``)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

__all__ = ["Blocks", "byte_view"]


def byte_view(chunk: Any) -> memoryview:
    """A flat byte view of a bytes-like chunk, no copy; TypeError for anything else (str)."""
    view = memoryview(chunk)
    if not view.c_contiguous:
        return memoryview(view.tobytes())  # a strided view: the one case that must copy
    return view if view.ndim == 1 and view.format == "B" else view.cast("B")


class Blocks:
    """The bytes of `chunks` cut into blocks of `size` bytes, each filled in place in one buffer.

    Iterating yields the buffer each time it is full *and more bytes follow*, so a small
    object never starts a multipart upload and the last block is always known as the last:
    after the loop, ``rest()`` holds the final 0 to `size` bytes (the whole object when it
    fits in one block). Every block is the same bytearray, refilled in place once the loop
    asks for the next one: send it, or copy it, before then. ::

        blocks = Blocks(chunks, part_size)
        for block in blocks:  # full, and more is coming
            upload.send(block)
        upload.finish(blocks.rest())
        return blocks.total

    Between two blocks, ``resize`` changes the size of those that follow (a first block
    larger than the rest) and ``keep`` holds back the end of a block that the store took
    only in part, to go again at the start of the next one.

    Chunks may be any bytes-like objects, of any size; each is copied once, from a view,
    straight into the buffer. The iterable's own exceptions propagate unchanged. Memory: one
    buffer of `size` bytes.
    """

    __slots__ = ("_buffer", "_chunks", "_filled", "_size", "total")

    def __init__(self, chunks: Iterable[Any], size: int) -> None:
        if size < 1:
            raise ValueError(f"a block holds at least one byte, not {size}")
        self._chunks = chunks
        self._size = size
        self._buffer = bytearray()
        self._filled = 0
        self.total = 0  # bytes read from the chunks so far

    def __iter__(self) -> Iterator[bytearray]:
        for chunk in self._chunks:
            view = byte_view(chunk)
            length = len(view)
            self.total += length
            offset = 0
            while offset < length:
                if self._filled == self._size:  # full, and more is coming
                    self._filled = 0
                    yield self._buffer  # keep() may hold some of it back meanwhile
                take = min(self._size - self._filled, length - offset)
                _copy_into(self._buffer, self._filled, view[offset : offset + take])
                self._filled += take
                offset += take
            view.release()

    @property
    def size(self) -> int:
        return self._size

    def resize(self, size: int) -> None:
        """From the next block on, blocks hold `size` bytes (no more than the one before)."""
        if not 1 <= size <= self._size:
            raise ValueError(f"blocks can shrink to 1 to {self._size} bytes, not {size}")
        if size == self._size:
            return
        self._size = size
        self._buffer = _truncate(self._buffer, max(size, self._filled))

    def keep(self, count: int) -> None:
        """Keep the last `count` bytes of the block just yielded (the store did not take
        them): they start the next block, which fills up after them."""
        if not 0 <= count <= len(self._buffer) or self._filled:
            raise ValueError(f"cannot keep {count} bytes of the last block")
        if count:
            with memoryview(self._buffer) as view, view[-count:] as tail:
                view[:count] = tail  # memmove: the two may overlap
        self._filled = count

    def rest(self) -> bytearray:
        """After the loop: the last block, 0 to `size` bytes. It is the buffer itself, shrunk
        in place unless something still holds a view of it; this object lets go of it, so
        the caller's reference is the only one."""
        rest = _truncate(self._buffer, self._filled)
        self._buffer, self._filled = bytearray(), 0
        return rest


def _copy_into(buffer: bytearray, at: int, data: Any) -> None:
    """Write data into the buffer at ``at``, in place, growing it only at its end.

    Never ``buffer[a:b] = view``: a bytearray copies any value that is not a bytearray before
    assigning it, which would hold a second copy of the piece in memory for a moment.
    """
    if at == len(buffer):
        buffer += data  # growth (the first fill only): appended straight from the view
        return
    with memoryview(buffer) as target:
        target[at : at + len(data)] = data


def _truncate(buffer: bytearray, size: int) -> bytearray:
    """Shrink the buffer in place; copy only if something still holds a view of it."""
    try:
        del buffer[size:]
    except BufferError:
        return buffer[:size]
    return buffer
