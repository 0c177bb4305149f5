"""One function called in order on one helper thread, so slow calls overlap the caller's work.

Streaming an upload is serial by nature (read, hash, encrypt, write), but hashing (hashlib)
and writing files release the GIL: run on a helper thread they overlap the next network read
instead of waiting for it. The first calls run inline, so a small body never starts a thread.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any


class SerialWorker:
    """Calls `function` in submission order; at most `depth` calls wait, then submit() blocks.

    A failed call raises from a later submit() or from finish(); close() (always, e.g. in a
    finally) stops the thread and drops calls not yet started.
    """

    def __init__(self, function: Callable[..., Any], *, depth: int = 4, inline: int = 1) -> None:
        self._function = function
        self._depth = depth
        self._inline = inline
        self._executor: ThreadPoolExecutor | None = None
        self._pending: deque[Future[Any]] = deque()

    def submit(self, *args: Any) -> None:
        if self._inline > 0:
            self._inline -= 1
            self._function(*args)
            return
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ctxcloud-io")
        while len(self._pending) >= self._depth or (self._pending and self._pending[0].done()):
            self._pending.popleft().result()
        self._pending.append(self._executor.submit(self._function, *args))

    def finish(self) -> None:
        """Wait for every submitted call; the first failure raises."""
        while self._pending:
            self._pending.popleft().result()

    def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=True, cancel_futures=True)
        self._pending.clear()


class ChunkBatches:
    """Chunks gathered into batches of about `size` bytes, each handed to a SerialWorker call
    (one thread wake-up per batch, not per chunk)."""

    def __init__(self, function: Callable[[list[bytes]], Any], size: int, depth: int = 2) -> None:
        self._worker = SerialWorker(function, depth=depth)
        self._size = size
        self._batch: list[bytes] = []
        self._batch_size = 0

    def add(self, chunk: bytes) -> bytes:
        """Queue `chunk` (as immutable bytes: the worker reads it later) and return it."""
        if not isinstance(chunk, bytes):
            chunk = bytes(chunk)
        self._batch.append(chunk)
        self._batch_size += len(chunk)
        if self._batch_size >= self._size:
            self._flush()
        return chunk

    def finish(self) -> None:
        """Hand over what is left and wait for every batch; the first failure raises."""
        self._flush()
        self._worker.finish()

    def close(self) -> None:
        self._worker.close()

    def _flush(self) -> None:
        if self._batch:
            batch, self._batch, self._batch_size = self._batch, [], 0
            self._worker.submit(batch)
