"""Bulkheads: at most so many of a process's threads wait on one dependency at a time.

A dependency that hangs (storage that accepts connections and never answers, say) would
otherwise collect every thread of a worker, one request at a time, until nothing answers:
not the health probes, not the routes that never touch it. A bulkhead caps the threads
inside the dependency; a request that finds every slot taken by calls that look stuck is
refused at once with 503 ``unavailable`` and Retry-After, and the threads left over keep
serving everything else. (When the holders are merely busy, it waits briefly instead.)

The cap defaults to the worker's threads minus a reserve (a quarter of them, at least two),
so a saturated dependency always leaves threads for the rest. gunicorn workers publish their
thread count as ``CTXCLOUD_WORKER_THREADS`` (app/gunicorn_worker.py) before the app is built.
"""

from __future__ import annotations

import os
import threading
import time
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


# A call that has held its slot this long looks stuck rather than busy.
STALLED = 1.0
# How long a call waits for a slot while the holders look busy (some started recently): long
# enough for calls that merely coincide, bounded so that waiting never piles up.
QUEUE_WAIT = 2.0
# A waiting call looks again this often whether the holders have come to look stuck, and is
# refused then: when a dependency starts to hang, its waiters give their threads back within
# about STALLED seconds of the hang, not after the whole QUEUE_WAIT.
WAIT_STEP = 0.05


class Bulkhead:
    """A per-process cap on threads inside one dependency; past it, `refuse` is raised.

    When every slot is taken, a call is refused at once if every holder has been inside for
    STALLED seconds or more (the dependency hangs: waiting would only add a thread to it);
    otherwise the dependency is merely busy and the call waits up to QUEUE_WAIT seconds for a
    slot, so a burst of ordinary calls is served, not refused; a waiting call that sees the
    holders come to look stuck is refused at once.
    """

    def __init__(self, name: str, slots: int, refuse: Callable[[str], Exception]) -> None:
        if slots < 1:
            raise ValueError(f"a bulkhead needs at least one slot, not {slots}")
        self.name = name
        self.slots = slots
        self._free = threading.BoundedSemaphore(slots)
        self._entered: dict[int, float] = {}  # holding thread -> when it took its slot
        self._refuse = refuse
        self.refused = 0

    def _refusal(self) -> Exception:
        self.refused += 1
        return self._refuse(
            f"{self.name} is not answering fast enough: {self.slots} requests of this process "
            "are already waiting on it"
        )

    def _stalled(self) -> bool:
        """Whether every slot is held by a call inside for STALLED seconds or more."""
        entered = list(self._entered.values())
        return len(entered) >= self.slots and time.monotonic() - max(entered) >= STALLED

    def _enter(self) -> None:
        if not self._free.acquire(blocking=False) and not self._wait_for_slot():
            raise self._refusal()
        self._entered[threading.get_ident()] = time.monotonic()

    def _wait_for_slot(self) -> bool:
        """Wait up to QUEUE_WAIT for a slot while the holders look busy; False: refuse."""
        deadline = time.monotonic() + QUEUE_WAIT
        while not self._stalled():
            if self._free.acquire(timeout=WAIT_STEP):
                return True
            if time.monotonic() >= deadline:
                return False
        return False

    def _leave(self) -> bool:
        """Give this thread's slot back; False if it held none."""
        if self._entered.pop(threading.get_ident(), None) is None:
            return False
        self._free.release()
        return True

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Hold a slot for the block, or raise (see the class) when none is to be had."""
        self._enter()
        try:
            yield
        finally:
            self._leave()

    def outside(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        """`chunks` (a client's body) read with this thread's slot given back meanwhile.

        The dependency pulls the body through this while holding the slot: waiting for a slow
        client is not waiting on the dependency, so the slot is free for others until the
        next chunk is in hand, then taken again (refused as a new call would be).
        """
        source = iter(chunks)
        while True:
            stepped_out = self._leave()
            chunk = next(source, _END)  # raising here leaves the slot given back: nothing held
            if stepped_out:
                self._enter()
            if chunk is _END:
                return
            yield chunk

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
