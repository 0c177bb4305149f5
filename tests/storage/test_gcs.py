"""The gcs backend (plugins/storage_gcs, the ctxcloud-storage-gcs distribution).

The conformance suite runs against a real GCS emulator (gcp-storage-emulator, in-process on a
free loopback port, over HTTP, anonymous credentials); then what is GCS's own: the upload
mechanism and its chunks, cancelled uploads, bounded memory, outages and the retry budget,
settings, and the plugin found through its entry point by the app. Where the emulator differs
from the real service (docs/storage.md lists how), a small HTTP fake answers as GCS does.
An emulator that cannot start fails the run: nothing here skips.
"""

from __future__ import annotations

import configparser
import gc
import hashlib
import json
import os
import subprocess
import sys
import threading
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import requests
from ctxcloud_storage_gcs.backend import GCSStorage
from ctxcloud_storage_gcs.settings import DEFAULTS, GCSSettings
from google.auth.credentials import AnonymousCredentials

from ctxcloud import ConfigError, create_app
from ctxcloud.storage import ObjectNotFound, StorageError, StorageUnavailable
from ctxcloud.testing.storage_conformance import StorageConformance
from tests import stack
from tests.support.blackhole import black_hole
from tests.support.context import create_project, entry_url, put_entry
from tests.support.factories import bearer, make_api_key, make_tenant
from tests.support.gcs_emulator import Emulator, gcs_emulator
from tests.support.server import free_port

ROOT = Path(__file__).resolve().parents[2]
KiB = 1024
MiB = 1024 * KiB
# Fail fast when the store is down: short timeouts, a budget of one attempt plus a second.
FAIL_FAST = {"GCS_CONNECT_TIMEOUT": 0.5, "GCS_READ_TIMEOUT": 0.5, "GCS_RETRY_BUDGET": 2}
PROMPTLY = 4.0  # seconds an operation may take to report an outage with FAIL_FAST


def _bucket_name() -> str:
    return f"t-{uuid.uuid4().hex[:20]}"


@pytest.fixture(scope="module")
def emulator() -> Iterator[Emulator]:
    """One emulator for the module's tests; they work in buckets of their own."""
    with gcs_emulator() as server:
        yield server


@pytest.fixture
def bucket(emulator: Emulator) -> str:
    return emulator.create_bucket(_bucket_name())


@pytest.fixture
def make_backend(emulator: Emulator, bucket: str) -> Iterator[Callable[..., GCSStorage]]:
    """GCSStorage backends on the test's bucket from setting overrides; closed at the end."""
    made: list[GCSStorage] = []

    def make(**settings: Any) -> GCSStorage:
        backend = GCSStorage.from_config(emulator.config(bucket, **settings))
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()


class _Requests:
    """Every request the backend's media session sends: method, URL, headers, body size."""

    def __init__(self, backend: GCSStorage) -> None:
        self.records: list[tuple[str, str, dict[str, str], int]] = []
        backend.session.hooks["response"].append(self._record)

    def _record(self, response: requests.Response, *args: Any, **kwargs: Any) -> None:
        request = response.request
        body = request.body
        size = 0 if body is None else len(body)
        self.records.append((request.method, request.url, dict(request.headers), size))

    @property
    def methods(self) -> list[str]:
        return [method for method, _, _, _ in self.records]

    def sizes(self, method: str) -> list[int]:
        return [size for m, _, _, size in self.records if m == method]

    def ranges(self) -> list[str]:
        return [h.get("Content-Range", "") for m, _, h, _ in self.records if m == "PUT"]

    def clear(self) -> None:
        self.records.clear()


def _pieces(data: bytes, size: int = MiB - 7) -> Iterator[bytes]:
    view = memoryview(data)
    for offset in range(0, len(data), size):
        yield view[offset : offset + size]


def _read(backend: GCSStorage, key: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join(backend.get(key, start, end))


# -- the shared conformance suite ------------------------------------------------------------


CONFORMANCE_PREFIX = "deploy-a/ctxcloud/"


@pytest.fixture(scope="module")
def plain_bucket(emulator: Emulator) -> str:
    return emulator.create_bucket(_bucket_name())


@pytest.fixture(scope="module")
def shared_bucket(emulator: Emulator) -> str:
    """A bucket that also holds objects outside CONFORMANCE_PREFIX, which list() must not show,
    and names inside it that ctxcloud cannot have written."""
    name = emulator.create_bucket(_bucket_name())
    target = emulator.client().bucket(name)
    foreign = ["outside/object", "deploy-a/other", "deploy-a/ctxcloud-2/x", "ROOT"]
    for path in [*foreign, CONFORMANCE_PREFIX + "UPPER", CONFORMANCE_PREFIX + ".hidden"]:
        target.blob(path).upload_from_string(b"not ctxcloud's")
    return name


class TestGCSConformance(StorageConformance):
    """The whole bucket is the namespace (no prefix), with the default 8 MiB chunks."""

    @pytest.fixture
    def backend(self, emulator: Emulator, plain_bucket: str) -> Iterator[GCSStorage]:
        storage = GCSStorage.from_config(emulator.config(plain_bucket))
        yield storage
        storage.close()


class TestGCSConformanceWithPrefix(StorageConformance):
    """Under GCS_PREFIX, beside names that are not ours, with 1 MiB chunks (50 MiB = 50)."""

    @pytest.fixture
    def backend(self, emulator: Emulator, shared_bucket: str) -> Iterator[GCSStorage]:
        storage = GCSStorage.from_config(
            emulator.config(shared_bucket, GCS_PREFIX=CONFORMANCE_PREFIX, GCS_CHUNK_SIZE=MiB)
        )
        yield storage
        storage.close()


# -- uploads: one request, or a resumable upload in chunks of GCS_CHUNK_SIZE ------------------


def test_one_request_up_to_a_chunk_then_a_resumable_upload_in_chunks(make_backend) -> None:
    backend = make_backend(GCS_CHUNK_SIZE=MiB)
    calls = _Requests(backend)

    exact = os.urandom(MiB)  # exactly one chunk: still one request
    assert backend.put("o/exact", _pieces(exact, 4099)) == MiB
    assert calls.methods == ["POST"]
    assert "uploadType=media" in calls.records[0][1]
    assert calls.sizes("POST") == [MiB]

    calls.clear()
    large = os.urandom(2 * MiB + 512 * KiB + 3)
    assert backend.put("o/large", _pieces(large)) == len(large)
    assert calls.methods == ["PUT", "PUT", "PUT"]  # the session itself is opened by the SDK
    assert calls.sizes("PUT") == [MiB, MiB, 512 * KiB + 3]
    total = len(large)
    assert calls.ranges() == [
        f"bytes 0-{MiB - 1}/*",
        f"bytes {MiB}-{2 * MiB - 1}/*",
        f"bytes {2 * MiB}-{total - 1}/{total}",
    ]
    assert _read(backend, "o/large") == large
    assert _read(backend, "o/exact") == exact

    calls.clear()
    one_over = os.urandom(MiB + 1)
    backend.put("o/one-over", [one_over])  # one chunk larger than the chunk size
    assert calls.sizes("PUT") == [MiB, 1]
    assert _read(backend, "o/one-over") == one_over


def test_the_default_chunk_is_8_mib_not_the_sdks_100(make_backend) -> None:
    backend = make_backend()
    assert backend.settings.chunk_size == 8 * MiB
    calls = _Requests(backend)
    data = os.urandom(8 * MiB + 5)
    backend.put("o/k", _pieces(data))
    assert calls.sizes("PUT") == [8 * MiB, 5]
    assert _read(backend, "o/k") == data


def test_a_chunk_persisted_in_part_is_sent_again(make_backend) -> None:
    """GCS may persist less than a chunk (its 308 says how much); the emulator always takes
    everything, so here only the first half of each chunk reaches it."""
    backend = make_backend(GCS_CHUNK_SIZE=MiB)
    session = backend.session
    real_request = session.request
    sent: list[str] = []

    def half_of_each_chunk(method: str, url: str, **kwargs: Any) -> requests.Response:
        headers = kwargs.get("headers") or {}
        content_range = headers.get("Content-Range", "")
        if method == "PUT" and content_range.endswith("/*"):
            first = int(content_range.split()[1].split("-")[0])
            body = kwargs["data"]
            half = len(body) // 2
            kwargs["data"] = body[:half]
            kwargs["headers"] = {**headers, "Content-Range": f"bytes {first}-{first + half - 1}/*"}
        sent.append(kwargs["headers"].get("Content-Range", "") if method == "PUT" else method)
        return real_request(method, url, **kwargs)

    session.request = half_of_each_chunk  # type: ignore[method-assign]
    data = os.urandom(3 * MiB + 100)
    assert backend.put("o/k", _pieces(data)) == len(data)
    assert _read(backend, "o/k") == data
    half = MiB // 2
    assert sent[:3] == [
        f"bytes 0-{half - 1}/*",
        f"bytes {half}-{MiB - 1}/*",
        "bytes 1048576-1572863/*",
    ]


@pytest.mark.parametrize("existing", [False, True], ids=["new", "overwrite"])
@pytest.mark.parametrize(
    "error", [ValueError("client went away"), KeyboardInterrupt(), GeneratorExit()], ids=repr
)
def test_a_failed_resumable_upload_is_cancelled_and_publishes_nothing(
    make_backend, emulator, bucket, error: BaseException, existing: bool
) -> None:
    backend = make_backend(GCS_CHUNK_SIZE=256 * KiB)
    old = os.urandom(1000)
    if existing:
        backend.put("o/k", [old])
    calls = _Requests(backend)

    def failing() -> Iterator[bytes]:
        yield os.urandom(700 * KiB)
        raise error

    with pytest.raises(type(error)) as raised:
        backend.put("o/k", failing())
    assert raised.value is error
    assert calls.methods == ["PUT", "PUT", "DELETE"]
    session_url = calls.records[0][1]
    assert calls.records[-1][1] == session_url  # the session itself, not the SDK's start URL
    gc.collect()  # nothing left behind may finish the upload when it is collected
    if existing:
        assert _read(backend, "o/k") == old
    else:
        assert backend.head("o/k") is None
    assert emulator.names(bucket) == (["o/k"] if existing else [])


def test_a_chunk_that_is_not_bytes_mid_upload_cancels(make_backend, emulator, bucket) -> None:
    backend = make_backend(GCS_CHUNK_SIZE=256 * KiB)
    calls = _Requests(backend)
    with pytest.raises(TypeError):
        backend.put("o/k", iter([os.urandom(300 * KiB), "not bytes"]))  # type: ignore[list-item]
    assert calls.methods == ["PUT", "DELETE"]
    assert emulator.names(bucket) == []


def test_a_store_failing_mid_upload_cancels_and_is_unavailable(make_backend, emulator, bucket):
    backend = make_backend(GCS_CHUNK_SIZE=256 * KiB, **FAIL_FAST)
    session = backend.session
    real_request = session.request
    puts: list[int] = []

    def second_chunk_fails(method: str, url: str, **kwargs: Any) -> requests.Response:
        if method == "PUT":
            puts.append(1)
            if len(puts) >= 2:
                raise requests.ConnectionError("connection reset by peer")
        return real_request(method, url, **kwargs)

    session.request = second_chunk_fails  # type: ignore[method-assign]
    started = time.monotonic()
    with pytest.raises(StorageUnavailable) as raised:
        backend.put("o/k", _pieces(os.urandom(MiB), 100 * KiB))
    assert time.monotonic() - started < PROMPTLY
    assert len(puts) >= 3, "the failing chunk was not retried"
    assert "upload_id" not in str(raised.value).replace("upload_id=<redacted>", "")
    assert emulator.names(bucket) == []


# A process storing 256 KiB + 1 byte in 256 KiB chunks, stopped after its first chunk is sent
# (until stdin closes): killed there, it can cancel nothing.
_UPLOADER = """
import json, sys
from ctxcloud_storage_gcs.backend import GCSStorage

def body():
    yield b"a" * (256 * 1024)
    yield b"b"  # the first chunk goes out as this one arrives
    print("chunk sent", flush=True)
    sys.stdin.read()

GCSStorage.from_config(json.loads(sys.argv[1])).put("o/aa/killed", body())
"""


def test_a_killed_writer_leaves_nothing_visible(emulator, bucket, make_backend) -> None:
    settings = emulator.config(bucket, GCS_CHUNK_SIZE=256 * KiB)
    writer = subprocess.Popen(
        [sys.executable, "-c", _UPLOADER, json.dumps(settings)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert writer.stdout.readline() == "chunk sent\n"
    finally:
        writer.kill()
        writer.wait(timeout=30)
        writer.stdin.close()
        writer.stdout.close()
    backend = make_backend()
    assert backend.head("o/aa/killed") is None
    assert list(backend.list()) == [] and emulator.names(bucket) == []
    # GCS lists no unfinished resumable uploads: nothing to report, nothing to abort.
    assert list(backend.incomplete_uploads()) == []


@pytest.mark.slow
def test_put_and_get_hold_about_one_chunk_in_memory(tmp_path) -> None:
    """tracemalloc sees this process only: the emulator (which keeps every byte it receives)
    runs in a process of its own for this one."""
    port = free_port()
    script = (
        "import sys, time\n"
        "from gcp_storage_emulator.server import create_server\n"
        f"server = create_server('127.0.0.1', {port}, in_memory=True, default_bucket='mem')\n"
        "server.start(); print('ready', flush=True); sys.stdin.read(); server.stop()\n"
    )
    emulator = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert emulator.stdout.readline() == "ready\n"
        chunk = 4 * MiB
        backend = GCSStorage(
            GCSSettings(bucket="mem", endpoint_url=f"http://127.0.0.1:{port}", chunk_size=chunk)
        )
        size = 64 * MiB
        block = os.urandom(MiB - 1)
        sent = hashlib.sha256()

        def source() -> Iterator[bytes]:
            remaining = size
            while remaining:
                piece = block if remaining >= len(block) else block[:remaining]
                sent.update(piece)
                remaining -= len(piece)
                yield piece

        whole = os.urandom(24 * MiB)  # the caller's, before measuring
        backend.check()  # the clients' lazy set-up is not what we measure
        tracemalloc.start()
        try:
            baseline, _ = tracemalloc.get_traced_memory()
            assert backend.put("big", source()) == size
            _, put_peak = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            assert backend.put("whole", [whole]) == len(whole)  # one chunk, never copied whole
            _, whole_peak = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            received, total = hashlib.sha256(), 0
            for piece in backend.get("big"):
                received.update(piece)
                total += len(piece)
            _, get_peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        backend.close()
        assert total == size and received.digest() == sent.digest()
        assert put_peak - baseline < chunk + 2 * MiB, (
            f"put peak +{(put_peak - baseline) / MiB:.1f} MiB"
        )
        assert whole_peak - baseline < chunk + 2 * MiB, f"+{(whole_peak - baseline) / MiB:.1f} MiB"
        assert get_peak - baseline < 3 * MiB, f"get peak +{(get_peak - baseline) / MiB:.1f} MiB"
    finally:
        emulator.stdin.close()
        emulator.wait(timeout=30)
        emulator.stdout.close()


# -- reads ---------------------------------------------------------------------------------


def test_a_ranged_get_asks_for_and_reads_only_those_bytes(make_backend) -> None:
    backend = make_backend()
    data = os.urandom(3 * MiB)
    backend.put("o/k", [data])
    calls = _Requests(backend)
    assert _read(backend, "o/k", 1000, 1999) == data[1000:2000]
    assert _read(backend, "o/k", MiB) == data[MiB:]
    assert _read(backend, "o/k", 10, 10**12) == data[10:]
    assert _read(backend, "o/k") == data
    ranges = [headers.get("Range") for method, _, headers, _ in calls.records]
    assert ranges == ["bytes=1000-1999", f"bytes={MiB}-", "bytes=10-1000000000000", None]
    chunks = list(backend.get("o/k"))
    assert [len(c) for c in chunks] == [MiB, MiB, MiB]


def test_object_names_reveal_nothing_and_prefixes_isolate(make_backend, emulator, bucket):
    a = make_backend(GCS_PREFIX="deploy-a/")
    b = make_backend(GCS_PREFIX="deploy-b")  # a trailing slash is added
    assert b.prefix == "deploy-b/"
    a.put("o/3f/3fa9", [b"from a"])
    b.put("o/3f/3fa9", [b"from b"])
    assert _read(a, "o/3f/3fa9") == b"from a"
    assert sorted(b.list()) == ["o/3f/3fa9"]
    assert a.delete("o/3f/3fa9") is True
    assert a.delete("o/3f/3fa9") is False
    assert _read(b, "o/3f/3fa9") == b"from b"
    assert emulator.names(bucket) == ["deploy-b/o/3f/3fa9"]
    blob = emulator.client().bucket(bucket).get_blob("deploy-b/o/3f/3fa9")
    assert blob.content_type == "application/octet-stream"
    assert not blob.metadata  # no metadata of ours


def test_scan_reads_sizes_and_times_from_the_listing(make_backend, monkeypatch) -> None:
    backend = make_backend(GCS_PREFIX="p/")
    before = time.time()
    for i in range(5):
        backend.put(f"k/{i}", [b"x" * i])
    infos = sorted(backend.scan(), key=lambda info: info.key)
    assert [(info.key, info.size) for info in infos] == [(f"k/{i}", i) for i in range(5)]
    for info in infos:
        assert before - 2 <= info.modified <= time.time() + 2
        assert backend.head(info.key) == info

    def no_head(key: str) -> None:
        raise AssertionError("scan() asked for an object's metadata")

    monkeypatch.setattr(backend, "head", no_head)
    assert len(list(backend.scan("k/"))) == 5


# -- settings --------------------------------------------------------------------------------


def _settings(environ: dict[str, str] | None = None, **config: Any) -> GCSSettings:
    return GCSSettings.from_config(
        {**DEFAULTS, "GCS_BUCKET": "acme-ctxcloud", **config}, environ or {}
    )


def test_defaults() -> None:
    settings = _settings()
    assert settings.bucket == "acme-ctxcloud" and settings.prefix == ""
    assert settings.endpoint_url is None
    assert settings.chunk_size == 8 * MiB
    assert settings.timeout == (3.0, 10.0)
    assert settings.retry_budget == 20.0
    assert settings.retry_deadline == 7.0  # the last attempt may start 13 s before the end


def test_values_from_the_environment_are_parsed() -> None:
    settings = _settings(
        GCS_CHUNK_SIZE="524288",
        GCS_CONNECT_TIMEOUT="1.5",
        GCS_READ_TIMEOUT="4",
        GCS_RETRY_BUDGET="30",
        GCS_PREFIX="ctx",
        GCS_ENDPOINT_URL="http://127.0.0.1:9023/",
    )
    assert settings.chunk_size == 512 * KiB
    assert settings.timeout == (1.5, 4.0) and settings.retry_budget == 30.0
    assert settings.prefix == "ctx/"
    assert settings.endpoint_url == "http://127.0.0.1:9023"
    assert _settings(GCS_RETRY_BUDGET=None, GCS_READ_TIMEOUT=60).retry_budget == 63.0


@pytest.mark.parametrize(
    ("config", "variable"),
    [
        ({"GCS_BUCKET": None}, "CTXCLOUD_GCS_BUCKET"),
        ({"GCS_BUCKET": "  "}, "CTXCLOUD_GCS_BUCKET"),
        ({"GCS_BUCKET": "Upper_Case"}, "CTXCLOUD_GCS_BUCKET"),
        ({"GCS_BUCKET": "ab"}, "CTXCLOUD_GCS_BUCKET"),
        ({"GCS_BUCKET": "x" * 64}, "CTXCLOUD_GCS_BUCKET"),
        ({"GCS_BUCKET": "gs://acme"}, "CTXCLOUD_GCS_BUCKET"),
        ({"GCS_CHUNK_SIZE": 1000 * KiB}, "CTXCLOUD_GCS_CHUNK_SIZE"),  # not a 256 KiB multiple
        ({"GCS_CHUNK_SIZE": 0}, "CTXCLOUD_GCS_CHUNK_SIZE"),
        ({"GCS_CHUNK_SIZE": 2 * 1024 * MiB}, "CTXCLOUD_GCS_CHUNK_SIZE"),
        ({"GCS_CHUNK_SIZE": "8MiB"}, "CTXCLOUD_GCS_CHUNK_SIZE"),
        ({"GCS_CHUNK_SIZE": True}, "CTXCLOUD_GCS_CHUNK_SIZE"),
        ({"GCS_CONNECT_TIMEOUT": "soon"}, "CTXCLOUD_GCS_CONNECT_TIMEOUT"),
        ({"GCS_READ_TIMEOUT": 0}, "CTXCLOUD_GCS_READ_TIMEOUT"),
        ({"GCS_READ_TIMEOUT": "inf"}, "CTXCLOUD_GCS_READ_TIMEOUT"),
        ({"GCS_RETRY_BUDGET": 5}, "CTXCLOUD_GCS_RETRY_BUDGET"),  # less than one attempt (13 s)
        ({"GCS_RETRY_BUDGET": -1}, "CTXCLOUD_GCS_RETRY_BUDGET"),
        ({"GCS_PREFIX": "../up"}, "CTXCLOUD_GCS_PREFIX"),
        ({"GCS_PREFIX": "/abs"}, "CTXCLOUD_GCS_PREFIX"),
        ({"GCS_PREFIX": "a//b"}, "CTXCLOUD_GCS_PREFIX"),
        ({"GCS_PREFIX": "caf\u00e9"}, "CTXCLOUD_GCS_PREFIX"),
        ({"GCS_ENDPOINT_URL": "127.0.0.1:9023"}, "CTXCLOUD_GCS_ENDPOINT_URL"),
        ({"GCS_ENDPOINT_URL": "ftp://host"}, "CTXCLOUD_GCS_ENDPOINT_URL"),
        ({"GCS_ENDPOINT_URL": "http://host/storage/v1"}, "CTXCLOUD_GCS_ENDPOINT_URL"),
    ],
)
def test_a_bad_value_stops_the_start_naming_its_variable(config: dict, variable: str) -> None:
    with pytest.raises(ConfigError) as raised:
        _settings(**config)
    message = str(raised.value)
    assert variable in message
    assert "\n" not in message


def test_storage_emulator_host_names_an_emulator_when_no_endpoint_is_set() -> None:
    assert _settings({"STORAGE_EMULATOR_HOST": "localhost:9023"}).endpoint_url == (
        "http://localhost:9023"
    )
    assert _settings({"STORAGE_EMULATOR_HOST": "http://e:1"}).endpoint_url == "http://e:1"
    explicit = _settings({"STORAGE_EMULATOR_HOST": "http://e:1"}, GCS_ENDPOINT_URL="http://f:2")
    assert explicit.endpoint_url == "http://f:2"
    with pytest.raises(ConfigError, match="^STORAGE_EMULATOR_HOST must be"):
        _settings({"STORAGE_EMULATOR_HOST": "http://e:1/path"})


def test_the_emulator_through_storage_emulator_host(
    emulator: Emulator, bucket: str, monkeypatch
) -> None:
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", emulator.url)
    backend = GCSStorage.from_config({**DEFAULTS, "GCS_BUCKET": bucket})
    assert backend.settings.endpoint_url == emulator.url
    backend.put("o/k", [b"via STORAGE_EMULATOR_HOST"])
    assert _read(backend, "o/k") == b"via STORAGE_EMULATOR_HOST"
    assert isinstance(backend.session.credentials, AnonymousCredentials)
    backend.close()


# -- credentials -------------------------------------------------------------------------------


def test_without_an_emulator_credentials_come_from_adc_at_the_first_call(
    tmp_path, monkeypatch
) -> None:
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    backend = GCSStorage.from_config({**DEFAULTS, "GCS_BUCKET": "acme-ctxcloud"})  # no call yet
    for operation in (backend.check, lambda: backend.put("o/k", [b"x"]), lambda: backend.get("k")):
        with pytest.raises(StorageUnavailable, match="GOOGLE_APPLICATION_CREDENTIALS"):
            operation()
    backend.close()


# -- outages, throttling, errors ---------------------------------------------------------------


def _unavailable_promptly(operation: Callable[[], object]) -> StorageUnavailable:
    started = time.monotonic()
    with pytest.raises(StorageUnavailable) as raised:
        result = operation()
        if isinstance(result, Iterator):
            list(result)
    assert time.monotonic() - started < PROMPTLY
    return raised.value


def test_the_emulator_down_is_unavailable_promptly_then_recovers() -> None:
    with gcs_emulator("down") as server:
        backend = GCSStorage.from_config(
            server.config("down", GCS_CHUNK_SIZE=256 * KiB, **FAIL_FAST)
        )
        backend.put("o/k", [b"before the outage"])
        backend.check()
        server.stop()
        errors = [
            _unavailable_promptly(lambda: backend.put("o/k", [b"during"])),
            _unavailable_promptly(lambda: backend.put("o/big", _pieces(os.urandom(MiB)))),
            _unavailable_promptly(lambda: backend.get("o/k")),
            _unavailable_promptly(lambda: backend.get("o/k", 1, 5)),
            _unavailable_promptly(lambda: backend.head("o/k")),
            _unavailable_promptly(lambda: backend.delete("o/k")),
            _unavailable_promptly(lambda: backend.list()),
            _unavailable_promptly(lambda: backend.scan()),
            _unavailable_promptly(backend.check),
        ]
        for error in errors:
            assert "CTXCLOUD_GCS_RETRY_BUDGET" in str(error)  # retried until the budget ran out
        server.start()  # same port, empty again, bucket recreated
        backend.check()
        assert backend.head("o/k") is None
        backend.put("o/k", [b"after"])
        assert _read(backend, "o/k") == b"after"
        backend.close()


def test_a_store_that_never_answers_fails_within_the_budget() -> None:
    with black_hole() as hole:
        budget = 2.0
        backend = GCSStorage.from_config(
            {
                **DEFAULTS,
                "GCS_BUCKET": "b-never",
                "GCS_ENDPOINT_URL": f"http://127.0.0.1:{hole.port}",
                "GCS_CONNECT_TIMEOUT": 0.5,
                "GCS_READ_TIMEOUT": 0.5,
                "GCS_RETRY_BUDGET": budget,
            }
        )
        for operation in (backend.check, lambda: backend.get("o/k")):
            started = time.monotonic()
            with pytest.raises(StorageUnavailable, match="Timeout"):
                operation()
            assert time.monotonic() - started < budget + 0.5
        assert len(hole.held) >= 4, "each call should have been retried within its budget"
        backend.close()


class FakeGCS:
    """An HTTP server answering every request as ``answer(method, path)`` says: the answers of
    the real service that the emulator does not give (throttling, 5xx, 416, 404 messages)."""

    def __init__(self, answer: Callable[[str, str], tuple[int, dict[str, str], bytes]]) -> None:
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                fake.requests.append((self.command, self.path, dict(self.headers)))
                status, headers, body = answer(self.command, self.path)
                self.send_response(status)
                for name, value in {"Content-Length": str(len(body)), **headers}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_PUT = do_POST = do_DELETE = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def backend(self, **config: Any) -> GCSStorage:
        return GCSStorage.from_config(
            {**DEFAULTS, "GCS_BUCKET": "fake", "GCS_ENDPOINT_URL": self.url, **FAIL_FAST, **config}
        )

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@contextmanager
def fake_gcs(answer: Callable[[str, str], tuple[int, dict[str, str], bytes]]) -> Iterator[FakeGCS]:
    server = FakeGCS(answer)
    try:
        yield server
    finally:
        server.close()


def _error(status: int, message: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    body = json.dumps({"error": {"code": status, "message": message, "errors": []}}).encode()
    return status, {"Content-Type": "application/json", **headers}, body


@pytest.mark.parametrize("status", [429, 500, 503])
def test_throttling_and_5xx_are_retried_then_unavailable(status: int) -> None:
    answer = _error(status, "Please slow down", **{"Retry-After": "1"})
    with fake_gcs(lambda method, path: answer) as fake:
        backend = fake.backend()
        for operation in (
            backend.check,
            lambda: backend.put("o/k", [b"x"]),
            lambda: backend.get("o/k"),
            lambda: backend.head("o/k"),
            lambda: backend.delete("o/k"),
        ):
            before = len(fake.requests)
            error = _unavailable_promptly(operation)
            assert f"HTTP {status}" in str(error)
            assert len(fake.requests) - before >= 2, "not retried"
        backend.close()


def test_refused_credentials_are_unavailable_at_once_and_other_refusals_are_errors() -> None:
    answers = {"denied": _error(403, "caller does not have storage.objects.get access")}
    answers["bad"] = _error(400, "Invalid argument")
    with fake_gcs(lambda method, path: answers["denied" if "denied" in path else "bad"]) as fake:
        denied = fake.backend(GCS_BUCKET="denied")
        error = _unavailable_promptly(lambda: denied.get("o/k"))
        assert "roles/storage.objectAdmin" in str(error)
        assert len(fake.requests) == 1  # a refusal is not retried
        bad = fake.backend(GCS_BUCKET="bad")
        with pytest.raises(StorageError) as raised:
            bad.put("o/k", [b"x"])
        assert not isinstance(raised.value, StorageUnavailable)
        denied.close()
        bad.close()


def test_a_missing_bucket_is_unavailable_naming_the_setting(emulator: Emulator) -> None:
    backend = GCSStorage.from_config(emulator.config("no-such-bucket", **FAIL_FAST))
    for operation in (
        backend.check,
        lambda: backend.put("o/k", [b"x"]),
        lambda: backend.put("o/k", _pieces(os.urandom(9 * MiB))),
        lambda: backend.list(),
    ):
        error = _unavailable_promptly(operation)
        assert "no-such-bucket" in str(error) and "CTXCLOUD_GCS_BUCKET" in str(error)
    backend.close()


def test_gcs_404_messages_tell_a_missing_bucket_from_a_missing_object() -> None:
    """The emulator answers both with a bare 404; GCS says which (the SDK keeps the message)."""
    missing = {
        "nobucket": _error(404, "The specified bucket does not exist."),
        "noobject": _error(404, "No such object: noobject/o/k"),
    }
    with fake_gcs(lambda method, path: missing[path.split("/b/")[1].split("/")[0]]) as fake:
        gone = fake.backend(GCS_BUCKET="nobucket")
        for operation in (lambda: gone.get("o/k"), lambda: gone.delete("o/k"), gone.check):
            assert "CTXCLOUD_GCS_BUCKET" in str(_unavailable_promptly(operation))
        present = fake.backend(GCS_BUCKET="noobject")
        with pytest.raises(ObjectNotFound):
            present.get("o/k")
        assert present.delete("o/k") is False
        assert present.head("o/k") is None
        gone.close()
        present.close()


def test_a_range_past_the_end_416_and_a_store_that_ignores_range() -> None:
    """GCS answers 416 for a range that starts past the end (the emulator: an empty 206)."""
    data = bytes(range(200))

    def answer(method: str, path: str) -> tuple[int, dict[str, str], bytes]:
        if "/416/" in path:
            return 416, {}, b""
        return 200, {"Content-Type": "application/octet-stream"}, data  # Range ignored

    with fake_gcs(answer) as fake:
        past = fake.backend(GCS_BUCKET="416")
        assert list(past.get("o/k", 500)) == []
        whole = fake.backend(GCS_BUCKET="full")
        assert _read(whole, "o/k", 3, 10) == data[3:11]
        assert _read(whole, "o/k", 150) == data[150:]
        past.close()
        whole.close()


def test_retries_ride_out_a_short_outage(make_backend) -> None:
    backend = make_backend()
    session = backend.session
    real_request = session.request
    attempts: list[str] = []

    def refuse_twice(method: str, url: str, **kwargs: Any) -> requests.Response:
        attempts.append(method)
        if len(attempts) <= 2:
            raise requests.ConnectionError("connection refused")
        return real_request(method, url, **kwargs)

    session.request = refuse_twice  # type: ignore[method-assign]
    backend.put("o/k", [b"x"])
    assert attempts == ["POST", "POST", "POST"]
    assert _read(backend, "o/k") == b"x"


# -- the plugin: a distribution of its own, found through its entry point -------------------


def test_the_distribution_declares_its_entry_point_and_ctxcloud_pulls_no_google_sdk() -> None:
    (entry,) = [
        e for e in metadata.entry_points(group="ctxcloud.plugins") if e.name == "storage_gcs"
    ]
    assert entry.value == "ctxcloud_storage_gcs"
    assert entry.dist is not None and entry.dist.name == "ctxcloud-storage-gcs"
    requires = {r.split(";")[0].replace(" ", "") for r in entry.dist.requires or ()}
    assert any(r.startswith("google-cloud-storage~=3.") for r in requires)
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    assert "google" not in setup["options"]["install_requires"]
    # The plugin module loads with every app: the SDK only when the backend is selected.
    probe = (
        "import sys, ctxcloud_storage_gcs\n"
        "print(sorted(m for m in sys.modules if m.startswith('google')))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_app_refuses_to_start_on_gcs_without_a_bucket(tmp_path) -> None:
    with pytest.raises(ConfigError, match="CTXCLOUD_GCS_BUCKET") as raised:
        create_app({"ENV": "testing", "DATA_DIR": str(tmp_path), "STORAGE_BACKEND": "gcs"})
    assert "\n" not in str(raised.value)


@pytest.fixture
def gcs_app(app_config: dict, emulator: Emulator, bucket: str):
    app_config.update(emulator.config(bucket, GCS_PREFIX=f"t-{uuid.uuid4().hex[:8]}/"))
    with stack.migrated_app(app_config) as application:
        yield application


def test_the_app_finds_the_plugin_and_round_trips_an_entry(gcs_app, emulator, bucket) -> None:
    storage = gcs_app.extensions["ctxcloud"].storage
    assert isinstance(storage, GCSStorage)
    client = gcs_app.test_client()
    health = client.get("/api/v1/health")
    assert health.status_code == 200, health.get_json()
    assert health.get_json()["checks"]["storage"] == "ok"

    tenant = make_tenant(gcs_app, slug="acme", name="ACME")
    auth = bearer(make_api_key(gcs_app, tenant)[1])
    project = create_project(client, auth, name="Handbook", slug="handbook")["slug"]
    body = os.urandom(3 * MiB + 17)  # crosses the 64 KiB segments and a 1 MiB read chunk
    put_entry(client, auth, project, "docs/guide.bin", body, expect=201)
    response = client.get(entry_url(project, "docs/guide.bin"), headers=auth)
    assert response.status_code == 200
    assert response.data == body
    names = emulator.names(bucket)
    assert len(names) == 1 and names[0].startswith(storage.prefix + "o/")  # opaque, ciphertext
    assert body[:64] not in emulator.client().bucket(bucket).blob(names[0]).download_as_bytes()
