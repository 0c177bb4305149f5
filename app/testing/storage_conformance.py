"""The conformance suite every StorageBackend must pass, so the core can treat backends alike.

Usage, in your backend's tests: subclass ``StorageConformance`` (the class name must
start with ``Test`` for pytest to collect it) and provide a ``backend`` fixture::

    import pytest
    from ctxcloud.testing.storage_conformance import StorageConformance
    from my_plugin import MyStorage

    class TestMyStorage(StorageConformance):
        @pytest.fixture
        def backend(self, tmp_path):
            storage = MyStorage(...)
            yield storage
            storage.close()

Every test works under its own random prefix (``conformance/<hex>/``) and deletes what
it wrote, so a shared bucket works; but ``list("")`` must show only valid keys, so do
not point the backend at a namespace that holds anything else. The 50 MiB round trip
is marked ``slow`` (deselect with ``-m "not slow"``).

The contract pinned down here, beyond the docstrings of app.storage.StorageBackend:

- ``get(key, start, end)`` returns bytes ``start..end`` inclusive, as ``bytes`` chunks of
  at most CHUNK_SIZE. ``end=None`` or an ``end`` past the object is clamped to the last
  byte; a ``start`` at or past the size yields nothing (so an empty object reads back
  empty); ``start < 0`` or ``end < start`` raise ValueError. The caller (app.crypto)
  checks lengths, so a clamped read is never mistaken for a whole one.
- ``get`` of a missing key raises ObjectNotFound when called, before any iteration.
- ``put`` takes any iterable of bytes-like chunks (bytes, bytearray, memoryview) of any
  size, including empty ones; a chunk that is not bytes-like (e.g. ``str``) raises
  TypeError. When the iterable or the backend fails, the exception propagates (the
  iterable's own exception unchanged, even a BaseException), no object is created, a
  previous object under the key is intact, and ``list`` shows no leftover.
- Concurrent puts to one key leave exactly one of the complete values; a concurrent
  reader sees a complete old or new value, never a mix.
- Keys are checked with app.storage.validate_key: uppercase, ``..``, a leading or
  trailing ``/``, ``//``, a segment starting with ``.``, non-ASCII, over 512 characters
  or a segment over 255 raise ValueError, before the chunks are consumed. ``list``
  rejects a prefix no valid key could start with (e.g. ``../``) the same way.
- ``scan(prefix)`` yields one ObjectInfo per key ``list(prefix)`` yields, with the size and,
  unless None, ``modified`` within CLOCK_SLACK seconds of this machine's clock at the write
  (sweeps compare it with their clock: a store far off would make them unsafe); ``head``
  reports the same. The base class's default (list, then head) passes as is.
- ``incomplete_uploads(prefix)`` shows nothing after puts that succeeded or failed: only a
  writer that died mid-upload leaves one (the default yields none).
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from ctxcloud.storage import (
    CHUNK_SIZE,
    IncompleteUpload,
    ObjectInfo,
    ObjectNotFound,
    StorageBackend,
    StorageError,
    validate_key,
)

__all__ = ["StorageConformance"]

SEGMENT = 65536  # app.crypto's plaintext segment: the sizes around it are the interesting ones
RANGE_SIZE = SEGMENT * 3 + 7
LARGE_SIZE = 50 * 1024 * 1024
CLOCK_SLACK = 120.0  # seconds a store's timestamps may be off this machine's clock

_ROUND_TRIP_SIZES = [0, 1, SEGMENT, SEGMENT + 16, RANGE_SIZE, CHUNK_SIZE, 2 * CHUNK_SIZE + 3]
_CHUNKINGS = [None, 1, 7, 4093, SEGMENT + 1]  # None: the whole object as one chunk
_ROUND_TRIPS = [
    pytest.param(size, chunk, id=f"{size}B-{'whole' if chunk is None else f'by{chunk}'}")
    for size in _ROUND_TRIP_SIZES
    for chunk in _CHUNKINGS
    if not (chunk == 1 and size > SEGMENT + 16)  # byte-at-a-time only where it stays quick
]

_RANGES = [  # (start, end) against an object of RANGE_SIZE bytes
    (0, 0),
    (SEGMENT - 1, SEGMENT),
    (RANGE_SIZE - 1, RANGE_SIZE - 1),
    (0, RANGE_SIZE - 1),
    (0, None),
    (RANGE_SIZE - 1, None),
    (1000, 70000),
    (SEGMENT, 2 * SEGMENT - 1),
    (2 * SEGMENT, RANGE_SIZE - 1),
    (10, RANGE_SIZE + 1000),  # clamped to the last byte
    (RANGE_SIZE - 5, 10**12),  # clamped to the last byte
]

INVALID_KEYS = [
    "",
    "..",
    "../x",
    "a/../b",
    "a..b",
    "/abs",
    "/",
    "a//b",
    "a/",
    "A",
    "aB/c",
    "a b",
    "a\x00b",
    "a\\b",
    "a\nb",
    "caf\u00e9",
    ".hidden",
    "a/.b",
    "a/./b",
    "_a",  # must start with [a-z0-9]
    "-a",
    "x" * 513,
    "a/" + "b" * 256,
]

INVALID_PREFIXES = ["/", "../", "a/../", "a//", "A", ".tmp", "a/.", "a\\b"]


class _Boom(Exception):
    """An iterable failing mid-stream, e.g. a client that disconnects during an upload."""


class _Abort(BaseException):
    """A BaseException from the iterable (KeyboardInterrupt, GeneratorExit-like)."""


def _chunked(data: bytes, size: int | None) -> Iterator[bytes]:
    if size is None:
        yield data
        return
    view = memoryview(data)
    for offset in range(0, len(data), size):
        yield bytes(view[offset : offset + size])


def _read(backend: StorageBackend, key: str, start: int = 0, end: int | None = None) -> bytes:
    """Read a range, checking every chunk is bytes of at most CHUNK_SIZE."""
    parts = []
    for chunk in backend.get(key, start, end):
        assert isinstance(chunk, bytes), type(chunk)
        assert len(chunk) <= CHUNK_SIZE
        parts.append(chunk)
    return b"".join(parts)


def _failing(chunks: Iterable[object], error: BaseException) -> Iterator[object]:
    yield from chunks
    raise error


def _must_not_be_consumed() -> Iterator[bytes]:
    raise AssertionError("put() consumed the chunks before validating the key")
    yield b""  # pragma: no cover


class StorageConformance:
    """Subclass as ``TestYourBackend`` and provide a ``backend`` fixture; see the module doc."""

    @pytest.fixture
    def backend(self) -> StorageBackend:
        """Overridden by the subclass: the backend instance under test."""
        pytest.fail("subclass StorageConformance and provide a `backend` fixture")

    @pytest.fixture
    def prefix(self, backend: StorageBackend) -> Iterator[str]:
        """A fresh key prefix per test, emptied afterwards so a shared bucket stays clean."""
        prefix = f"conformance/{uuid.uuid4().hex}/"
        yield prefix
        for key in list(backend.list(prefix)):
            backend.delete(key)

    # -- round trips ---------------------------------------------------------

    @pytest.mark.parametrize(("size", "chunk"), _ROUND_TRIPS)
    def test_round_trip(self, backend: StorageBackend, prefix: str, size: int, chunk) -> None:
        data = os.urandom(size)
        key = prefix + "object"
        assert backend.put(key, _chunked(data, chunk)) == size
        assert backend.head(key) == ObjectInfo(key=key, size=size)
        assert _read(backend, key) == data

    def test_put_accepts_bytes_like_and_empty_chunks(
        self, backend: StorageBackend, prefix: str
    ) -> None:
        key = prefix + "mixed"
        chunks = [b"", bytearray(b"ab"), memoryview(b"cd"), b"", b"e"]
        assert backend.put(key, iter(chunks)) == 5
        assert _read(backend, key) == b"abcde"

    def test_put_of_no_chunks_stores_an_empty_object(
        self, backend: StorageBackend, prefix: str
    ) -> None:
        key = prefix + "empty"
        assert backend.put(key, []) == 0
        assert backend.head(key) == ObjectInfo(key=key, size=0)
        assert _read(backend, key) == b""
        assert _read(backend, key, 0, 0) == b""
        assert list(backend.list(prefix)) == [key]

    @pytest.mark.slow
    def test_large_object_streams(self, backend: StorageBackend, prefix: str) -> None:
        key = prefix + "large"
        sent = hashlib.sha256()
        piece = CHUNK_SIZE - 13  # odd, so chunk boundaries never line up with CHUNK_SIZE

        def source() -> Iterator[bytes]:
            remaining = LARGE_SIZE
            while remaining:
                chunk = os.urandom(min(piece, remaining))
                sent.update(chunk)
                remaining -= len(chunk)
                yield chunk

        assert backend.put(key, source()) == LARGE_SIZE
        assert backend.head(key) == ObjectInfo(key=key, size=LARGE_SIZE)
        received, total = hashlib.sha256(), 0
        for chunk in backend.get(key):
            assert isinstance(chunk, bytes)
            assert 0 < len(chunk) <= CHUNK_SIZE
            received.update(chunk)
            total += len(chunk)
        assert total == LARGE_SIZE
        assert received.digest() == sent.digest()

    # -- ranges --------------------------------------------------------------

    @pytest.mark.parametrize(("start", "end"), _RANGES, ids=lambda v: str(v))
    def test_range(self, backend: StorageBackend, prefix: str, start: int, end: int | None) -> None:
        data = os.urandom(RANGE_SIZE)
        key = prefix + "ranged"
        backend.put(key, _chunked(data, 4096))
        stop = RANGE_SIZE if end is None else min(end, RANGE_SIZE - 1) + 1
        assert _read(backend, key, start, end) == data[start:stop]

    def test_range_across_chunks(self, backend: StorageBackend, prefix: str) -> None:
        data = os.urandom(2 * CHUNK_SIZE + 5)
        key = prefix + "multi"
        backend.put(key, [data])
        start, end = CHUNK_SIZE - 1, 2 * CHUNK_SIZE + 1
        assert _read(backend, key, start, end) == data[start : end + 1]
        assert len(list(backend.get(key))) >= 3

    def test_range_starting_past_the_end_is_empty(
        self, backend: StorageBackend, prefix: str
    ) -> None:
        key = prefix + "short"
        backend.put(key, [b"0123456789"])
        assert _read(backend, key, 10) == b""
        assert _read(backend, key, 10, 20) == b""
        assert _read(backend, key, 1000) == b""

    @pytest.mark.parametrize(("start", "end"), [(-1, None), (-1, 5), (5, 4)])
    def test_invalid_range_raises_value_error(
        self, backend: StorageBackend, prefix: str, start: int, end: int | None
    ) -> None:
        key = prefix + "object"
        backend.put(key, [b"0123456789"])
        with pytest.raises(ValueError):
            backend.get(key, start, end)

    def test_get_can_be_abandoned(self, backend: StorageBackend, prefix: str) -> None:
        key = prefix + "abandoned"
        data = os.urandom(2 * CHUNK_SIZE)
        backend.put(key, [data])
        stream = backend.get(key)
        assert next(iter(stream)) == data[:CHUNK_SIZE]
        close = getattr(stream, "close", None)
        if close is not None:
            close()
        backend.get(key)  # never iterated
        assert _read(backend, key) == data

    # -- missing objects, head, overwrite, delete ----------------------------

    def test_get_missing_raises_at_call_time(self, backend: StorageBackend, prefix: str) -> None:
        backend.put(prefix + "dir/present", [b"x"])
        for key in (prefix + "absent", prefix + "dir/absent", prefix + "nodir/absent"):
            with pytest.raises(ObjectNotFound):
                backend.get(key)  # not iterated: the error must come from the call itself
            with pytest.raises(ObjectNotFound):
                backend.get(key, 5, 10)
        assert issubclass(ObjectNotFound, StorageError)

    def test_head(self, backend: StorageBackend, prefix: str) -> None:
        key = prefix + "headed"
        assert backend.head(key) is None
        backend.put(key, [b"abc"])
        assert backend.head(key) == ObjectInfo(key=key, size=3)
        assert backend.head(prefix + "other") is None

    def test_overwrite_replaces(self, backend: StorageBackend, prefix: str) -> None:
        key = prefix + "replaced"
        first, second, third = os.urandom(RANGE_SIZE), b"new", os.urandom(CHUNK_SIZE + 1)
        backend.put(key, [first])
        assert backend.put(key, [second]) == len(second)
        assert backend.head(key) == ObjectInfo(key=key, size=len(second))
        assert _read(backend, key) == second
        backend.put(key, _chunked(third, 7919))
        assert _read(backend, key) == third
        assert list(backend.list(prefix)) == [key]

    def test_delete(self, backend: StorageBackend, prefix: str) -> None:
        key = prefix + "deleted"
        assert backend.delete(key) is False
        backend.put(key, [b"gone soon"])
        assert backend.delete(key) is True
        assert backend.head(key) is None
        with pytest.raises(ObjectNotFound):
            backend.get(key)
        assert backend.delete(key) is False
        assert list(backend.list(prefix)) == []
        backend.put(key, [b"back"])  # a deleted key can be written again
        assert _read(backend, key) == b"back"

    # -- list ----------------------------------------------------------------

    def test_list_by_prefix(self, backend: StorageBackend, prefix: str) -> None:
        names = ["x/1", "x/2", "y/1", "xy", "z-1", "z.2", "deep/a/b/c/d"]
        for name in names:
            backend.put(prefix + name, [name.encode()])

        def listed(sub: str) -> list[str]:
            keys = list(backend.list(prefix + sub))
            assert len(keys) == len(set(keys)), "list() yielded a key twice"
            return sorted(keys)

        assert listed("") == sorted(prefix + n for n in names)
        assert listed("x") == [prefix + "x/1", prefix + "x/2", prefix + "xy"]
        assert listed("x/") == [prefix + "x/1", prefix + "x/2"]
        assert listed("x/1") == [prefix + "x/1"]
        assert listed("z") == [prefix + "z-1", prefix + "z.2"]
        assert listed("deep/a/") == [prefix + "deep/a/b/c/d"]
        assert listed("q") == []
        assert listed("nothing/here/") == []
        outside = list(backend.list(prefix[:-1] + "-not-mine/"))
        assert outside == []

    @pytest.mark.parametrize("bad", INVALID_PREFIXES)
    def test_list_rejects_an_impossible_prefix(self, backend: StorageBackend, bad: str) -> None:
        with pytest.raises(ValueError):
            list(backend.list(bad))
        with pytest.raises(ValueError):
            list(backend.scan(bad))
        with pytest.raises(ValueError):
            list(backend.incomplete_uploads(bad))

    # -- scan: sizes and times, for sweeps -----------------------------------

    def test_scan_gives_what_list_gives_with_sizes_and_times(
        self, backend: StorageBackend, prefix: str
    ) -> None:
        sizes = {"x/1": 0, "x/2": 1, "y/deep/3": SEGMENT + 5, "z": CHUNK_SIZE + 1}
        before = time.time()
        for name, size in sizes.items():
            backend.put(prefix + name, [os.urandom(size)])
        after = time.time()
        for sub in ("", "x", "x/", "y/deep/", "nothing/"):
            infos = list(backend.scan(prefix + sub))
            assert all(isinstance(info, ObjectInfo) for info in infos)
            keys = [info.key for info in infos]
            assert len(keys) == len(set(keys)), "scan() yielded a key twice"
            assert sorted(keys) == sorted(backend.list(prefix + sub))
            for info in infos:
                assert info.size == sizes[info.key[len(prefix) :]]
                if info.modified is not None:
                    assert before - CLOCK_SLACK <= info.modified <= after + CLOCK_SLACK
                head = backend.head(info.key)
                assert head == info
                if info.modified is not None:
                    assert head.modified == pytest.approx(info.modified, abs=2)

    def test_scan_skips_what_failed_and_what_was_deleted(
        self, backend: StorageBackend, prefix: str
    ) -> None:
        backend.put(prefix + "kept", [b"x"])
        backend.put(prefix + "gone", [b"y"])
        with pytest.raises(_Boom):
            backend.put(prefix + "failed", _failing([b"z" * SEGMENT], _Boom()))
        backend.delete(prefix + "gone")
        assert [(i.key, i.size) for i in backend.scan(prefix)] == [(prefix + "kept", 1)]

    def test_no_incomplete_upload_after_puts_that_ended(
        self, backend: StorageBackend, prefix: str
    ) -> None:
        backend.put(prefix + "small", [b"x"])
        backend.put(prefix + "large", _chunked(os.urandom(3 * CHUNK_SIZE), SEGMENT))
        for error in (_Boom(), _Abort()):
            with pytest.raises(type(error)):
                backend.put(prefix + "failed", _failing([os.urandom(2 * CHUNK_SIZE)], error))
        uploads = list(backend.incomplete_uploads(prefix))
        assert all(isinstance(upload, IncompleteUpload) for upload in uploads)
        assert uploads == []
        assert list(backend.incomplete_uploads(prefix, started_before=time.time() + 60)) == []

    def test_list_shows_only_valid_keys(self, backend: StorageBackend, prefix: str) -> None:
        backend.put(prefix + "kept", [b"x"])
        with pytest.raises(_Boom):
            backend.put(prefix + "failed", _failing([b"y" * SEGMENT], _Boom()))
        everything = list(backend.list())
        assert prefix + "kept" in everything
        for key in everything:
            assert validate_key(key) == key  # no temp files, markers or other internals

    # -- failures ------------------------------------------------------------

    @pytest.mark.parametrize("existing", [False, True], ids=["new", "overwrite"])
    @pytest.mark.parametrize(
        "failure", ["after-chunks", "immediately", "base-exception", "not-bytes"]
    )
    def test_failed_put_leaves_nothing(
        self, backend: StorageBackend, prefix: str, failure: str, existing: bool
    ) -> None:
        key = prefix + "failing"
        old = os.urandom(SEGMENT + 3)
        if existing:
            backend.put(key, [old])
        head = [os.urandom(SEGMENT) for _ in range(3)]
        error: BaseException = {
            "after-chunks": _Boom("client went away"),
            "immediately": _Boom("no data"),
            "base-exception": _Abort(),
            "not-bytes": TypeError(),
        }[failure]
        if failure == "not-bytes":
            chunks: Iterator[object] = iter([*head, "not bytes"])  # the backend must refuse it
        else:
            chunks = _failing([] if failure == "immediately" else head, error)
        with pytest.raises(type(error)) as raised:
            backend.put(key, chunks)  # type: ignore[arg-type]
        if failure != "not-bytes":
            assert raised.value is error, "the iterable's exception must propagate unchanged"
        if existing:
            assert backend.head(key) == ObjectInfo(key=key, size=len(old))
            assert _read(backend, key) == old
            assert list(backend.list(prefix)) == [key]
        else:
            assert backend.head(key) is None
            with pytest.raises(ObjectNotFound):
                backend.get(key)
            assert list(backend.list(prefix)) == []
        assert list(backend.incomplete_uploads(prefix)) == []

    @pytest.mark.parametrize("bad", INVALID_KEYS, ids=repr)
    def test_invalid_keys_raise_value_error(self, backend: StorageBackend, bad: str) -> None:
        with pytest.raises(ValueError):
            backend.put(bad, _must_not_be_consumed())
        with pytest.raises(ValueError):
            backend.get(bad)
        with pytest.raises(ValueError):
            backend.head(bad)
        with pytest.raises(ValueError):
            backend.delete(bad)

    def test_longest_valid_keys_work(self, backend: StorageBackend, prefix: str) -> None:
        longest_segment = prefix + "s" * 255
        longest = prefix + "a" * 255 + "/" + "b" * (512 - len(prefix) - 256)
        assert len(longest) == 512
        for key in (longest_segment, longest, prefix + "0", prefix + "a-b_c.d/e"):
            backend.put(key, [key.encode()])
            assert _read(backend, key) == key.encode()
        assert sorted(backend.list(prefix)) == sorted(
            [longest_segment, longest, prefix + "0", prefix + "a-b_c.d/e"]
        )

    # -- concurrency ---------------------------------------------------------

    def test_concurrent_puts_of_distinct_keys(self, backend: StorageBackend, prefix: str) -> None:
        values = {f"{prefix}t{i}": os.urandom(CHUNK_SIZE // 2 + i * 1001) for i in range(8)}
        barrier = threading.Barrier(len(values))

        def put(key: str) -> int:
            barrier.wait()
            return backend.put(key, _chunked(values[key], 7919))

        with ThreadPoolExecutor(len(values)) as pool:
            sizes = dict(zip(values, pool.map(put, values), strict=True))
        for key, value in values.items():
            assert sizes[key] == len(value)
            assert _read(backend, key) == value
        assert sorted(backend.list(prefix)) == sorted(values)

    def test_concurrent_puts_of_one_key(self, backend: StorageBackend, prefix: str) -> None:
        key = prefix + "contended"
        initial = os.urandom(SEGMENT)
        values = [os.urandom(CHUNK_SIZE // 4 + i * 4099) for i in range(8)]
        allowed = {initial, *values}
        backend.put(key, [initial])
        barrier = threading.Barrier(len(values) + 1)
        done = threading.Event()
        seen: list[bytes] = []

        def slowly(value: bytes) -> Iterator[bytes]:
            for chunk in _chunked(value, 4096):
                time.sleep(0)  # let the reader and other writers run mid-upload
                yield chunk

        def put(value: bytes) -> int:
            barrier.wait()
            return backend.put(key, slowly(value))

        def read() -> None:
            barrier.wait()
            while not done.is_set():
                seen.append(_read(backend, key))

        reader = threading.Thread(target=read)
        reader.start()
        try:
            with ThreadPoolExecutor(len(values)) as pool:
                list(pool.map(put, values))
        finally:
            done.set()
            reader.join()
        assert _read(backend, key) in values
        assert backend.head(key).size in {len(v) for v in values}
        assert seen, "the reader never ran"
        for value in seen:
            assert value in allowed, "a reader saw a mix of two writes"
        assert list(backend.list(prefix)) == [key]

    # -- health --------------------------------------------------------------

    def test_check_passes(self, backend: StorageBackend) -> None:
        assert backend.check() is None
        assert isinstance(backend.name, str) and backend.name
