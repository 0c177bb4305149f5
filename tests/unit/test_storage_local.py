"""LocalStorage: the shared conformance suite, plus what only a filesystem backend has."""

from __future__ import annotations

import errno
import fcntl
import hashlib
import os
import signal
import stat
import subprocess
import sys
import textwrap
import threading
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ctxcloud.plugins.storage_local import backend as local_backend
from ctxcloud.plugins.storage_local.backend import TEMP_DIR, LocalStorage
from ctxcloud.storage import (
    CHUNK_SIZE,
    ObjectNotFound,
    StorageBackend,
    StorageError,
    StorageUnavailable,
    validate_key,
    validate_prefix,
)
from ctxcloud.testing.storage_conformance import INVALID_KEYS, INVALID_PREFIXES, StorageConformance

MiB = 1024 * 1024


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "objects"


@pytest.fixture
def storage(root: Path) -> Iterator[LocalStorage]:
    backend = LocalStorage(root)
    yield backend
    backend.close()


class TestLocalStorageConformance(StorageConformance):
    @pytest.fixture
    def backend(self, storage: LocalStorage) -> LocalStorage:
        return storage


class _ListAndHeadOnly(LocalStorage):
    """A backend written before scan(): the base class's default must serve it."""

    scan = StorageBackend.scan


class TestDefaultScanConformance(StorageConformance):
    """The interface's default scan() (list() then head()) passes the same suite."""

    @pytest.fixture
    def backend(self, root: Path) -> Iterator[LocalStorage]:
        backend = _ListAndHeadOnly(root)
        yield backend
        backend.close()


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _temp_files(root: Path) -> list[str]:
    return os.listdir(root / TEMP_DIR)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


class _Boom(Exception):
    pass


def _failing(chunks: list[bytes], error: BaseException) -> Iterator[bytes]:
    yield from chunks
    raise error


# -- keys --------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["0", "a", "ab/cd/ef0123", "a-b_c.d/e.f", "a" * 255, "x/y"])
def test_validate_key_returns_valid_keys_unchanged(key: str) -> None:
    assert validate_key(key) is key


@pytest.mark.parametrize("key", [*INVALID_KEYS, None, b"abc", 7], ids=repr)
def test_validate_key_rejects(key: object) -> None:
    with pytest.raises(ValueError):
        validate_key(key)  # type: ignore[arg-type]


@pytest.mark.parametrize("prefix", ["", "a", "ab/", "ab/c", "ab/cd/", "a-b_c."])
def test_validate_prefix_accepts(prefix: str) -> None:
    assert validate_prefix(prefix) == prefix


@pytest.mark.parametrize("prefix", [*INVALID_PREFIXES, "a..b", None], ids=repr)
def test_validate_prefix_rejects(prefix: object) -> None:
    with pytest.raises(ValueError):
        validate_prefix(prefix)  # type: ignore[arg-type]


@given(st.text(alphabet="abz09/_-.", min_size=1, max_size=40))
def test_a_valid_key_is_a_plain_path_below_the_root(key: str) -> None:
    try:
        validate_key(key)
    except ValueError:
        return
    root = "/srv/objects"
    path = os.path.join(root, key)
    assert os.path.normpath(path) == path  # no aliasing: ".", "..", "//" or trailing "/"
    assert path.startswith(root + "/")
    assert not any(segment.startswith(".") for segment in key.split("/"))


# -- files on disk -----------------------------------------------------------------------


def test_is_a_storage_backend_named_local(storage: LocalStorage) -> None:
    assert isinstance(storage, StorageBackend)
    assert LocalStorage.name == "local"


def test_files_are_0600_and_directories_0700(storage: LocalStorage, root: Path) -> None:
    storage.put("ab/cd/ef", [b"secret ciphertext"])
    assert (root / "ab" / "cd" / "ef").read_bytes() == b"secret ciphertext"
    assert _mode(root / "ab" / "cd" / "ef") == 0o600
    for directory in (root, root / TEMP_DIR, root / "ab", root / "ab" / "cd"):
        assert _mode(directory) == 0o700, directory


def test_overwrite_keeps_mode_0600(storage: LocalStorage, root: Path) -> None:
    storage.put("k", [b"one"])
    os.chmod(root / "k", 0o644)
    storage.put("k", [b"two"])
    assert _mode(root / "k") == 0o600


def test_put_fsyncs_the_file_and_its_directory(
    storage: LocalStorage, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    storage.put("ab/cd", [b"x"])
    assert any(p.startswith(str(root / TEMP_DIR)) for p in synced)  # the data, before rename
    assert synced[-1] == str(root / "ab")  # the rename itself


@pytest.mark.parametrize("error", [_Boom(), KeyboardInterrupt(), GeneratorExit()], ids=repr)
def test_temp_area_is_empty_after_failures(
    storage: LocalStorage, root: Path, error: BaseException
) -> None:
    with pytest.raises(type(error)):
        storage.put("ab/x", _failing([b"a" * 70000, b"b" * 70000], error))
    with pytest.raises(TypeError):
        storage.put("ab/y", iter([b"ok", "not bytes"]))  # type: ignore[list-item]
    assert _temp_files(root) == []
    assert not (root / "ab").exists() or os.listdir(root / "ab") == []


def test_disk_error_becomes_unavailable_and_leaves_nothing(
    storage: LocalStorage, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage.put("k", [b"old"])

    def broken_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(StorageUnavailable):
        storage.put("k", [b"new"])
    monkeypatch.undo()
    assert b"".join(storage.get("k")) == b"old"
    assert _temp_files(root) == []


def test_list_skips_the_temp_area_and_stray_dot_files(storage: LocalStorage, root: Path) -> None:
    storage.put("ab/one", [b"1"])
    (root / TEMP_DIR / "put-crashed").write_bytes(b"half an upload")
    (root / "ab" / ".DS_Store").write_bytes(b"")
    assert list(storage.list()) == ["ab/one"]


def test_list_yields_keys_in_byte_order(storage: LocalStorage) -> None:
    keys = ["a/b", "a-c", "a.d", "a0", "ab/c/d", "ab/c-d", "b", "a/a/a"]
    for key in keys:
        storage.put(key, [b""])
    assert list(storage.list()) == sorted(keys)
    assert list(storage.list("a")) == sorted(k for k in keys if k.startswith("a"))


def test_a_key_cannot_also_be_a_directory(storage: LocalStorage, root: Path) -> None:
    storage.put("a", [b"file"])
    with pytest.raises(StorageError) as raised:
        storage.put("a/b", [b"child"])
    assert not isinstance(raised.value, StorageUnavailable)  # our limitation, not an outage
    storage.put("c/d", [b"child"])
    with pytest.raises(StorageError):
        storage.put("c", [b"file"])
    assert b"".join(storage.get("a")) == b"file"
    assert storage.head("c") is None
    with pytest.raises(ObjectNotFound):
        storage.get("c")
    with pytest.raises(ObjectNotFound):
        storage.get("a/b")
    assert storage.delete("c") is False
    assert _temp_files(root) == []


def test_get_releases_its_file_handle(storage: LocalStorage) -> None:
    storage.put("k", [os.urandom(3 * CHUNK_SIZE)])
    baseline = _open_fds()
    stream = storage.get("k")
    assert _open_fds() == baseline + 1
    stream.close()  # type: ignore[attr-defined]
    assert _open_fds() == baseline
    stream = storage.get("k")
    next(stream)
    del stream  # abandoned mid-way, e.g. a client that disconnected
    assert _open_fds() == baseline
    for _ in storage.get("k"):
        pass
    assert _open_fds() == baseline
    with pytest.raises(ObjectNotFound):
        storage.get("missing")
    assert _open_fds() == baseline


# -- availability ------------------------------------------------------------------------


def test_check_raises_when_the_root_is_gone(storage: LocalStorage, root: Path) -> None:
    storage.check()
    for path in sorted(root.rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    root.rmdir()
    with pytest.raises(StorageUnavailable):
        storage.check()
    with pytest.raises(StorageUnavailable):
        storage.put("k", [b"x"])
    assert not root.exists(), "an unmounted root must not be silently recreated"


def test_check_raises_when_the_root_is_a_file(tmp_path: Path) -> None:
    # Tests run as root, so chmod cannot make a directory unwritable: use a regular file.
    not_a_dir = tmp_path / "objects"
    not_a_dir.write_bytes(b"")
    with pytest.raises(StorageUnavailable):
        LocalStorage(not_a_dir)
    storage = LocalStorage(not_a_dir, create=False)
    with pytest.raises(StorageUnavailable):
        storage.check()
    with pytest.raises(StorageUnavailable):
        storage.put("k", [b"x"])
    assert storage.head("k") is None
    assert list(storage.list()) == []


def test_check_raises_when_the_temp_area_is_missing(storage: LocalStorage, root: Path) -> None:
    (root / TEMP_DIR).rmdir()
    (root / TEMP_DIR).write_bytes(b"")
    with pytest.raises(StorageUnavailable):
        storage.check()


def test_check_leaves_no_probe_behind(storage: LocalStorage, root: Path) -> None:
    storage.check()
    assert _temp_files(root) == []


# -- crash cleanup -----------------------------------------------------------------------

# A process storing one object whose body stops after its first chunk until stdin closes:
# an upload in flight, which the test lets finish (close stdin) or kills (SIGKILL).
_UPLOADER = textwrap.dedent(
    """
    import sys
    from ctxcloud.plugins.storage_local.backend import LocalStorage

    def body():
        yield b"x" * 70000
        print("uploading", flush=True)
        sys.stdin.read()
        yield b"y" * 70000

    LocalStorage(sys.argv[1]).put(sys.argv[2], body())
    print("stored", flush=True)
    """
)
ROOT_DIR = Path(__file__).resolve().parents[2]


def _start_upload(root: Path, key: str) -> subprocess.Popen:
    """An upload in another process, returned once its temp file exists."""
    process = subprocess.Popen(
        [sys.executable, "-c", _UPLOADER, str(root), key],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT_DIR,
    )
    assert process.stdout.readline() == "uploading\n", "the uploader did not start"
    return process


def _kill(process: subprocess.Popen) -> None:
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    process.stdin.close()
    process.stdout.close()


def test_a_worker_start_removes_the_temp_file_of_a_killed_upload(
    storage: LocalStorage, root: Path
) -> None:
    upload = _start_upload(root, "ab/killed")
    (leftover,) = _temp_files(root)
    _kill(upload)
    assert _temp_files(root) == [leftover]  # seconds old, not a day: removed all the same
    LocalStorage.from_config({"STORAGE_LOCAL_ROOT": str(root), "DATA_DIR": "unused"})
    assert _temp_files(root) == []
    assert storage.head("ab/killed") is None


def test_a_sweep_leaves_a_live_upload_alone(storage: LocalStorage, root: Path) -> None:
    dead = _start_upload(root, "dead")
    (dead_file,) = _temp_files(root)
    _kill(dead)
    live = _start_upload(root, "live")
    (live_file,) = set(_temp_files(root)) - {dead_file}
    try:
        assert storage.purge_dead_temp() == 1
        assert _temp_files(root) == [live_file]
        out, _ = live.communicate("", timeout=60)  # the upload goes on and completes
    finally:
        if live.poll() is None:
            _kill(live)
    assert live.returncode == 0 and out == "stored\n"
    assert b"".join(storage.get("live")) == b"x" * 70000 + b"y" * 70000
    assert _temp_files(root) == []


def test_a_sweep_never_takes_a_temp_file_between_its_creation_and_its_lock(
    storage: LocalStorage, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_mkstemp = local_backend.tempfile.mkstemp
    sweeps: list[threading.Thread] = []
    swept: list[int] = []
    busy: list[bool] = []

    def mkstemp(**kwargs):
        created = real_mkstemp(**kwargs)  # created, not yet locked: the window
        fd = os.open(root / TEMP_DIR, os.O_RDONLY | os.O_DIRECTORY)
        try:  # a sweep cannot list the directory now...
            busy.append(local_backend._try_lock(fd, fcntl.LOCK_EX) is False)
        finally:
            os.close(fd)
        sweep = threading.Thread(target=lambda: swept.append(storage.purge_dead_temp()))
        sweep.start()  # ...and one started now waits for the lock, then skips the file
        sweeps.append(sweep)
        return created

    monkeypatch.setattr(local_backend.tempfile, "mkstemp", mkstemp)
    storage.put("k", [b"safe"])
    storage.check()  # its probe file is created and locked the same way
    for sweep in sweeps:
        sweep.join(timeout=30)
    assert busy == [True, True]
    assert swept == [0, 0]
    assert b"".join(storage.get("k")) == b"safe"
    assert _temp_files(root) == []


def test_a_sweep_does_not_hang_on_a_stuck_writer(
    storage: LocalStorage, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local_backend, "SWEEP_LOCK_WAIT", 0.05)
    fresh, old = root / TEMP_DIR / "put-fresh", root / TEMP_DIR / "put-old"
    fresh.write_bytes(b"maybe a writer's, not yet locked")
    old.write_bytes(b"a day old and unlocked")
    long_ago = time.time() - 2 * 24 * 3600
    os.utime(old, (long_ago, long_ago))
    writer = os.open(root / TEMP_DIR, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(writer, fcntl.LOCK_SH)  # a writer stopped inside its window
        started = time.monotonic()
        assert storage.purge_dead_temp() == 1  # only what is dead by age alone
        assert time.monotonic() - started < 10
    finally:
        os.close(writer)
    assert _temp_files(root) == ["put-fresh"]


def test_without_file_locks_only_day_old_temp_files_are_removed(
    storage: LocalStorage, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_locks(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")  # e.g. an NFS mount without lockd

    monkeypatch.setattr(local_backend.fcntl, "flock", no_locks)
    monkeypatch.setattr(local_backend, "SWEEP_LOCK_WAIT", 0.05)
    storage.put("k", [b"still works"])
    storage.check()
    old, fresh = root / TEMP_DIR / "put-old", root / TEMP_DIR / "put-fresh"
    old.write_bytes(b"crashed upload")
    fresh.write_bytes(b"live upload")
    long_ago = time.time() - 2 * 24 * 3600
    os.utime(old, (long_ago, long_ago))
    assert storage.purge_dead_temp() == 1
    assert _temp_files(root) == ["put-fresh"]
    assert b"".join(storage.get("k")) == b"still works"


def test_scan_reports_the_mtime_of_the_last_write(storage: LocalStorage, root: Path) -> None:
    storage.put("ab/old", [b"12345"])
    storage.put("ab/new", [b"1"])
    yesterday = time.time() - 24 * 3600
    os.utime(root / "ab" / "old", (yesterday, yesterday))
    infos = {info.key: info for info in storage.scan("ab/")}
    assert infos["ab/old"].size == 5 and infos["ab/old"].modified == pytest.approx(yesterday)
    assert infos["ab/new"].modified == pytest.approx(time.time(), abs=60)
    assert storage.head("ab/old").modified == pytest.approx(yesterday)


# -- configuration and plugin ------------------------------------------------------------


def test_from_config_uses_storage_local_root(tmp_path: Path) -> None:
    storage = LocalStorage.from_config(
        {"STORAGE_LOCAL_ROOT": str(tmp_path / "elsewhere"), "DATA_DIR": str(tmp_path / "var")}
    )
    assert storage.root == str(tmp_path / "elsewhere")
    storage.check()


def test_from_config_defaults_to_data_dir_objects(tmp_path: Path) -> None:
    storage = LocalStorage.from_config({"DATA_DIR": str(tmp_path / "var")})
    assert storage.root == str(tmp_path / "var" / "objects")
    assert _mode(tmp_path / "var" / "objects") == 0o700
    storage.check()


def test_plugin_offers_local_through_the_hook(tmp_path: Path) -> None:
    plugin = pytest.importorskip("ctxcloud.plugins.storage_local")
    backends = plugin.storage_backends()
    assert set(backends) == {"local"}
    storage = backends["local"]({"DATA_DIR": str(tmp_path)})
    assert isinstance(storage, LocalStorage)
    assert hasattr(plugin.storage_backends, "ctxcloud_impl")


# -- memory ------------------------------------------------------------------------------


@pytest.mark.slow
def test_put_and_get_stream_256_mib_with_flat_memory(storage: LocalStorage) -> None:
    size = 256 * MiB
    block = os.urandom(MiB - 1)  # reused, so the source itself allocates nothing
    sent = hashlib.sha256()

    def source() -> Iterator[bytes]:
        remaining = size
        while remaining:
            chunk = block if remaining >= len(block) else block[:remaining]
            sent.update(chunk)
            remaining -= len(chunk)
            yield chunk

    tracemalloc.start()
    try:
        baseline, _ = tracemalloc.get_traced_memory()
        assert storage.put("big", source()) == size
        received, total = hashlib.sha256(), 0
        for chunk in storage.get("big"):
            received.update(chunk)
            total += len(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == size
    assert received.digest() == sent.digest()
    assert peak - baseline < 8 * MiB, f"peak grew by {(peak - baseline) / MiB:.1f} MiB"
