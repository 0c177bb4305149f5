"""An iterator produced on a helper thread, a few items ahead of its consumer.

Serving a large entry is read, decrypt, send, in series. Sending (and reading the file)
releases the GIL, so producing the next piece on another thread while this one is sent
overlaps the two. The helper holds no reference to the ReadAhead object, so when the
consumer drops it (a client gone mid-download) the helper is told to stop and closes the
source itself.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator
from typing import Any, TypeVar

T = TypeVar("T")
_END = object()
_POLL_SECONDS = 0.1


class ReadAhead(Iterator[T]):
    """Iterate `source` on a helper thread, at most `depth` items ahead; its exceptions are
    raised here, in order."""

    def __init__(self, source: Iterator[T], depth: int = 2) -> None:
        self._queue: queue.Queue[tuple[Any, BaseException | None]] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=_produce,
            args=(source, self._queue, self._stop),
            name="ctxcloud-read-ahead",
            daemon=True,
        )
        self._done = False
        self._thread.start()

    def __next__(self) -> T:
        if self._done:
            raise StopIteration
        item, error = self._queue.get()
        if item is _END:
            self._done = True
            self._thread.join()
            if error is not None:
                raise error
            raise StopIteration
        return item

    def close(self) -> None:
        """Stop the helper (it closes the source) and wait for it."""
        if self._done:
            return
        self._done = True
        self._stop.set()
        while self._thread.is_alive():
            with contextlib.suppress(queue.Empty):
                self._queue.get(timeout=_POLL_SECONDS)
        self._thread.join()

    def __del__(self) -> None:
        self._stop.set()


def _produce(source: Iterator[Any], out: queue.Queue, stop: threading.Event) -> None:
    try:
        for item in source:
            if not _put(out, stop, (item, None)):
                return
        _put(out, stop, (_END, None))
    except BaseException as exc:  # handed to the consumer, raised there
        _put(out, stop, (_END, exc))
    finally:
        close = getattr(source, "close", None)
        if close is not None:
            close()


def _put(out: queue.Queue, stop: threading.Event, entry: tuple[Any, Any]) -> bool:
    while not stop.is_set():
        try:
            out.put(entry, timeout=_POLL_SECONDS)
            return True
        except queue.Full:
            continue
    return False
