"""The azure backend (plugins/storage_azure, the ctxcloud-storage-azure distribution).

The conformance suite runs against Azurite (the real emulator, npm, over HTTP on a free
loopback port); then what is Azure's own: blocks and their size, bounded memory, ranged reads,
blob names, uncommitted blobs a killed writer leaves and their abort, two writers of one key,
outages and the retry budget, credentials and settings, and the plugin found through its entry
point by the app. Where Azurite differs from the real service, docs/storage.md says how and
the test here says which behaviour it pins. An emulator that cannot start fails the run:
nothing here skips.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from ctxcloud_storage_azure import backend as azure_backend
from ctxcloud_storage_azure.backend import AzureBlobStorage, BudgetedRetry
from ctxcloud_storage_azure.settings import DEFAULTS, AzureSettings

from ctxcloud import ConfigError, create_app
from ctxcloud.storage import (
    CHUNK_SIZE,
    IncompleteUpload,
    ObjectInfo,
    ObjectNotFound,
    StorageError,
    StorageUnavailable,
)
from ctxcloud.testing.storage_conformance import StorageConformance
from tests.stack import migrated_app
from tests.support.azurite import (
    ACCOUNT_KEY,
    AZURITE_VERSION,
    Azurite,
    azurite,
    installed_version,
)
from tests.support.context import create_project, entry_url, put_entry
from tests.support.factories import bearer, make_api_key, make_tenant
from tests.support.server import free_port

ROOT = Path(__file__).resolve().parents[2]
KiB = 1024
MiB = 1024 * KiB
SMALL_BLOCKS = {"AZURE_BLOCK_SIZE": 64 * KiB}
# Fail fast when the account is down: no retries, short timeouts.
FAIL_FAST = {"AZURE_MAX_ATTEMPTS": 1, "AZURE_CONNECT_TIMEOUT": 1, "AZURE_READ_TIMEOUT": 2}
PROMPTLY = 5.0  # seconds an operation may take to report an outage with FAIL_FAST
# A well-formed account key that is not the account's.
WRONG_KEY = "V3JvbmdLZXk" + ACCOUNT_KEY[11:]


@pytest.fixture(scope="module")
def azurite_server() -> Iterator[Azurite]:
    """One Azurite for this module's tests: each works in a container of its own, and none
    stops it (``azurite()`` gives a server of one's own to take down)."""
    with azurite() as server:
        yield server


@pytest.fixture
def container(azurite_server: Azurite) -> Iterator[str]:
    """A fresh container per test, deleted afterwards (with whatever it holds)."""
    name = azurite_server.create_container()
    yield name
    azurite_server.delete_container(name)


@pytest.fixture
def make_backend(azurite_server: Azurite, container: str) -> Iterator[Callable[..., Any]]:
    """Build backends on the test's container from setting overrides; closed at the end."""
    made: list[AzureBlobStorage] = []

    def make(**settings: Any) -> AzureBlobStorage:
        storage = AzureBlobStorage.from_config(
            azurite_server.config(AZURE_CONTAINER=container, **settings)
        )
        made.append(storage)
        return storage

    yield make
    for storage in made:
        storage.close()


@pytest.fixture
def raw(azurite_server: Azurite, container: str) -> Iterator[Any]:
    """A plain ContainerClient on the test's container, to look behind the backend."""
    service = azurite_server.service()
    yield service.get_container_client(container)
    service.close()


@pytest.fixture
def quick_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retries after milliseconds, not seconds: what is tested is how many, not how long."""
    monkeypatch.setattr(BudgetedRetry, "BASE_BACKOFF", 0.01)


class _Calls:
    """Every request a backend sends (each attempt), as Blob service operation names."""

    def __init__(self, storage: AzureBlobStorage) -> None:
        self.records: list[tuple[str, dict[str, str], int, int]] = []
        assert storage.session is not None
        storage.session.hooks["response"].append(self._record)

    def _record(self, response: requests.Response, **kwargs: Any) -> None:
        request = response.request
        query = parse_qs(urlsplit(request.url).query)
        comp = query.get("comp", [""])[0]
        operation = {
            ("PUT", "block"): "PutBlock",
            ("PUT", "blocklist"): "PutBlockList",
            ("PUT", ""): "PutBlob",
            ("GET", "blocklist"): "GetBlockList",
            ("GET", "list"): "ListBlobs",
            ("GET", ""): "GetBlob",
            ("HEAD", ""): "GetBlobProperties",
            ("DELETE", ""): "DeleteBlob",
        }.get((request.method, comp), f"{request.method} {comp}")
        headers = {name.lower(): value for name, value in request.headers.items()}
        size = int(headers.get("content-length") or 0)
        self.records.append((operation, headers, size, response.status_code))

    @property
    def operations(self) -> list[str]:
        return [name for name, _, _, _ in self.records]

    def sizes(self, operation: str) -> list[int]:
        return [size for name, _, size, _ in self.records if name == operation]

    def headers(self, operation: str) -> list[dict[str, str]]:
        return [headers for name, headers, _, _ in self.records if name == operation]

    def statuses(self, operation: str) -> list[int]:
        return [status for name, _, _, status in self.records if name == operation]

    def clear(self) -> None:
        self.records.clear()


def _pieces(data: bytes, size: int = 7 * KiB) -> Iterator[bytes]:
    view = memoryview(data)
    for offset in range(0, len(data), size):
        yield bytes(view[offset : offset + size])


def _read(storage: AzureBlobStorage, key: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join(storage.get(key, start, end))


def _names(raw: Any, prefix: str = "", uncommitted: bool = False) -> list[str]:
    include = ["uncommittedblobs"] if uncommitted else None
    return sorted(b.name for b in raw.list_blobs(name_starts_with=prefix, include=include))


# -- the shared conformance suite ----------------------------------------------------------

CONFORMANCE_PREFIX = "deploy-a/ctxcloud/"


@pytest.fixture(scope="module")
def plain_container(azurite_server: Azurite) -> Iterator[str]:
    name = azurite_server.create_container()
    yield name
    azurite_server.delete_container(name)


@pytest.fixture(scope="module")
def shared_container(azurite_server: Azurite) -> Iterator[str]:
    """A container that also holds blobs that are not this deployment's objects: others'
    objects, names that are no keys, and an upload of someone else's that never finished."""
    name = azurite_server.create_container()
    client = azurite_server.admin.get_container_client(name)
    for foreign in (
        "outside/object",
        "deploy-a/other",
        "deploy-a/ctxcloud-2/x",
        "ROOT",
        f"{CONFORMANCE_PREFIX}UPPER",
        f"{CONFORMANCE_PREFIX}a.~b",  # "~" only ever follows a segment's last dot
    ):
        client.upload_blob(foreign, b"not ctxcloud's")
    client.get_blob_client("outside/pending").stage_block("0001", b"someone else's")
    yield name
    azurite_server.delete_container(name)


class TestAzureConformance(StorageConformance):
    """The whole container is the namespace (no prefix), with the default 8 MiB blocks."""

    @pytest.fixture
    def backend(self, azurite_server: Azurite, plain_container: str) -> Iterator[Any]:
        storage = AzureBlobStorage.from_config(
            azurite_server.config(AZURE_CONTAINER=plain_container)
        )
        yield storage
        storage.close()


class TestAzureConformanceWithPrefixAndSmallBlocks(StorageConformance):
    """Under AZURE_PREFIX beside blobs that are not ours, in 64 KiB blocks: the failed puts,
    the 50 MiB object (800 blocks) and the concurrent writers of one key all go in blocks."""

    @pytest.fixture
    def backend(self, azurite_server: Azurite, shared_container: str) -> Iterator[Any]:
        storage = AzureBlobStorage.from_config(
            azurite_server.config(
                AZURE_CONTAINER=shared_container, AZURE_PREFIX=CONFORMANCE_PREFIX, **SMALL_BLOCKS
            )
        )
        yield storage
        storage.close()


# -- writes: one Put Blob, or blocks of the block size -------------------------------------


def test_small_objects_go_in_one_put_blob_larger_ones_in_blocks(make_backend, raw) -> None:
    storage = make_backend(**SMALL_BLOCKS)
    calls = _Calls(storage)

    small = os.urandom(1000)
    assert storage.put("small", _pieces(small)) == len(small)
    assert calls.operations == ["PutBlob"]
    assert calls.sizes("PutBlob") == [1000]

    calls.clear()
    large = os.urandom(200 * KiB + 5)
    assert storage.put("large", _pieces(large)) == len(large)
    assert calls.operations == ["PutBlock"] * 4 + ["PutBlockList"]
    assert calls.sizes("PutBlock") == [64 * KiB, 64 * KiB, 64 * KiB, 8 * KiB + 5]
    committed, uncommitted = raw.get_blob_client("large").get_block_list("all")
    assert [block.size for block in committed] == [64 * KiB, 64 * KiB, 64 * KiB, 8 * KiB + 5]
    assert uncommitted == []
    assert _read(storage, "large") == large
    assert _read(storage, "small") == small

    calls.clear()
    exact = os.urandom(64 * KiB)
    storage.put("exact", [exact])  # exactly one block, up to SINGLE_PUT_LIMIT: one Put Blob
    assert calls.operations == ["PutBlob"]
    assert _read(storage, "exact") == exact


def test_objects_past_the_single_put_limit_are_sent_from_the_buffer(make_backend) -> None:
    """Put Blob takes ``bytes`` (a copy): past SINGLE_PUT_LIMIT, blocks are sent without one."""
    storage = make_backend(AZURE_BLOCK_SIZE=4 * MiB)
    calls = _Calls(storage)
    limit = azure_backend.SINGLE_PUT_LIMIT
    storage.put("at-limit", [os.urandom(limit)])
    assert calls.operations == ["PutBlob"]
    calls.clear()
    data = os.urandom(limit + 1)
    storage.put("past-limit", _pieces(data, 64 * KiB))
    assert calls.operations == ["PutBlock", "PutBlockList"]
    assert calls.sizes("PutBlock") == [limit + 1]
    assert _read(storage, "past-limit") == data


def test_block_ids_are_unique_per_upload_and_of_one_length(make_backend, raw) -> None:
    storage = make_backend(**SMALL_BLOCKS)
    storage.put("k", [os.urandom(130 * KiB)])
    first = [block.id for block in raw.get_blob_client("k").get_block_list("committed")[0]]
    storage.put("k", [os.urandom(130 * KiB)])
    second = [block.id for block in raw.get_blob_client("k").get_block_list("committed")[0]]
    assert len(first) == len(second) == 3
    assert len({len(block_id) for block_id in first + second}) == 1  # Azure requires one length
    assert not set(first) & set(second)  # two writers of one key never replace each other's


def test_put_holds_about_one_block_and_get_about_two_reads_in_memory(make_backend) -> None:
    """Counted, not timed: the Put Block sizes are the block size, and the peak of traced
    memory is about one block for a put however large the object, and for a get about twice
    one ranged request (the response's pieces, then the SDK's join of them), never growing
    with the object. Without the backend's length-less streams, the SDK's list() of a
    response would presize itself to the response's byte count: 8 bytes per byte, 32 MiB for
    one 4 MiB request, and this test fails."""
    storage = make_backend(AZURE_BLOCK_SIZE=MiB)
    calls = _Calls(storage)
    piece = os.urandom(MiB - 1)

    def source(size: int) -> Iterator[bytes]:
        remaining = size
        while remaining:
            chunk = piece if remaining >= len(piece) else piece[:remaining]
            remaining -= len(chunk)
            yield chunk

    def get_peak(key: str) -> int:
        tracemalloc.start()
        try:
            baseline, _ = tracemalloc.get_traced_memory()
            total = sum(len(chunk) for chunk in storage.get(key))
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert total == storage.head(key).size
        return peak - baseline

    storage.put("warm-up", source(3 * MiB))  # the client's lazy set-up is not what we measure
    list(storage.get("warm-up"))
    calls.clear()
    tracemalloc.start()
    try:
        baseline, _ = tracemalloc.get_traced_memory()
        assert storage.put("big", source(24 * MiB)) == 24 * MiB
        _, put_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert calls.sizes("PutBlock") == [MiB] * 24
    assert put_peak - baseline < 2.5 * MiB, (
        f"put peak grew by {(put_peak - baseline) / MiB:.1f} MiB"
    )

    storage.put("small", source(2 * azure_backend.READ_SIZE))  # two requests; "big" six
    small_peak, big_peak = get_peak("small"), get_peak("big")
    assert big_peak < small_peak + MiB, (small_peak / MiB, big_peak / MiB)
    # One request's pieces and their join, and the CHUNK_SIZE piece handed on.
    assert big_peak < 2 * azure_backend.READ_SIZE + 2 * MiB, big_peak / MiB


# -- reads: ranged requests of READ_SIZE, handed on in chunks ----------------------------------


def test_reads_are_ranged_requests_of_read_size_handed_on_in_chunks(make_backend) -> None:
    storage = make_backend()
    read = azure_backend.READ_SIZE
    assert read == 4 * MiB  # the SDK's own default chunk
    data = os.urandom(2 * read + MiB + 10)
    storage.put("k", [data])
    calls = _Calls(storage)

    chunks = list(storage.get("k"))
    assert b"".join(chunks) == data
    assert all(0 < len(chunk) <= CHUNK_SIZE for chunk in chunks)
    assert calls.operations == ["GetBlob"] * 3
    assert [h.get("x-ms-range") for h in calls.headers("GetBlob")] == [
        f"bytes=0-{read - 1}",
        f"bytes={read}-{2 * read - 1}",
        f"bytes={2 * read}-{2 * read + MiB + 9}",
    ]

    calls.clear()
    assert _read(storage, "k", 1000, 1999) == data[1000:2000]
    assert [h.get("x-ms-range") for h in calls.headers("GetBlob")] == ["bytes=1000-1999"]
    calls.clear()
    assert _read(storage, "k", 10, 10**12) == data[10:]  # clamped to the object
    assert _read(storage, "k", len(data)) == b""  # starts at the end
    assert _read(storage, "k", len(data), len(data) + 10) == b""
    with pytest.raises(ObjectNotFound):
        storage.get("missing", 10, 20)


def test_a_read_overtaken_by_an_overwrite_fails_rather_than_mixing(make_backend) -> None:
    storage = make_backend()
    read = azure_backend.READ_SIZE
    old, new = os.urandom(2 * read), os.urandom(2 * read)
    storage.put("k", [old])
    stream = storage.get("k")
    assert b"".join(next(stream) for _ in range(read // CHUNK_SIZE)) == old[:read]
    storage.put("k", [new])  # the next range is asked with If-Match: the first answer's ETag
    with pytest.raises(StorageError, match="replaced while it was being read"):
        next(stream)
    assert _read(storage, "k") == new


# -- names: the keys under the prefix, and nothing else ------------------------------------


def test_blob_names_are_the_keys_under_the_prefix_and_carry_nothing_else(make_backend, raw):
    storage = make_backend(AZURE_PREFIX="tenant-a")  # a trailing "/" is added
    assert storage.prefix == "tenant-a/"
    key = "o/3f/3fa94c0e1b7d4e2a9c51f0d2e8b6a417"
    storage.put(key, [b"ciphertext"])
    assert _names(raw) == [f"tenant-a/{key}"]
    properties = raw.get_blob_client(f"tenant-a/{key}").get_blob_properties()
    assert properties.metadata == {}
    assert properties.content_settings.content_type == "application/octet-stream"


def test_a_part_ending_in_a_dot_is_stored_with_a_tilde(make_backend, raw) -> None:
    """Azure drops a trailing "." from each part of a blob name ("a." and "a" would be one
    blob); Azurite keeps it. The backend stores such a part as "a.~" ("~" is no key character),
    so every valid key has a blob of its own on both."""
    storage = make_backend(AZURE_PREFIX="p/")
    keys = {"a": b"1", "a.": b"2", "x./y": b"3", "x/y": b"4", "x./y.": b"5", "a.b": b"6"}
    for key, value in keys.items():
        storage.put(key, [value])
    raw.upload_blob("p/b.~c", b"not a key's name")  # a "~" no escape explains
    assert _names(raw) == sorted(
        ["p/a", "p/a.~", "p/x.~/y", "p/x/y", "p/x.~/y.~", "p/a.b", "p/b.~c"]
    )
    for key, value in keys.items():
        assert _read(storage, key) == value
        assert storage.head(key) == ObjectInfo(key=key, size=1)
    assert sorted(storage.list()) == sorted(keys)
    assert sorted(storage.list("a")) == ["a", "a.", "a.b"]
    assert sorted(storage.list("a.")) == ["a.", "a.b"]
    assert sorted(storage.list("x.")) == ["x./y", "x./y."]
    assert sorted(storage.list("x./")) == ["x./y", "x./y."]
    assert sorted(info.key for info in storage.scan("x")) == ["x./y", "x./y.", "x/y"]
    assert storage.delete("a.") is True
    assert _read(storage, "a") == b"1"


def test_a_key_of_more_parts_than_azure_allows_is_refused_before_any_request(make_backend):
    """Azure refuses blob names of more than 254 "/"-separated parts (Azurite does not): such a
    key is refused like an invalid one, before its chunks are read, not half-way as a 400."""
    deepest = "/".join(["a"] * 254)  # a valid key of 507 characters
    storage = make_backend()
    storage.put(deepest, [b"x"])
    assert _read(storage, deepest) == b"x"
    prefixed = make_backend(AZURE_PREFIX="p/")  # one part more
    calls = _Calls(prefixed)

    def never_read() -> Iterator[bytes]:
        raise AssertionError("put() read the chunks of a key it must refuse")
        yield b""

    with pytest.raises(ValueError, match="more parts than Azure allows"):
        prefixed.put(deepest, never_read())
    with pytest.raises(ValueError):
        prefixed.get(deepest)
    assert calls.operations == []


def test_list_pages_and_skips_blobs_that_are_not_keys(make_backend, raw, monkeypatch) -> None:
    monkeypatch.setattr(azure_backend, "LIST_PAGE_SIZE", 3)
    storage = make_backend(AZURE_PREFIX="p/")
    keys = [f"k/{i:02d}" for i in range(8)]
    for key in keys:
        storage.put(key, [b"x"])
    for foreign in ("p/K/upper", "p/k/.hidden", "p/k//double", "p/k/", "q/k/00"):
        raw.upload_blob(foreign, b"")
    assert sorted(storage.list()) == keys
    assert sorted(storage.list("k/0")) == keys


def test_scan_reads_sizes_and_times_from_the_listing_pages(make_backend, raw, monkeypatch):
    monkeypatch.setattr(azure_backend, "LIST_PAGE_SIZE", 2)
    storage = make_backend(AZURE_PREFIX="p/")
    before = time.time()
    for i in range(5):
        storage.put(f"k/{i}", [b"x" * i])
    raw.upload_blob("p/K/upper", b"not ours")
    calls = _Calls(storage)
    infos = sorted(storage.scan(), key=lambda info: info.key)
    assert [(info.key, info.size) for info in infos] == [(f"k/{i}", i) for i in range(5)]
    for info in infos:
        assert before - 2 <= info.modified <= time.time() + 2  # Azure dates to the second
    assert calls.operations == ["ListBlobs"] * 3  # the pages alone: no request per object


# -- two writers of one key ----------------------------------------------------------------


def test_a_writer_overtaken_by_another_commit_counts_as_overwritten(make_backend) -> None:
    """A commit drops every uncommitted block of the blob, a concurrent writer's too: that
    writer's Put Block List fails (InvalidBlockList), and as another value was committed since
    its first block, its put succeeds as one overwritten by that value (as on S3, where the
    last of two concurrent writers wins: here the other one counts as the last).

    The other writer commits blocks (Put Block List) here: Azure drops the blocks on a Put Blob
    too, Azurite does not, and the backend handles both the same way."""
    writer = make_backend(**SMALL_BLOCKS)
    other = make_backend(**SMALL_BLOCKS)
    calls = _Calls(writer)
    theirs = os.urandom(100 * KiB)

    def slow_source() -> Iterator[bytes]:
        yield b"a" * 64 * KiB
        yield b"a"  # the first block goes out as this arrives
        assert other.put("k", [theirs]) == len(theirs)  # its commit drops our block
        yield b"a" * 70 * KiB

    assert writer.put("k", slow_source()) == 134 * KiB + 1
    assert calls.statuses("PutBlockList") == [400]  # InvalidBlockList: our first block is gone
    assert calls.operations[-1] == "GetBlobProperties"  # then: was something committed since?
    assert _read(writer, "k") == theirs
    assert list(writer.incomplete_uploads()) == []


def test_a_writer_whose_blocks_vanished_with_no_newer_object_fails_publishing_nothing(
    make_backend, raw
) -> None:
    """What a writer sees when `ctxcloud storage gc` aborts its upload under it on Azure (the
    Delete Blob drops the blocks; on Azurite it leaves them, so it is staged here as another
    writer's commit, then a delete of the key): nothing newer is committed, so it fails."""
    writer = make_backend(**SMALL_BLOCKS)
    other = make_backend(**SMALL_BLOCKS)

    def source() -> Iterator[bytes]:
        yield b"a" * 64 * KiB
        yield b"a"
        other.put("k", [os.urandom(100 * KiB)])  # drops our first block...
        assert other.delete("k") is True  # ...and leaves no object behind
        yield b"a" * 70 * KiB

    with pytest.raises(StorageError, match="staged blocks were dropped"):
        writer.put("k", source())
    assert writer.head("k") is None
    assert list(writer.list()) == []
    assert _names(raw, uncommitted=True) == []  # the blocks staged after the drop went too
    assert list(writer.incomplete_uploads()) == []


@pytest.mark.parametrize("existing", [False, True], ids=["new", "overwrite"])
def test_a_failed_upload_drops_its_blocks_but_never_an_object(make_backend, raw, existing):
    storage = make_backend(**SMALL_BLOCKS)
    old = os.urandom(100 * KiB)
    if existing:
        storage.put("k", [old])
    calls = _Calls(storage)

    def failing() -> Iterator[bytes]:
        yield os.urandom(200 * KiB)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        storage.put("k", failing())
    assert calls.operations == ["PutBlock"] * 3 + ["DeleteBlob"]
    (delete,) = calls.headers("DeleteBlob")
    assert delete["if-unmodified-since"] == "Sat, 01 Jan 2000 00:00:00 GMT"
    if existing:
        assert calls.statuses("DeleteBlob") == [412]  # the condition protects the object
        assert _read(storage, "k") == old
        assert _names(raw, uncommitted=True) == ["k"]
    else:
        assert calls.statuses("DeleteBlob") == [202]
        assert storage.head("k") is None
        assert _names(raw, uncommitted=True) == []
    assert list(storage.incomplete_uploads()) == []


# -- incomplete uploads: what a killed writer leaves ---------------------------------------

# A process storing a 64 KiB + 1 byte object in 64 KiB blocks, stopped after its first block
# is staged (until stdin closes): killed there, it can drop nothing.
_UPLOADER = """
import json, sys
from ctxcloud_storage_azure.backend import AzureBlobStorage

def body():
    yield b"a" * (64 * 1024)
    yield b"b"  # the first block goes out as this one arrives
    print("block staged", flush=True)
    sys.stdin.read()

AzureBlobStorage.from_config(json.loads(sys.argv[1])).put("o/aa/killed", body())
"""


def test_a_killed_writers_upload_is_listed_then_aborted(azurite_server, container, raw):
    settings = azurite_server.config(AZURE_CONTAINER=container, AZURE_PREFIX="deploy/")
    settings.update(SMALL_BLOCKS)
    before = time.time()
    writer = subprocess.Popen(
        [sys.executable, "-c", _UPLOADER, json.dumps(settings)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert writer.stdout.readline() == "block staged\n"
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait(timeout=30)
        writer.stdin.close()
        writer.stdout.close()
    after = time.time()
    raw.get_blob_client("outside/o/aa/x").stage_block("0001", b"another deployment's")
    raw.get_blob_client("deploy/NOT-OURS").stage_block("0001", b"no key of ours")
    storage = AzureBlobStorage.from_config(settings)
    storage.put("o/aa/empty", [])  # committed and empty: listed as empty, but no upload
    storage.put("o/aa/full", [b"committed"])
    raw.get_blob_client("deploy/o/aa/full").stage_block("0001", b"pending over an object")

    (upload,) = storage.incomplete_uploads()
    assert isinstance(upload, IncompleteUpload)
    assert upload.key == "o/aa/killed"
    assert upload.size == 64 * KiB
    assert before - 120 <= upload.started <= after + 120
    assert list(storage.incomplete_uploads("o/bb/")) == []
    assert list(storage.incomplete_uploads(started_before=upload.started)) == []  # not older
    assert list(storage.incomplete_uploads(started_before=time.time() + 60)) == [upload]
    assert storage.head("o/aa/killed") is None
    assert sorted(storage.list()) == ["o/aa/empty", "o/aa/full"]

    assert storage.abort_upload(upload) is True
    assert storage.abort_upload(upload) is False  # gone: nothing to abort
    assert list(storage.incomplete_uploads()) == []
    assert _names(raw, uncommitted=True) == [
        "deploy/NOT-OURS",
        "deploy/o/aa/empty",
        "deploy/o/aa/full",
        "outside/o/aa/x",
    ]
    assert _read(storage, "o/aa/full") == b"committed"
    storage.close()


def test_abort_never_removes_an_object_committed_since_the_listing(make_backend) -> None:
    storage = make_backend(**SMALL_BLOCKS)
    blob = storage.container.get_blob_client("k")
    blob.stage_block("0001", b"staged")
    (upload,) = storage.incomplete_uploads()
    storage.put("k", [b"committed meanwhile"])
    assert storage.abort_upload(upload) is False
    assert _read(storage, "k") == b"committed meanwhile"


# -- outages, a missing container, credentials, the retry budget ---------------------------


def _unavailable_promptly(operation: Callable[[], object]) -> StorageUnavailable:
    started = time.monotonic()
    with pytest.raises(StorageUnavailable) as raised:
        result = operation()
        if isinstance(result, Iterator):
            list(result)
    assert time.monotonic() - started < PROMPTLY
    return raised.value


def test_azure_down_is_unavailable_promptly_then_recovers() -> None:
    with azurite() as server:
        name = server.create_container()
        storage = AzureBlobStorage.from_config(
            server.config(AZURE_CONTAINER=name, **FAIL_FAST, **SMALL_BLOCKS)
        )
        storage.put("k", [b"before the outage"])
        storage.check()
        server.stop()
        errors = [
            _unavailable_promptly(lambda: storage.put("k", [b"during"])),
            _unavailable_promptly(lambda: storage.put("big", [os.urandom(200 * KiB)])),
            _unavailable_promptly(lambda: storage.get("k")),
            _unavailable_promptly(lambda: storage.get("k", 1, 5)),
            _unavailable_promptly(lambda: storage.head("k")),
            _unavailable_promptly(lambda: storage.delete("k")),
            _unavailable_promptly(lambda: storage.list()),
            _unavailable_promptly(lambda: storage.scan()),
            _unavailable_promptly(lambda: storage.incomplete_uploads()),
            _unavailable_promptly(storage.check),
        ]
        for error in errors:
            assert ACCOUNT_KEY not in str(error)
            assert "\n" not in str(error)
        server.start()  # same port and workspace: the data survived the outage
        storage.check()
        assert _read(storage, "k") == b"before the outage"
        storage.put("k", [b"after"])
        assert _read(storage, "k") == b"after"
        storage.close()


def test_a_stream_cut_by_an_outage_is_unavailable() -> None:
    with azurite() as server:
        name = server.create_container()
        storage = AzureBlobStorage.from_config(server.config(AZURE_CONTAINER=name, **FAIL_FAST))
        storage.put("k", [os.urandom(3 * azure_backend.READ_SIZE)])
        stream = storage.get("k")
        for _ in range(azure_backend.READ_SIZE // CHUNK_SIZE):  # the first request's pieces
            next(stream)
        server.stop()
        with pytest.raises(StorageUnavailable):
            next(stream)
        storage.close()


@contextmanager
def _silent_listener() -> Iterator[Callable[[], int]]:
    """A port whose connections the kernel accepts (the backlog) and nobody ever answers;
    yields a function counting the connections made so far."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        listener.setblocking(False)
        made: list[socket.socket] = []

        def connections() -> int:
            with suppress(BlockingIOError):
                while True:
                    made.append(listener.accept()[0])
            return len(made)

        try:
            yield listener.getsockname()[1], connections
        finally:
            for conn in made:
                conn.close()


def test_a_store_that_never_answers_fails_within_the_retry_budget(quick_backoff) -> None:
    """Every attempt waits its read timeout; a retry is made only while a whole attempt (its
    backoff, then connect and read timeouts) can still end within AZURE_RETRY_BUDGET."""
    with _silent_listener() as (port, connections):
        storage = AzureBlobStorage.from_config(
            {
                "AZURE_CONTAINER": "never",
                "AZURE_CONNECTION_STRING": (
                    f"DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
                    f"AccountKey={ACCOUNT_KEY};"
                    f"BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
                ),
                "AZURE_MAX_ATTEMPTS": 10,
                "AZURE_CONNECT_TIMEOUT": 1,
                "AZURE_READ_TIMEOUT": 1,
                "AZURE_RETRY_BUDGET": 4.5,
            }
        )
        started = time.monotonic()
        with pytest.raises(StorageUnavailable, match="Read timed out"):
            storage.check()
        elapsed = time.monotonic() - started
        # Attempts end after 1, 2 and 3 s; one more could end at 5 s, past the 4.5 s budget
        # (each decision has half a second to spare either way).
        assert connections() == 3
        assert elapsed < 4.5
        storage.close()


class _Answering(BaseHTTPRequestHandler):
    """Answers every request with the status and x-ms-error-code the test set."""

    status = 503
    code = "ServerBusy"
    seen: list[str]

    def _answer(self) -> None:
        self.seen.append(self.command)
        body = (
            '<?xml version="1.0" encoding="utf-8"?>'
            f"<Error><Code>{self.code}</Code><Message>busy</Message></Error>"
        ).encode()
        self.send_response(self.status)
        self.send_header("x-ms-error-code", self.code)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_PUT = do_HEAD = do_DELETE = _answer

    def log_message(self, *args: Any) -> None:
        pass


@pytest.mark.parametrize(
    ("status", "code", "error", "attempts"),
    [
        (503, "ServerBusy", StorageUnavailable, 3),
        (500, "InternalError", StorageUnavailable, 3),
        (500, "OperationTimedOut", StorageUnavailable, 3),
        (409, "LeaseIdMissing", StorageError, 1),
    ],
)
def test_what_the_service_answers_after_the_retries(quick_backoff, status, code, error, attempts):
    """Azure's own overload answer (503 ServerBusy, with Retry-After) and 5xx are retried,
    then StorageUnavailable (the API answers 503); a refusal is a StorageError, not retried."""
    handler = type("Handler", (_Answering,), {"status": status, "code": code, "seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        storage = AzureBlobStorage.from_config(
            {
                "AZURE_CONTAINER": "busy",
                "AZURE_ACCOUNT_URL": f"http://127.0.0.1:{server.server_port}/devstoreaccount1",
                "AZURE_ACCOUNT_KEY": ACCOUNT_KEY,
                "AZURE_MAX_ATTEMPTS": 3,
            }
        )
        with pytest.raises(error) as raised:
            storage.put("k", [b"x"])
        assert type(raised.value) is error
        assert f"{code} (HTTP {status})" in str(raised.value)
        assert handler.seen == ["PUT"] * attempts
        storage.close()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


class _RefusingTwice(requests.adapters.HTTPAdapter):
    refused = 0

    def send(self, request, *args, **kwargs):
        type(self).refused += 1
        if type(self).refused <= 2:
            raise requests.ConnectionError("connection refused (a short outage)")
        return super().send(request, *args, **kwargs)


def test_retries_ride_out_a_short_outage(make_backend, quick_backoff) -> None:
    storage = make_backend(AZURE_MAX_ATTEMPTS=3)
    adapter = type("Refusing", (_RefusingTwice,), {"refused": 0})()
    storage.session.mount("http://", adapter)
    storage.put("k", [b"x"])
    assert adapter.refused == 3
    assert _read(storage, "k") == b"x"


def test_a_missing_container_is_unavailable_with_a_clear_message(azurite_server) -> None:
    storage = AzureBlobStorage.from_config(
        azurite_server.config(AZURE_CONTAINER="no-such-container", **FAIL_FAST)
    )
    for operation in (
        storage.check,
        lambda: storage.put("k", [b"x"]),
        lambda: storage.put("k", [os.urandom(2 * MiB)]),
        lambda: storage.get("k"),
        lambda: storage.head("k"),
        lambda: storage.list(),
        lambda: storage.delete("k"),
        lambda: storage.incomplete_uploads(),
    ):
        error = _unavailable_promptly(operation)
        assert "'no-such-container' does not exist (CTXCLOUD_AZURE_CONTAINER)" in str(error)
    storage.close()


def test_refused_credentials_are_unavailable_and_never_repeated(azurite_server, container):
    """Azurite answers a wrong key with 403 AuthorizationFailure, Azure with 403
    AuthenticationFailed: both are "access denied", and the key appears nowhere."""
    connection = azurite_server.connection_string.replace(ACCOUNT_KEY, WRONG_KEY)
    storage = AzureBlobStorage.from_config(
        {"AZURE_CONTAINER": container, "AZURE_CONNECTION_STRING": connection, **FAIL_FAST}
    )
    for operation in (storage.check, lambda: storage.put("k", [b"x"]), lambda: storage.get("k")):
        error = _unavailable_promptly(operation)
        assert "access denied" in str(error) and "Storage Blob Data Contributor" in str(error)
        assert WRONG_KEY not in str(error)
    assert WRONG_KEY not in repr(storage) + repr(storage.settings)
    storage.close()


def test_a_sas_signature_never_appears_in_an_error() -> None:
    port = free_port()  # nobody listens: the error message quotes the request URL
    storage = AzureBlobStorage.from_config(
        {
            "AZURE_CONTAINER": "sas",
            "AZURE_CONNECTION_STRING": (
                f"BlobEndpoint=http://127.0.0.1:{port}/devstoreaccount1;"
                "SharedAccessSignature=sv=2025-01-05&ss=b&srt=co&sp=rwdl&se=2099-01-01"
                "&sig=Zm9yLXRlc3RzLW9ubHk%3D"
            ),
            **FAIL_FAST,
        }
    )
    for operation in (lambda: storage.put("k", [b"x"]), lambda: storage.get("k")):
        error = _unavailable_promptly(operation)
        assert "Zm9yLXRlc3RzLW9ubHk" not in str(error)
    storage.close()


def test_an_account_url_with_its_key_works(azurite_server, container) -> None:
    storage = AzureBlobStorage.from_config(
        {
            "AZURE_CONTAINER": container,
            "AZURE_ACCOUNT_URL": azurite_server.endpoint,
            "AZURE_ACCOUNT_KEY": ACCOUNT_KEY,
        }
    )
    storage.put("k", [b"signed with the account key"])
    assert _read(storage, "k") == b"signed with the account key"
    assert ACCOUNT_KEY not in repr(storage) + repr(storage.settings)
    storage.close()


def test_an_account_url_alone_uses_default_azure_credential(monkeypatch) -> None:
    """No key: DefaultAzureCredential (environment, workload identity, managed identity, Azure
    CLI...) is built without a request, and asked for a token before anything is sent; with
    none available, requests fail as unavailable, naming the cause, and reach nobody."""
    for name in list(os.environ):
        if name.startswith(("AZURE_", "IDENTITY_", "MSI_", "IMDS_")):
            monkeypatch.delenv(name)
    with _silent_listener() as (port, connections):
        storage = AzureBlobStorage.from_config(
            {
                "AZURE_CONTAINER": "identity",
                "AZURE_ACCOUNT_URL": f"https://127.0.0.1:{port}/account",
                "AZURE_MAX_ATTEMPTS": 1,
            }
        )
        from azure.identity import DefaultAzureCredential

        assert isinstance(storage._credential, DefaultAzureCredential)
        with pytest.raises(StorageUnavailable, match="no usable Azure credential"):
            storage.check()
        assert connections() == 0
        storage.close()


# -- settings --------------------------------------------------------------------------------

GOOD = {"AZURE_CONTAINER": "ctx", "AZURE_CONNECTION_STRING": "AccountName=a;AccountKey=a2V5"}


@pytest.mark.parametrize(
    ("overrides", "variable"),
    [
        ({"AZURE_CONTAINER": None}, "CTXCLOUD_AZURE_CONTAINER"),
        ({"AZURE_CONTAINER": " "}, "CTXCLOUD_AZURE_CONTAINER"),
        ({"AZURE_CONTAINER": "ab"}, "CTXCLOUD_AZURE_CONTAINER"),
        ({"AZURE_CONTAINER": "Upper"}, "CTXCLOUD_AZURE_CONTAINER"),
        ({"AZURE_CONTAINER": "a--b"}, "CTXCLOUD_AZURE_CONTAINER"),
        ({"AZURE_CONTAINER": "ends-"}, "CTXCLOUD_AZURE_CONTAINER"),
        ({"AZURE_CONTAINER": "-starts"}, "CTXCLOUD_AZURE_CONTAINER"),
        ({"AZURE_CONTAINER": "x" * 64}, "CTXCLOUD_AZURE_CONTAINER"),
        (
            {"AZURE_CONNECTION_STRING": "not a connection string"},
            "CTXCLOUD_AZURE_CONNECTION_STRING",
        ),
        ({"AZURE_CONNECTION_STRING": "Foo=bar"}, "CTXCLOUD_AZURE_CONNECTION_STRING"),
        ({"AZURE_ACCOUNT_KEY": "a2V5"}, "CTXCLOUD_AZURE_ACCOUNT_KEY"),
        (
            {"AZURE_CONNECTION_STRING": None, "AZURE_ACCOUNT_URL": "acme.blob"},
            "CTXCLOUD_AZURE_ACCOUNT_URL",
        ),
        ({"AZURE_PREFIX": "a b"}, "CTXCLOUD_AZURE_PREFIX"),
        ({"AZURE_PREFIX": "../up"}, "CTXCLOUD_AZURE_PREFIX"),
        ({"AZURE_PREFIX": "/abs"}, "CTXCLOUD_AZURE_PREFIX"),
        ({"AZURE_PREFIX": "a//b"}, "CTXCLOUD_AZURE_PREFIX"),
        ({"AZURE_PREFIX": "dot./x"}, "CTXCLOUD_AZURE_PREFIX"),
        ({"AZURE_PREFIX": "p" * 300}, "CTXCLOUD_AZURE_PREFIX"),
        ({"AZURE_BLOCK_SIZE": 1024}, "CTXCLOUD_AZURE_BLOCK_SIZE"),
        ({"AZURE_BLOCK_SIZE": 4001 * MiB}, "CTXCLOUD_AZURE_BLOCK_SIZE"),
        ({"AZURE_BLOCK_SIZE": "8MiB"}, "CTXCLOUD_AZURE_BLOCK_SIZE"),
        ({"AZURE_BLOCK_SIZE": 1.5}, "CTXCLOUD_AZURE_BLOCK_SIZE"),
        ({"AZURE_MAX_ATTEMPTS": 0}, "CTXCLOUD_AZURE_MAX_ATTEMPTS"),
        ({"AZURE_MAX_ATTEMPTS": "three"}, "CTXCLOUD_AZURE_MAX_ATTEMPTS"),
        ({"AZURE_CONNECT_TIMEOUT": 0}, "CTXCLOUD_AZURE_CONNECT_TIMEOUT"),
        ({"AZURE_READ_TIMEOUT": "soon"}, "CTXCLOUD_AZURE_READ_TIMEOUT"),
        ({"AZURE_READ_TIMEOUT": -1}, "CTXCLOUD_AZURE_READ_TIMEOUT"),
        ({"AZURE_RETRY_BUDGET": 5, "AZURE_READ_TIMEOUT": 10}, "CTXCLOUD_AZURE_RETRY_BUDGET"),
        ({"AZURE_RETRY_BUDGET": "inf"}, "CTXCLOUD_AZURE_RETRY_BUDGET"),
    ],
)
def test_a_bad_setting_stops_the_start_naming_its_variable(overrides, variable) -> None:
    with pytest.raises(ConfigError, match=variable) as raised:
        AzureSettings.from_config({**GOOD, **overrides})
    assert "\n" not in str(raised.value)


def test_exactly_one_way_to_reach_the_account_is_required() -> None:
    both = {**GOOD, "AZURE_ACCOUNT_URL": "https://acme.blob.core.windows.net"}
    for config in ({"AZURE_CONTAINER": "ctx"}, both):
        with pytest.raises(ConfigError) as raised:
            AzureSettings.from_config(config)
        message = str(raised.value)
        assert "CTXCLOUD_AZURE_CONNECTION_STRING" in message
        assert "CTXCLOUD_AZURE_ACCOUNT_URL" in message
        assert "\n" not in message


def test_settings_never_repeat_a_secret() -> None:
    secret = "c2VjcmV0LWtleS0xMjM0NTY3ODkw"
    bad = f"AccountName=acme;AccountKey={secret};NotAPair"
    with pytest.raises(ConfigError) as raised:
        AzureSettings.from_config({**GOOD, "AZURE_CONNECTION_STRING": bad})
    assert secret not in str(raised.value)
    settings = AzureSettings.from_config(
        {
            "AZURE_CONTAINER": "ctx",
            "AZURE_ACCOUNT_URL": "https://acme.blob.core.windows.net",
            "AZURE_ACCOUNT_KEY": secret,
        }
    )
    assert secret not in repr(settings)
    settings = AzureSettings.from_config(
        {**GOOD, "AZURE_CONNECTION_STRING": f"AccountName=acme;AccountKey={secret}"}
    )
    assert secret not in repr(settings)


def test_settings_from_the_environment_and_their_defaults() -> None:
    settings = AzureSettings.from_config(
        {
            **{name: "" for name in DEFAULTS},  # CTXCLOUD_AZURE_X= means unset
            **GOOD,
            "AZURE_PREFIX": "ctx/staging",
            "AZURE_BLOCK_SIZE": "4194304",
            "AZURE_MAX_ATTEMPTS": "5",
            "AZURE_CONNECT_TIMEOUT": "2.5",
        }
    )
    assert settings.prefix == "ctx/staging/"
    assert settings.block_size == 4 * MiB
    assert settings.retries == 4  # the SDK's retry_total: attempts after the first
    assert settings.connect_timeout == 2.5
    assert settings.read_timeout == DEFAULTS["AZURE_READ_TIMEOUT"]
    assert settings.retry_budget == 20.0
    assert settings.max_object_size == 50_000 * 4 * MiB
    long = AzureSettings.from_config({**GOOD, "AZURE_READ_TIMEOUT": 30})
    assert long.retry_budget == long.connect_timeout + 30  # at least one whole attempt


# -- the plugin, found through its entry point by the app ----------------------------------


def test_the_distribution_declares_its_entry_point_and_ctxcloud_needs_no_azure_sdk() -> None:
    (entry,) = [
        e for e in metadata.entry_points(group="ctxcloud.plugins") if e.name == "storage_azure"
    ]
    assert entry.value == "ctxcloud_storage_azure"
    assert entry.dist.name == "ctxcloud-storage-azure"
    requires = metadata.requires("ctxcloud-storage-azure") or []
    assert any(r.startswith("azure-storage-blob") for r in requires)
    assert any(r.startswith("azure-identity") for r in requires)
    assert not any(r.lower().startswith("azure") for r in metadata.requires("ctxcloud") or [])
    # Loading the plugin (as every app does) imports no Azure SDK: only selecting it does.
    probe = (
        "import sys, ctxcloud_storage_azure as p; p.storage_backends(); p.config_defaults(); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'azure'))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]"


def test_ci_installs_the_azurite_the_tests_pin() -> None:
    script = (ROOT / ".ci" / "packages").read_text()
    assert f"AZURITE_VERSION={AZURITE_VERSION}\n" in script
    assert installed_version() == AZURITE_VERSION  # what the tests start


def test_the_app_refuses_to_start_on_azure_without_its_settings(tmp_path) -> None:
    base = {"ENV": "testing", "DATA_DIR": str(tmp_path), "STORAGE_BACKEND": "azure"}
    with pytest.raises(ConfigError, match="CTXCLOUD_AZURE_CONTAINER"):
        create_app(base)
    with pytest.raises(ConfigError, match="CTXCLOUD_AZURE_CONNECTION_STRING"):
        create_app({**base, "AZURE_CONTAINER": "ctx"})


def test_the_app_stores_entries_on_azure_through_the_entry_point(
    azurite_server, container, raw, app_config
) -> None:
    config = {**app_config, **azurite_server.config(AZURE_CONTAINER=container, AZURE_PREFIX="ctx")}
    with migrated_app(config) as app:
        storage = app.extensions["ctxcloud"].storage
        assert type(storage) is AzureBlobStorage
        assert app.config["AZURE_BLOCK_SIZE"] == DEFAULTS["AZURE_BLOCK_SIZE"]  # config_defaults
        client = app.test_client()
        tenant = make_tenant(app)
        _, secret = make_api_key(app, tenant)
        auth = bearer(secret)
        create_project(client, auth, slug="p")
        small, large = os.urandom(300 * KiB), os.urandom(2 * MiB + 3)  # a Put Blob, blocks
        put_entry(client, auth, "p", "docs/small.bin", small, expect=201)
        put_entry(client, auth, "p", "docs/large.bin", large, expect=201)
        for path, data in (("docs/small.bin", small), ("docs/large.bin", large)):
            response = client.get(entry_url("p", path), headers=auth)
            assert response.status_code == 200
            assert response.get_data() == data
        names = _names(raw)
        assert len(names) == 2
        for name in names:  # the core's opaque keys under the prefix, ciphertext inside
            assert name.startswith("ctx/o/")
            assert "docs" not in name and "small" not in name and "p/" not in name[4:]
            stored = raw.download_blob(name).readall()
            assert small[:64] not in stored and large[:64] not in stored
        health = client.get("/api/v1/health")
        assert health.status_code == 200, health.get_json()
        assert health.get_json()["checks"]["storage"] == "ok"

        # What a writer killed mid-upload leaves, as `ctxcloud storage gc` sees and aborts it.
        raw.get_blob_client("ctx/o/00/" + "0" * 32).stage_block("0001", b"x" * 1000)

        def gc(*args: str) -> dict:
            result = app.test_cli_runner().invoke(args=["storage", "gc", "--json", *args])
            assert result.exit_code == 0, result.output
            return json.loads(result.stdout.strip().splitlines()[-1])

        dry = gc("--grace", "0")
        assert dry["incomplete_uploads"] == {"count": 1, "bytes": 1000}
        assert dry["orphaned"]["count"] == 0  # both objects are the entries'
        done = gc("--grace", "0", "--delete")
        assert done["aborted"] == {"count": 1, "bytes": 1000}
        assert _names(raw, uncommitted=True) == names
        for path, data in (("docs/small.bin", small), ("docs/large.bin", large)):
            assert client.get(entry_url("p", path), headers=auth).get_data() == data
