"""Waiting for a project to move past a revision (long-polls), woken across processes.

A waiter registers for its project, checks the database, and sleeps on an Event until its
deadline; every write path (PUT, DELETE, commit) calls `changed(project_id)` once its
transaction has committed, which wakes this process's waiters of that project at once and
signals the other processes:

- with ``REDIS_URL``: a PUBLISH on one channel, heard by ONE subscriber thread per process
  (its own connection, never the request pool's), which reconnects with a bounded backoff and,
  once subscribed again, wakes every waiter to re-check (a message may have been missed);
- on the embedded default: a counter per slot (the project id hashed into 4096 slots) in a
  small memory-mapped file of the data directory, shared by every process of the host; ONE
  poller thread per process reads the slots of the projects it has waiters for every
  ``WATCH_POLL_INTERVAL`` seconds (a memory read, no system call), so a change is seen within
  that interval. Two projects sharing a slot cost each other a spurious re-check.

The database stays the source of truth: a woken waiter re-checks it and sleeps again if the
project has not moved, and a waiter whose wake was lost still ends at its deadline and answers
from the database. A waiter holds no database connection while it sleeps (it gives it back to
the pool before every sleep), no bulkhead slot and no Redis connection; it holds its thread,
which is why at most ``WATCH_MAX_WAITERS`` requests of a process wait at once (default: a
quarter of the worker's threads, at least one); past that, `admit` refuses.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import logging
import mmap
import os
import struct
import threading
import time
import weakref
import zlib
from collections.abc import Callable, Iterator
from typing import Any

import flask
import redis

from ctxcloud import ConfigError, StashKey, database, stash

log = logging.getLogger("ctxcloud.context.watch")
SIGNAL_FILE = "context-watch"
# gunicorn workers publish their thread count here before the app is built (the core's
# bulkheads are sized from it too); 8, gunicorn.conf.py's default, when not served by it.
WORKER_THREADS_ENV = "CTXCLOUD_WORKER_THREADS"
DEFAULT_THREADS = 8
MAX_WAIT = 60  # seconds: the longest `wait` a request may ask for
BACKOFF_START, BACKOFF_MAX = 0.1, 5.0


class Waiter(threading.Event):
    """One waiting request's wake-up: set, with how long to hold back first (its rank among
    the waiters woken together times WATCH_WAKE_SPACING)."""

    delay = 0.0


def worker_threads() -> int:
    try:
        return max(1, int(os.environ.get(WORKER_THREADS_ENV, DEFAULT_THREADS)))
    except ValueError:
        return DEFAULT_THREADS


def default_max_waiters(threads: int | None = None) -> int:
    """A quarter of the worker's threads, at least one."""
    return max(1, (worker_threads() if threads is None else threads) // 4)


class Watch:
    """This process's waiters, by project, and the signal that wakes them across processes."""

    def __init__(
        self,
        max_waiters: int,
        retry_after: int,
        max_wait: float = MAX_WAIT,
        wake_spacing: float = 0.0,
    ) -> None:
        self.max_waiters = max_waiters
        self.retry_after = retry_after
        self.max_wait = max_wait  # a longer `wait` is shortened to this, not refused
        # Waiters woken together go one every `wake_spacing` seconds, not all at once: a herd
        # of runnable threads would starve the process's other requests of the GIL.
        self.wake_spacing = wake_spacing
        self.signal: Signal | None = None
        self._lock = threading.Lock()
        self._waiters: dict[str, set[Waiter]] = {}
        self.waiting = 0  # admitted requests, waiting now
        self.refused = 0

    # Admission ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def admit(self) -> Iterator[bool]:
        """True (and a place held for the block) while fewer than max_waiters wait; else False."""
        with self._lock:
            admitted = self.waiting < self.max_waiters
            if admitted:
                self.waiting += 1
            else:
                self.refused += 1
        try:
            yield admitted
        finally:
            if admitted:
                with self._lock:
                    self.waiting -= 1

    # Waiting -----------------------------------------------------------------------------

    def wait_until(self, project_id: str, moved: Callable[[], bool], deadline: float) -> bool:
        """Sleep until `moved()` holds (checked on every wake) or `deadline` (monotonic) passes.

        Registers before the first check, so a change committed between the check and the
        sleep still wakes it. The database connection goes back to the pool before each sleep.
        """
        event = Waiter()
        with self._lock:  # the signal learns of waiters in the order they come and go
            first = project_id not in self._waiters
            self._waiters.setdefault(project_id, set()).add(event)
            if self.signal is not None:
                self.signal.watch(project_id, first)
        try:
            while True:
                if moved():
                    return True
                _release_connection()
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                if event.wait(remaining) and event.delay:
                    time.sleep(min(event.delay, max(0.0, deadline - time.monotonic())))
                event.clear()
        finally:
            with self._lock:
                events = self._waiters.get(project_id)
                if events is not None:
                    events.discard(event)
                    if not events:
                        del self._waiters[project_id]
                        if self.signal is not None:
                            self.signal.unwatch(project_id)

    def watched(self) -> list[str]:
        with self._lock:
            return list(self._waiters)

    def wake(self, project_id: str) -> None:
        with self._lock:
            events = list(self._waiters.get(project_id, ()))
        self._release(events)

    def wake_all(self) -> None:
        with self._lock:
            events = [event for events in self._waiters.values() for event in events]
        self._release(events)

    def _release(self, events: list[Waiter]) -> None:
        for rank, event in enumerate(events):
            event.delay = rank * self.wake_spacing
            event.set()

    # Writers -----------------------------------------------------------------------------

    def changed(self, project_id: str) -> None:
        """A change of the project committed: wake this process's waiters, signal the others."""
        self.wake(project_id)
        if self.signal is not None:
            self.signal.publish(project_id)


def _release_connection() -> None:
    """Give the request's database connection back to the pool (reopened on the next query)."""
    if not database.is_closed() and not database.in_transaction():
        database.close()


# Signals across processes ---------------------------------------------------------------


class Signal:
    """Carries `changed(project_id)` to the other processes; one listener thread per process."""

    def __init__(self, owner: Watch) -> None:
        self.owner = weakref.ref(owner)
        self._pid: int | None = None
        self._start_lock = threading.Lock()

    def publish(self, project_id: str) -> None:
        raise NotImplementedError

    def watch(self, project_id: str, first: bool) -> None:
        """A waiter of `project_id` registered (first: the first one); start the listener."""
        if self._pid != os.getpid():
            self._start()

    def unwatch(self, project_id: str) -> None:
        """The last waiter of `project_id` left."""

    def _start(self) -> None:
        with self._start_lock:
            if self._pid == os.getpid():  # threads do not survive a fork: one per process
                return
            thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
            thread.start()
            self._pid = os.getpid()

    thread_name = "ctxcloud-context-watch"

    def _run(self) -> None:
        raise NotImplementedError


class FileSignal(Signal):
    """Counters in a memory-mapped file of the data directory, polled by one thread."""

    SLOTS = 4096
    SIZE = SLOTS * 8
    thread_name = "ctxcloud-context-watch-poller"

    def __init__(self, owner: Watch, path: str, interval: float) -> None:
        super().__init__(owner)
        self.path = path
        self.interval = interval
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < self.SIZE:
                os.ftruncate(fd, self.SIZE)  # extending keeps what another process wrote
            self.map = mmap.mmap(fd, self.SIZE)
        finally:
            os.close(fd)
        self._lock = threading.Lock()
        # Slot offset -> (the value last seen, the watched projects hashed to it).
        self._seen: dict[int, tuple[int, set[str]]] = {}
        self._work = threading.Event()

    def _offset(self, project_id: str) -> int:
        return (zlib.crc32(project_id.encode()) % self.SLOTS) * 8

    def _value(self, offset: int) -> int:
        return struct.unpack_from("<Q", self.map, offset)[0]

    def publish(self, project_id: str) -> None:
        offset = self._offset(project_id)
        try:
            with open(self.path, "rb") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                struct.pack_into("<Q", self.map, offset, (self._value(offset) + 1) % 2**64)
        except OSError:  # committed anyway: the other processes' waiters end at their deadline
            log.warning("could not signal a context change to the other processes")

    def watch(self, project_id: str, first: bool) -> None:
        offset = self._offset(project_id)
        with self._lock:
            # The value now, before the waiter's first check: any later change is a wake.
            value, projects = self._seen.get(offset, (self._value(offset), set()))
            projects.add(project_id)
            self._seen[offset] = (value, projects)
        self._work.set()
        super().watch(project_id, first)

    def unwatch(self, project_id: str) -> None:
        offset = self._offset(project_id)
        with self._lock:
            _, projects = self._seen.get(offset, (0, set()))
            projects.discard(project_id)
            if not projects:
                self._seen.pop(offset, None)

    def poll(self) -> list[str]:
        """The watched projects whose slot moved since last seen (and note the new values)."""
        moved: list[str] = []
        with self._lock:
            for offset, (value, projects) in self._seen.items():
                now = self._value(offset)
                if now != value:
                    self._seen[offset] = (now, projects)
                    moved.extend(projects)
        return moved

    def _run(self) -> None:
        while (owner := self.owner()) is not None:
            for project_id in self.poll():
                owner.wake(project_id)
            idle = not self._seen
            del owner  # never keep the app's Watch alive between polls
            if idle:
                self._work.wait(1.0)  # nothing to watch: look again when a waiter comes
                self._work.clear()
            else:
                time.sleep(self.interval)


_SUBSCRIBERS = itertools.count(1)


class RedisSignal(Signal):
    """PUBLISH on one channel; one subscriber thread per process, on its own connection."""

    thread_name = "ctxcloud-context-watch-subscriber"

    def __init__(self, owner: Watch, client: redis.Redis, prefix: str) -> None:
        super().__init__(owner)
        self.client = client
        # Channels are not per database: the database index keeps deployments apart.
        index = client.connection_pool.connection_kwargs.get("db", 0)
        self.channel = f"{prefix}context-changes@{index}"
        self.subscribed = threading.Event()

    def publish(self, project_id: str) -> None:
        try:
            self.client.publish(self.channel, project_id)
        except redis.RedisError:  # committed anyway: the other processes' waiters end at their
            log.warning("could not publish a context change to Redis")  # deadline

    def _run(self) -> None:
        pool = self.client.connection_pool
        # Named, so that CLIENT LIST shows which process each subscriber belongs to.
        self.client_name = f"ctxcloud-context-watch-{os.getpid()}-{next(_SUBSCRIBERS)}"
        kwargs = {**pool.connection_kwargs, "client_name": self.client_name}
        own = redis.Redis(
            connection_pool=redis.ConnectionPool(
                connection_class=pool.connection_class, max_connections=1, **kwargs
            )
        )
        backoff = BACKOFF_START
        pause = threading.Event()
        while self.owner() is not None:
            pubsub = own.pubsub()
            try:
                pubsub.subscribe(self.channel)
                while self.owner() is not None:
                    message = pubsub.get_message(timeout=1.0)
                    if message is not None:
                        self._apply(message)
                        backoff = BACKOFF_START
            except Exception:  # whatever broke: subscribe again, after a bounded backoff
                if self.subscribed.is_set():
                    log.warning("context watch subscriber lost; waiters end at their deadline")
                self.subscribed.clear()
                pause.wait(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)
            finally:
                with contextlib.suppress(Exception):  # closing a broken connection
                    pubsub.close()
        own.close()

    def _apply(self, message: dict[str, Any]) -> None:
        owner = self.owner()
        if owner is None:
            return
        kind, data = message.get("type"), message.get("data")
        if kind == "message":
            if isinstance(data, bytes):
                data = data.decode("utf-8", "replace")
            owner.wake(str(data))
        elif kind == "subscribe":
            # (Re)subscribed: a change published while we were away would have been missed.
            self.subscribed.set()
            owner.wake_all()


# Per app -------------------------------------------------------------------------------

WATCH = StashKey[Watch]("context.watch")


def _positive(config: flask.Config, name: str, kind: type, allow_none: bool = False) -> Any:
    value = config.get(name)
    if value is None and allow_none:
        return None
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"CTXCLOUD_{name}={value!r} is not a number") from None
    if not 0 < number < float("inf"):
        raise ConfigError(f"CTXCLOUD_{name} must be a positive number")
    return number


def _non_negative(config: flask.Config, name: str) -> float:
    value = config.get(name)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"CTXCLOUD_{name}={value!r} is not a number") from None
    if not 0 <= number <= 1:
        raise ConfigError(f"CTXCLOUD_{name} must be between 0 and 1 second")
    return number


def init_watch(app: flask.Flask) -> Watch:
    config = app.config
    max_waiters = _positive(config, "WATCH_MAX_WAITERS", int, allow_none=True)
    watch = Watch(
        max_waiters=max_waiters or default_max_waiters(),
        retry_after=_positive(config, "WATCH_RETRY_AFTER", int),
        max_wait=min(_positive(config, "WATCH_MAX_WAIT", float), MAX_WAIT),
        wake_spacing=_non_negative(config, "WATCH_WAKE_SPACING"),
    )
    client = app.extensions["ctxcloud"].redis
    if client is not None:
        watch.signal = RedisSignal(watch, client, config["REDIS_KEY_PREFIX"])
    else:
        interval = _positive(config, "WATCH_POLL_INTERVAL", float)
        path = os.path.join(config["DATA_DIR"], SIGNAL_FILE)
        watch.signal = FileSignal(watch, path, interval)
    stash(app)[WATCH] = watch
    return watch


def current_watch() -> Watch | None:
    return stash().get(WATCH)


def changed(project_id: str) -> None:
    """Call after a change of the project has committed (every write path does)."""
    watch = current_watch()
    if watch is not None:
        watch.changed(project_id)
