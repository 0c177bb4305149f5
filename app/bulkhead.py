"""Bulkheads: at most so many of a process's threads wait on one dependency at a time.

A dependency that hangs (storage that accepts connections and never answers, say) would
otherwise collect every thread of a worker, one request at a time, until nothing answers:
not the health probes, not the routes that never touch it. A bulkhead caps the threads
inside the dependency; a request that finds every slot taken is refused at once with 503
``unavailable`` and Retry-After, and the threads left over keep serving everything else.

The cap defaults to the worker's threads minus a reserve (a quarter of them, at least two),
so a saturated dependency always leaves threads for the rest. gunicorn workers publish their
thread count as ``CTXCLOUD_WORKER_THREADS`` (app/gunicorn_worker.py) before the app is built.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["Bulkhead", "default_slots", "worker_threads"]

WORKER_THREADS_ENV = "CTXCLOUD_WORKER_THREADS"
DEFAULT_THREADS = 8


def worker_threads() -> int:
    """The threads of the serving worker (8, gunicorn.conf.py's default, when not served by it)."""
    try:
        return max(1, int(os.environ.get(WORKER_THREADS_ENV, DEFAULT_THREADS)))
    except ValueError:
        return DEFAULT_THREADS


def default_slots(threads: int | None = None) -> int:
    """Threads one dependency may hold: all but a reserve of a quarter (at least two)."""
    threads = worker_threads() if threads is None else threads
    return max(1, threads - max(2, threads // 4))


class Bulkhead:
    """A per-process cap on threads inside one dependency; past it, `refuse` is raised."""

    def __init__(self, name: str, slots: int, refuse: Callable[[str], Exception]) -> None:
        if slots < 1:
            raise ValueError(f"a bulkhead needs at least one slot, not {slots}")
        self.name = name
        self.slots = slots
        self._free = threading.BoundedSemaphore(slots)
        self._refuse = refuse
        self.refused = 0

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold a slot for the block, or raise at once when none is free."""
        if not self._free.acquire(blocking=False):
            self.refused += 1
            raise self._refuse(
                f"{self.name} is not answering fast enough: {self.slots} requests of this "
                "process are already waiting on it"
            )
        try:
            yield
        finally:
            self._free.release()

    def guard_iterator(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        """Each step of `chunks` in a slot: a slow consumer holds none between steps."""
        try:
            while True:
                with self.slot():
                    chunk = next(chunks, None)
                if chunk is None:
                    return
                yield chunk
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
