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
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

__all__ = ["Bulkhead", "default_slots", "worker_threads"]
_END = object()

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


# How long a new call waits for a slot before it is refused: long enough to absorb calls that
# merely coincide, short enough to be "at once" next to a dependency's own timeouts.
ENTRY_WAIT = 0.05
# How long a call already admitted waits for a slot for its next step (the next chunk of a
# download, or the backend's next step of an upload after a slow client): it was let in, so
# it is only refused if the dependency stays saturated that long.
STEP_WAIT = 2.0


class Bulkhead:
    """A per-process cap on threads inside one dependency; past it, `refuse` is raised."""

    def __init__(self, name: str, slots: int, refuse: Callable[[str], Exception]) -> None:
        if slots < 1:
            raise ValueError(f"a bulkhead needs at least one slot, not {slots}")
        self.name = name
        self.slots = slots
        self._free = threading.BoundedSemaphore(slots)
        self._holding = threading.local()
        self._refuse = refuse
        self.refused = 0

    def _refusal(self) -> Exception:
        self.refused += 1
        return self._refuse(
            f"{self.name} is not answering fast enough: {self.slots} requests of this process "
            "are already waiting on it"
        )

    @contextmanager
    def slot(self, wait: float = ENTRY_WAIT) -> Iterator[None]:
        """Hold a slot for the block, or raise when none is free within `wait` seconds."""
        if not self._free.acquire(timeout=wait):
            raise self._refusal()
        self._holding.slot = True
        try:
            yield
        finally:
            if getattr(self._holding, "slot", False):
                self._holding.slot = False
                self._free.release()

    def outside(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        """`chunks` (a client's body) read with this thread's slot given back meanwhile.

        The dependency pulls the body through this while holding the slot: waiting for a slow
        client is not waiting on the dependency, so the slot is free for others until the
        next chunk is in hand. Stepping back in waits at most STEP_WAIT seconds for a slot.
        """
        source = iter(chunks)
        while True:
            stepped_out = getattr(self._holding, "slot", False)
            if stepped_out:
                self._holding.slot = False
                self._free.release()
            chunk = next(source, _END)  # raising here leaves the slot given back: nothing held
            if stepped_out:
                if not self._free.acquire(timeout=STEP_WAIT):
                    raise self._refusal()
                self._holding.slot = True
            if chunk is _END:
                return
            yield chunk

    def guard_iterator(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        """Each step of `chunks` in a slot: a slow consumer holds none between steps."""
        try:
            while True:
                with self.slot(wait=STEP_WAIT):
                    chunk = next(chunks, None)
                if chunk is None:
                    return
                yield chunk
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

