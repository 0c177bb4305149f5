"""One SQLite writer at a time across the processes of a host, without SQLite's long sleeps.

SQLite lets one write transaction in at a time. A writer of another process that finds the
database locked waits in SQLite's busy handler, which sleeps 1, 2, 5, 10 ... up to 100 ms
between tries. Under steady writes from two gunicorn workers, the worker whose threads pass
the lock among themselves keeps it almost all the time, and the other one's writers sleep
through every short gap: measured with wrk (4 KiB PUTs, 2 workers x 8 threads,
bench/README.md), the slowest PUT in a hundred waited 0.3-0.8 s and in some runs one worker
did 99 % of the writes.

Here a writer first takes an advisory lock (``flock``) on a file beside the database, and
only then begins its transaction: waiting writers look again every 50 us to 1 ms instead, so
one of another process gets in within about a millisecond of a commit. The kernel releases
the lock of a process that dies, so a killed worker never leaves it held. Every wait is
bounded: past ``timeout`` the writer goes on without it and SQLite arbitrates as before
(its own busy timeout then bounds the wait). Within a process, threads already queue on a
lock of their own (app/db.py), so at most one thread per process waits here.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time

FIRST_PAUSE = 0.00005
LONGEST_PAUSE = 0.001


class HostWriterLock:
    """An advisory lock on `path`, taken with a bounded wait (not reentrant)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None
        self._pid = 0
        self._opening = threading.Lock()

    def _file(self) -> int:
        # Opened once per process, on first use (after a fork: a worker opens its own, so its
        # lock is its own, not shared with the master's descriptor).
        if self._fd is None or self._pid != os.getpid():
            with self._opening:
                if self._fd is None or self._pid != os.getpid():
                    self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                    self._pid = os.getpid()
        return self._fd

    def acquire(self, timeout: float) -> bool:
        """Take the lock within `timeout` seconds; False if it could not (not held then)."""
        try:
            fd = self._file()
        except OSError:
            return False  # no lock file (read-only directory...): SQLite alone arbitrates
        deadline = time.monotonic() + timeout
        pause = FIRST_PAUSE
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                pass
            except OSError:
                return False
            if time.monotonic() >= deadline:
                return False
            time.sleep(pause)
            pause = min(pause * 2, LONGEST_PAUSE)

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fd, fcntl.LOCK_UN)
