"""LocalStorage: each object is one file under a root directory, written atomically.

Layout: the key is the relative path (keys are validated, so it cannot escape the
root); uploads are written to ``<root>/.tmp/`` and moved into place with
``os.replace``, so a reader sees the old object or the new one, never a mix.
Directories are 0700 and files 0600: the bytes are ciphertext, but their sizes and
count are still nobody else's business. Empty directories left by deletes are not
pruned (pruning would race with concurrent puts into the same directory).

Limitation of a filesystem: a key cannot also be a directory of other keys, so
"a" and "a/b" cannot both exist; such a put raises StorageError. Keys generated
with a fixed fan-out depth never collide this way.

Crash cleanup: a process killed mid-upload cannot remove its temp file, so every temp
file is ``flock``-ed by its writer for as long as it exists (the kernel drops the lock
when the process dies), and ``purge_dead_temp`` (run by ``from_config``, i.e. whenever a
worker or a command starts) removes every temp file it can lock: nobody alive owns those.
A writer creates and locks its file while holding a shared lock on the temp directory,
and the sweep lists the directory under an exclusive one, so the sweep never sees a file
between its creation and its lock: no grace period, no clock involved.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import stat
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from ctxcloud import (
    CHUNK_SIZE,
    ChunkBatches,
    ObjectInfo,
    ObjectNotFound,
    StorageBackend,
    StorageError,
    StorageUnavailable,
    validate_key,
    validate_prefix,
)

__all__ = ["LocalStorage"]

log = logging.getLogger("ctxcloud.storage.local")

TEMP_DIR = ".tmp"
DIR_MODE = 0o700
# Writes of about 1 MiB (os.writev of the pieces, no joining copy), started as writeback
# every 8 MiB.
WRITE_BATCH = 1024 * 1024
WRITEBACK_STEP = 8 * 1024 * 1024
_IOV_MAX = 1024
_FADV_DONTNEED = getattr(os, "POSIX_FADV_DONTNEED", None)
# Where locks do not work (some network filesystems), temp files are removed only this old.
STALE_TEMP_SECONDS = 24 * 3600
# The sweep waits at most this long for writers to finish creating their temp files; a start
# never hangs on a stuck writer (it falls back to STALE_TEMP_SECONDS instead).
SWEEP_LOCK_WAIT = 5.0
_LOCK_BUSY = (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)

_MISSING = (FileNotFoundError, NotADirectoryError, IsADirectoryError)


def _fsync_dir(path: str) -> None:
    """Persist a directory entry change (create, rename, unlink) across a crash."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink_quietly(path: str) -> None:
    """Remove a temp file during cleanup without masking the error being handled."""
    with contextlib.suppress(OSError):
        os.unlink(path)


def _makedirs_private(path: str) -> None:
    """Like os.makedirs, but every directory it creates is 0700, not just the last one."""
    if os.path.isdir(path):
        return
    parent = os.path.dirname(path)
    if parent != path:
        _makedirs_private(parent)
    with contextlib.suppress(FileExistsError):
        os.mkdir(path, DIR_MODE)
    if not os.path.isdir(path):
        raise NotADirectoryError(errno.ENOTDIR, "not a directory", path)


def _try_lock(fd: int, operation: int) -> bool | None:
    """flock without blocking: True if taken, False if someone holds it, None if unsupported."""
    try:
        fcntl.flock(fd, operation | fcntl.LOCK_NB)
    except OSError as exc:
        return False if exc.errno in _LOCK_BUSY else None
    return True


def _lock_within(fd: int, operation: int, seconds: float) -> bool:
    """flock, retrying for at most `seconds`: False if busy that long or unsupported."""
    deadline = time.monotonic() + seconds
    delay = 0.001
    while True:
        taken = _try_lock(fd, operation)
        if taken is not False:
            return bool(taken)
        if time.monotonic() >= deadline:
            return False
        time.sleep(delay)  # writers hold the shared lock for microseconds
        delay = min(delay * 2, 0.05)


def _open_unowned(path: str, exclusive: bool, cutoff: float) -> tuple[int, os.stat_result] | None:
    """Open and lock a temp file no live process owns; None if one does (or if unsure).

    Sure means: its lock was free while the sweep holds the directory exclusively (so no
    writer was between creating and locking it). Otherwise, or where locks are unsupported,
    only a file last written before `cutoff` counts as dead, the rule before locks.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)  # RDWR: NFS lock emulation
    except OSError:
        return None
    try:
        taken = _try_lock(fd, fcntl.LOCK_EX)
        info = os.fstat(fd)
        dead = (taken and exclusive) or info.st_mtime < cutoff
        if taken is not False and stat.S_ISREG(info.st_mode) and dead:
            return fd, info
    except OSError:
        pass
    os.close(fd)
    return None


class _KeyConflict(Exception):
    """A path component of the key is a file, or the key's path is a directory."""


class LocalStorage(StorageBackend):
    """Objects as files under one directory: the embedded default, no service needed."""

    name = "local"

    def __init__(self, root: str | os.PathLike[str], *, create: bool = True) -> None:
        """Bind to root, creating it (0700) unless create=False, so a fresh install just works."""
        self.root = os.path.abspath(os.fspath(root))
        self._tmp = os.path.join(self.root, TEMP_DIR)
        if create:
            try:
                _makedirs_private(self._tmp)
            except OSError as exc:
                raise StorageUnavailable(f"local storage: cannot create root: {exc}") from exc

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> LocalStorage:
        """The storage_backends factory: STORAGE_LOCAL_ROOT, else DATA_DIR/objects."""
        root = config.get("STORAGE_LOCAL_ROOT") or os.path.join(config["DATA_DIR"], "objects")
        storage = cls(root)
        storage.purge_dead_temp()
        return storage

    def __repr__(self) -> str:
        return f"LocalStorage({self.root!r})"

    # -- the interface -------------------------------------------------------

    def put(self, key: str, chunks: Iterable[bytes]) -> int:
        """Write to a temp file, fsync, then rename into place: atomic and durable."""
        path = self._path(validate_key(key))
        with self._errors("put", key):
            lock, tmp = self._new_temp("put-")
        # The writer closes its own descriptor; `lock` keeps the file locked until it is
        # renamed into place or removed, so no sweep can take it from under us.
        file: _FileWriter | None = None
        try:
            with self._errors("put", key):
                file = _FileWriter(os.dup(lock), key)
            for chunk in chunks:  # the iterable's own exceptions propagate unchanged
                file.write(chunk)
            written = file.finish()
            with self._errors("put", key):
                self._commit(tmp, path, key)
        except BaseException:  # includes GeneratorExit/KeyboardInterrupt from the iterable
            if file is not None:
                file.close()
            _unlink_quietly(tmp)
            raise
        finally:
            os.close(lock)
        return written

    def get(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Open and check now (a missing key raises at call time), then stream from one handle."""
        path = self._path(validate_key(key))
        if start < 0 or (end is not None and end < start):
            raise ValueError(f"invalid byte range: {start}-{end}")
        try:
            file = open(path, "rb", buffering=0)  # noqa: SIM115 - handed to _FileChunks
        except _MISSING as exc:
            raise ObjectNotFound(key) from exc
        except OSError as exc:
            raise StorageUnavailable(f"local storage: cannot get {key!r}: {exc.strerror}") from exc
        try:
            info = os.fstat(file.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise ObjectNotFound(key)
            last = info.st_size - 1 if end is None else min(end, info.st_size - 1)
            length = max(0, last - start + 1)
            if length:
                file.seek(start)
        except BaseException:
            file.close()
            raise
        return _FileChunks(file, length, key)

    def head(self, key: str) -> ObjectInfo | None:
        """Stat the file: the size is all the caller needs before streaming."""
        path = self._path(validate_key(key))
        try:
            info = os.stat(path)
        except _MISSING:
            return None
        except OSError as exc:
            raise StorageUnavailable(f"local storage: cannot head {key!r}: {exc.strerror}") from exc
        if not stat.S_ISREG(info.st_mode):
            return None
        return ObjectInfo(key=key, size=info.st_size, modified=info.st_mtime)

    def delete(self, key: str) -> bool:
        """Unlink the file and fsync its directory, so a delete survives a crash."""
        path = self._path(validate_key(key))
        try:
            os.unlink(path)
        except _MISSING:
            return False
        except OSError as exc:
            raise StorageUnavailable(f"local storage: cannot delete {key!r}: {exc}") from exc
        with self._errors("delete", key):
            _fsync_dir(os.path.dirname(path))
        return True

    def list(self, prefix: str = "") -> Iterator[str]:
        """Walk only where the prefix points; keys come out in byte order, temp area excluded."""
        return (key for key, _ in self._files(prefix))

    def scan(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """The walk of list(), with one lstat per file: size and mtime (the last write)."""
        return self._scan(self._files(prefix))

    def _scan(self, files: Iterator[tuple[str, os.DirEntry[str]]]) -> Iterator[ObjectInfo]:
        for key, entry in files:
            try:
                info = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # deleted since the directory was read
            except OSError as exc:
                raise StorageUnavailable(f"local storage: cannot scan: {exc.strerror}") from exc
            yield ObjectInfo(key=key, size=info.st_size, modified=info.st_mtime)

    def _files(self, prefix: str) -> Iterator[tuple[str, os.DirEntry[str]]]:
        """Validate the prefix now, then walk only where it points."""
        validate_prefix(prefix)
        base, _, name_prefix = prefix.rpartition("/")
        directory = os.path.join(self.root, base) if base else self.root
        return self._walk(directory, base + "/" if base else "", name_prefix)

    def check(self) -> None:
        """Create and remove a probe file: proves the root exists and is writable."""
        if not os.path.isdir(self.root) or not os.path.isdir(self._tmp):
            raise StorageUnavailable("local storage: root directory is missing")
        try:
            fd, probe = self._new_temp("check-")  # locked, like an upload's: sweeps skip it
            try:
                os.write(fd, b"ok")
            finally:
                try:
                    os.unlink(probe)
                finally:
                    os.close(fd)
        except OSError as exc:
            raise StorageUnavailable(f"local storage: root is not writable: {exc}") from exc

    # -- maintenance ---------------------------------------------------------

    def purge_dead_temp(self) -> int:
        """Remove the temp files of uploads whose process died; live uploads keep theirs.

        A temp file is dead when nobody holds its lock (see the module doc). Returns how many
        were removed. Never raises: a sweep that cannot run leaves the files for the next one.
        """
        try:
            dir_fd = os.open(self._tmp, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return 0
        claimed: list[tuple[str, int, os.stat_result]] = []
        try:
            # Exclusive while listing and locking: no writer is between mkstemp and flock.
            exclusive = _lock_within(dir_fd, fcntl.LOCK_EX, SWEEP_LOCK_WAIT)
            cutoff = time.time() - STALE_TEMP_SECONDS
            with contextlib.suppress(OSError), os.scandir(self._tmp) as entries:
                for entry in entries:
                    if entry.is_file(follow_symlinks=False):
                        found = _open_unowned(entry.path, exclusive, cutoff)
                        if found is not None:
                            claimed.append((entry.path, *found))
        finally:
            os.close(dir_fd)  # writers may create again; the claimed files stay locked by us
        removed = removed_bytes = 0
        for path, fd, info in claimed:
            try:
                now = os.lstat(path)
                if (now.st_dev, now.st_ino) == (info.st_dev, info.st_ino):
                    os.unlink(path)
                    removed += 1
                    removed_bytes += info.st_size
            except OSError:
                pass
            finally:
                os.close(fd)
        if removed:
            log.warning(
                "local storage: removed temp files of uploads that died",
                extra={"directory": self._tmp, "files": removed, "bytes": removed_bytes},
            )
        return removed

    # -- internals -----------------------------------------------------------

    def _path(self, key: str) -> str:
        return os.path.join(self.root, key)

    def _new_temp(self, prefix: str) -> tuple[int, str]:
        """Create a 0600 temp file, locked by this process before any sweep can list it.

        The shared lock on the directory is held only from mkstemp to flock; a sweep lists
        under the exclusive one. Where locks are unsupported, files are created unlocked
        and sweeps remove only those older than STALE_TEMP_SECONDS.
        """
        dir_fd = os.open(self._tmp, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            with contextlib.suppress(OSError):
                fcntl.flock(dir_fd, fcntl.LOCK_SH)
            fd, path = tempfile.mkstemp(dir=self._tmp, prefix=prefix)
            _try_lock(fd, fcntl.LOCK_EX)  # a new file: only "unsupported" can refuse it
        finally:
            os.close(dir_fd)
        return fd, path

    @contextlib.contextmanager
    def _errors(self, action: str, key: str) -> Iterator[None]:
        """Turn filesystem failures into the interface's exceptions, keeping the cause."""
        try:
            yield
        except _KeyConflict as exc:
            raise StorageError(
                f"local storage: key {key!r} conflicts with an existing key ({exc})"
            ) from exc
        except OSError as exc:
            raise StorageUnavailable(
                f"local storage: cannot {action} {key!r}: {exc.strerror or exc}"
            ) from exc

    def _commit(self, tmp: str, path: str, key: str) -> None:
        """Move the finished temp file into place and make the rename durable."""
        directory = os.path.dirname(path)
        self._ensure_dir(directory)
        try:
            os.replace(tmp, path)
        except (IsADirectoryError, NotADirectoryError) as exc:
            raise _KeyConflict("the key's path is a directory") from exc
        _fsync_dir(directory)

    def _ensure_dir(self, directory: str) -> None:
        """Create the key's parent directories (0700) below the root, never the root itself."""
        if os.path.isdir(directory):
            return
        if not directory.startswith(os.path.join(self.root, "")) or directory == self.root:
            raise FileNotFoundError(2, "storage root is missing", self.root)
        try:
            os.mkdir(directory, DIR_MODE)
        except FileExistsError:
            if not os.path.isdir(directory):
                raise _KeyConflict("a parent of the key is an object") from None
            return  # created concurrently
        except NotADirectoryError as exc:
            raise _KeyConflict("a parent of the key is an object") from exc
        except FileNotFoundError:
            self._ensure_dir(os.path.dirname(directory))
            self._ensure_dir(directory)
            return
        _fsync_dir(os.path.dirname(directory))

    def _walk(
        self, directory: str, key_prefix: str, name_prefix: str
    ) -> Iterator[tuple[str, os.DirEntry[str]]]:
        try:
            with os.scandir(directory) as it:
                entries = [e for e in it if e.name.startswith(name_prefix) and e.name[:1] != "."]
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as exc:
            raise StorageUnavailable(f"local storage: cannot list: {exc.strerror}") from exc
        # Sorting a directory's name as "name/" interleaves files and subtrees in key order.
        subtrees = {e.name for e in entries if e.is_dir(follow_symlinks=False)}
        files = {e.name: e for e in entries if e.is_file(follow_symlinks=False)}
        for name in sorted(subtrees | files.keys(), key=lambda n: n + "/" if n in subtrees else n):
            if name in subtrees:
                yield from self._walk(os.path.join(directory, name), key_prefix + name + "/", "")
            else:
                yield key_prefix + name, files[name]


class _FileWriter:
    """A temp file written in WRITE_BATCH writes on a helper thread, then fsynced and closed.

    Writing releases the GIL, so the caller reads, hashes and encrypts the next batch
    meanwhile; every WRITEBACK_STEP bytes the kernel is asked to start writing back
    (POSIX_FADV_DONTNEED), so the final fsync does not wait for the whole object.
    """

    def __init__(self, fd: int, key: str) -> None:
        self._fd: int | None = fd
        self._key = key
        self.written = 0
        self._advised = 0
        self._writer = ChunkBatches(self._write, WRITE_BATCH)

    def write(self, chunk: bytes) -> None:
        if chunk:
            self._writer.add(chunk)

    def finish(self) -> int:
        """Write what is left, wait for the helper, fsync and close; the byte count."""
        self._writer.finish()
        self._writer.close()
        fd, self._fd = self._fd, None
        try:
            os.fsync(fd)
        except OSError as exc:
            raise StorageUnavailable(f"local storage: cannot put {self._key!r}: {exc}") from exc
        finally:
            os.close(fd)
        return self.written

    def close(self) -> None:
        """Stop the helper (it may be writing) before the descriptor goes away."""
        self._writer.close()
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def _write(self, batch: list[bytes]) -> None:
        fd = self._fd
        try:
            views = [memoryview(chunk) for chunk in batch]
            while views:
                done = os.writev(fd, views[:_IOV_MAX])
                self.written += done
                while views and done >= len(views[0]):
                    done -= len(views.pop(0))
                if views and done:
                    views[0] = views[0][done:]
            if _FADV_DONTNEED is not None and self.written - self._advised >= WRITEBACK_STEP:
                os.posix_fadvise(fd, self._advised, self.written - self._advised, _FADV_DONTNEED)
                self._advised = self.written
        except OSError as exc:
            raise StorageUnavailable(f"local storage: cannot put {self._key!r}: {exc}") from exc


class _FileChunks(Iterator[bytes]):
    """The get() stream: one file handle, CHUNK_SIZE reads, closed on exhaustion or close()."""

    __slots__ = ("_file", "_key", "_remaining")

    def __init__(self, file: Any, length: int, key: str) -> None:
        self._file = file
        self._remaining = length
        self._key = key

    def __iter__(self) -> _FileChunks:
        return self

    def __next__(self) -> bytes:
        if self._file is None or self._remaining <= 0:
            self.close()
            raise StopIteration
        try:
            # Raw FileIO.read allocates the result once and reads straight into it.
            data = self._file.read(min(CHUNK_SIZE, self._remaining))
        except OSError as exc:
            self.close()
            raise StorageUnavailable(
                f"local storage: cannot read {self._key!r}: {exc.strerror}"
            ) from exc
        if not data:
            self.close()
            raise StorageError(f"local storage: {self._key!r} shrank while being read")
        self._remaining -= len(data)
        return data

    def close(self) -> None:
        """Release the file handle early, e.g. when a client disconnects mid-download."""
        file = getattr(self, "_file", None)
        self._file = None
        if file is not None:
            file.close()

    def __del__(self) -> None:
        self.close()
