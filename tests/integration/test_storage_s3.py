"""S3Storage against a real S3 endpoint (moto_server over HTTP): the shared conformance suite,
then what only S3 has: multipart uploads and their abort, ranges, outages, SSE, prefixes.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError

from ctxcloud import create_app
from ctxcloud.plugins.storage_s3 import backend as s3_backend
from ctxcloud.plugins.storage_s3.backend import S3Storage
from ctxcloud.storage import ObjectInfo, ObjectNotFound, StorageUnavailable
from ctxcloud.testing.storage_conformance import StorageConformance
from tests.support import s3server
from tests.support.s3server import S3Server, aws_environment, moto_s3

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


MiB = 1024 * 1024
# Small enough to observe multipart with a 12 MiB object; moto enforces S3's 5 MiB minimum.
SMALL_PARTS = {"S3_MULTIPART_THRESHOLD": 5 * MiB, "S3_PART_SIZE": 5 * MiB}
# Fail fast when the server is down: no retries, short timeouts.
FAIL_FAST = {"S3_MAX_ATTEMPTS": 1, "S3_CONNECT_TIMEOUT": 1, "S3_READ_TIMEOUT": 2}
PROMPTLY = 5.0  # seconds an operation may take to report an outage with FAIL_FAST


def _bucket_name() -> str:
    return f"t-{uuid.uuid4().hex[:24]}"


@pytest.fixture
def bucket(s3_server: S3Server) -> Iterator[str]:
    """A fresh bucket per test, emptied and deleted afterwards."""
    name = s3_server.create_bucket(_bucket_name())
    yield name
    s3_server.delete_bucket(name)


@pytest.fixture
def make_backend(s3_server: S3Server, bucket: str) -> Iterator[Callable[..., S3Storage]]:
    """Build S3Storage backends on the test's bucket from setting overrides; closed at the end."""
    made: list[S3Storage] = []

    def make(**settings: Any) -> S3Storage:
        storage = S3Storage.from_config(s3_server.config(S3_BUCKET=bucket, **settings))
        made.append(storage)
        return storage

    yield make
    for storage in made:
        storage.close()


@pytest.fixture
def raw(s3_server: S3Server) -> Iterator[Any]:
    """A plain boto3 client to look behind the backend."""
    client = s3_server.client()
    yield client
    client.close()


class _Calls:
    """Every S3 operation a client makes, with its request headers and body size."""

    def __init__(self, storage: S3Storage) -> None:
        self.records: list[tuple[str, dict[str, str], int]] = []
        storage.client.meta.events.register("before-send.s3", self._record)

    def _record(self, request: Any, event_name: str, **kwargs: Any) -> None:
        body = request.body
        size = len(body) if isinstance(body, bytes | bytearray) else -1
        headers = {
            name.lower(): value.decode() if isinstance(value, bytes) else value
            for name, value in request.headers.items()
        }
        self.records.append((event_name.rsplit(".", 1)[-1], headers, size))

    @property
    def operations(self) -> list[str]:
        return [name for name, _, _ in self.records]

    def sizes(self, operation: str) -> list[int]:
        return [size for name, _, size in self.records if name == operation]

    def headers(self, operation: str) -> list[dict[str, str]]:
        return [headers for name, headers, _ in self.records if name == operation]

    def clear(self) -> None:
        self.records.clear()


def _pieces(data: bytes, size: int = MiB - 7) -> Iterator[bytes]:
    view = memoryview(data)
    for offset in range(0, len(data), size):
        yield view[offset : offset + size]


def _read(storage: S3Storage, key: str, start: int = 0, end: int | None = None) -> bytes:
    return b"".join(storage.get(key, start, end))


def _uploads(raw: Any, bucket: str) -> list[dict]:
    return raw.list_multipart_uploads(Bucket=bucket).get("Uploads", [])


# -- the shared conformance suite ----------------------------------------------------------


CONFORMANCE_PREFIX = "deploy-a/ctxcloud/"


@pytest.fixture(scope="module")
def plain_bucket(s3_server: S3Server) -> Iterator[str]:
    name = s3_server.create_bucket(_bucket_name())
    yield name
    s3_server.delete_bucket(name)


@pytest.fixture(scope="module")
def shared_bucket(s3_server: S3Server) -> Iterator[str]:
    """A bucket that also holds objects outside CONFORMANCE_PREFIX, which list() must not show."""
    name = s3_server.create_bucket(_bucket_name())
    client = s3_server.client()
    for foreign in ("outside/object", "deploy-a/other", "deploy-a/ctxcloud-2/x", "ROOT"):
        client.put_object(Bucket=name, Key=foreign, Body=b"not ctxcloud's")
    client.close()
    yield name
    s3_server.delete_bucket(name)


class TestS3Conformance(StorageConformance):
    """The whole bucket is the namespace (no prefix), with the default 8 MiB parts."""

    @pytest.fixture
    def backend(self, s3_server: S3Server, plain_bucket: str) -> Iterator[S3Storage]:
        storage = S3Storage.from_config(s3_server.config(S3_BUCKET=plain_bucket))
        yield storage
        storage.close()


class TestS3ConformanceWithPrefix(StorageConformance):
    """Under S3_PREFIX, beside keys that are not ours, with 5 MiB parts (50 MiB = 10 parts)."""

    @pytest.fixture
    def backend(self, s3_server: S3Server, shared_bucket: str) -> Iterator[S3Storage]:
        storage = S3Storage.from_config(
            s3_server.config(S3_BUCKET=shared_bucket, S3_PREFIX=CONFORMANCE_PREFIX, **SMALL_PARTS)
        )
        yield storage
        storage.close()


# -- multipart -------------------------------------------------------------------------------


def test_single_put_below_the_threshold_multipart_above(make_backend, raw, bucket) -> None:
    storage = make_backend(**SMALL_PARTS)
    calls = _Calls(storage)

    small = os.urandom(5 * MiB)  # exactly the threshold: still one PUT
    assert storage.put("small", _pieces(small)) == len(small)
    assert calls.operations == ["PutObject"]
    assert calls.sizes("PutObject") == [5 * MiB]

    calls.clear()
    large = os.urandom(12 * MiB + 3)
    assert storage.put("large", _pieces(large)) == len(large)
    assert calls.operations == [
        "CreateMultipartUpload",
        "UploadPart",
        "UploadPart",
        "UploadPart",
        "CompleteMultipartUpload",
    ]
    assert calls.sizes("UploadPart") == [5 * MiB, 5 * MiB, 2 * MiB + 3]
    assert _read(storage, "large") == large
    assert _read(storage, "small") == small
    assert raw.head_object(Bucket=bucket, Key="large")["ETag"].endswith('-3"')  # multipart ETag

    calls.clear()
    one_over = os.urandom(5 * MiB + 1)
    storage.put("one-over", [one_over])  # one chunk larger than a part
    assert calls.sizes("UploadPart") == [5 * MiB, 1]
    assert _read(storage, "one-over") == one_over
    assert _uploads(raw, bucket) == []


def test_a_threshold_above_the_part_size_sends_the_first_part_whole(make_backend) -> None:
    storage = make_backend(S3_MULTIPART_THRESHOLD=7 * MiB, S3_PART_SIZE=5 * MiB)
    calls = _Calls(storage)
    data = os.urandom(18 * MiB)
    storage.put("k", _pieces(data))
    assert calls.sizes("UploadPart") == [7 * MiB, 5 * MiB, 5 * MiB, 1 * MiB]
    assert _read(storage, "k") == data
    calls.clear()
    storage.put("k", _pieces(data[: 7 * MiB]))
    assert calls.operations == ["PutObject"]


def test_objects_up_to_one_part_go_in_one_put_whatever_the_threshold(make_backend) -> None:
    storage = make_backend(S3_MULTIPART_THRESHOLD=1 * MiB, S3_PART_SIZE=5 * MiB)
    calls = _Calls(storage)
    storage.put("k", _pieces(os.urandom(4 * MiB)))
    assert calls.operations == ["PutObject"]  # a one-part multipart upload would cost 3 requests


class _Boom(Exception):
    pass


def _failing_after(data: bytes, error: BaseException) -> Iterator[bytes]:
    yield from _pieces(data)
    raise error


@pytest.mark.parametrize("existing", [False, True], ids=["new", "overwrite"])
@pytest.mark.parametrize(
    "error", [_Boom("client went away"), KeyboardInterrupt(), GeneratorExit()], ids=repr
)
def test_failure_mid_multipart_leaves_no_object_and_no_upload(
    make_backend, raw, bucket, error: BaseException, existing: bool
) -> None:
    storage = make_backend(**SMALL_PARTS)
    old = os.urandom(1000)
    if existing:
        storage.put("k", [old])
    calls = _Calls(storage)
    with pytest.raises(type(error)) as raised:
        storage.put("k", _failing_after(os.urandom(11 * MiB), error))
    assert raised.value is error
    assert calls.operations == [
        "CreateMultipartUpload",
        "UploadPart",
        "UploadPart",
        "AbortMultipartUpload",
    ]
    assert _uploads(raw, bucket) == []
    if existing:
        assert _read(storage, "k") == old
    else:
        assert storage.head("k") is None
    assert list(storage.list()) == (["k"] if existing else [])


def test_a_chunk_that_is_not_bytes_mid_multipart_aborts(make_backend, raw, bucket) -> None:
    storage = make_backend(**SMALL_PARTS)
    with pytest.raises(TypeError):
        storage.put("k", iter([os.urandom(6 * MiB), "not bytes"]))  # type: ignore[list-item]
    assert _uploads(raw, bucket) == []
    assert storage.head("k") is None


def test_s3_failing_mid_multipart_aborts_and_is_unavailable(make_backend, raw, bucket) -> None:
    storage = make_backend(**SMALL_PARTS)
    calls = _Calls(storage)
    parts = []

    def second_part_fails(**kwargs: Any) -> None:
        parts.append(1)
        if len(parts) == 2:
            raise EndpointConnectionError(endpoint_url=storage.settings.endpoint_url)

    storage.client.meta.events.register("before-call.s3.UploadPart", second_part_fails)
    with pytest.raises(StorageUnavailable):
        storage.put("k", _pieces(os.urandom(12 * MiB)))
    assert calls.operations[-1] == "AbortMultipartUpload"
    assert _uploads(raw, bucket) == []
    assert storage.head("k") is None


def test_checksums_off_for_stores_that_refuse_them(
    make_backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_REQUEST_CHECKSUM_CALCULATION", "when_required")
    storage = make_backend(**SMALL_PARTS)
    calls = _Calls(storage)
    data = os.urandom(11 * MiB)
    storage.put("k", _pieces(data))
    assert not any(
        name.lower().startswith("x-amz-checksum") for h in calls.headers("UploadPart") for name in h
    )
    assert _read(storage, "k") == data


@pytest.mark.slow
def test_put_and_get_hold_about_one_part_in_memory(make_backend) -> None:
    storage = make_backend(**SMALL_PARTS)
    size = 64 * MiB
    block = os.urandom(MiB - 1)
    sent = hashlib.sha256()

    def source() -> Iterator[bytes]:
        remaining = size
        while remaining:
            chunk = block if remaining >= len(block) else block[:remaining]
            sent.update(chunk)
            remaining -= len(chunk)
            yield chunk

    storage.check()  # the client's lazy set-up is not what we measure
    tracemalloc.start()
    try:
        baseline, _ = tracemalloc.get_traced_memory()
        assert storage.put("big", source()) == size
        _, put_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        received, total = hashlib.sha256(), 0
        for chunk in storage.get("big"):
            received.update(chunk)
            total += len(chunk)
        _, get_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == size and received.digest() == sent.digest()
    assert put_peak - baseline < 8 * MiB, f"put peak grew by {(put_peak - baseline) / MiB:.1f} MiB"
    assert get_peak - baseline < 4 * MiB, f"get peak grew by {(get_peak - baseline) / MiB:.1f} MiB"


# -- ranges ------------------------------------------------------------------------------------


def test_a_ranged_get_asks_for_and_reads_only_those_bytes(make_backend) -> None:
    storage = make_backend()
    data = os.urandom(3 * MiB)
    storage.put("k", [data])
    calls = _Calls(storage)
    lengths: list[int] = []
    storage.client.meta.events.register(
        "after-call.s3.GetObject", lambda parsed, **kw: lengths.append(parsed["ContentLength"])
    )

    assert _read(storage, "k", 1000, 1999) == data[1000:2000]
    assert _read(storage, "k", MiB) == data[MiB:]
    assert _read(storage, "k", 10, 10**12) == data[10:]  # clamped by S3
    assert _read(storage, "k") == data
    ranges = [h.get("range") for h in calls.headers("GetObject")]
    assert ranges == ["bytes=1000-1999", f"bytes={MiB}-", "bytes=10-1000000000000", None]
    assert lengths == [1000, 2 * MiB, 3 * MiB - 10, 3 * MiB]


def test_a_range_past_the_end_is_empty_and_a_missing_key_still_raises(make_backend) -> None:
    storage = make_backend()
    storage.put("k", [b"0123456789"])
    assert _read(storage, "k", 10) == b""
    assert _read(storage, "k", 10, 20) == b""
    with pytest.raises(ObjectNotFound):
        storage.get("missing", 10, 20)


def test_a_store_that_ignores_range_still_gives_the_right_bytes(make_backend) -> None:
    storage = make_backend()
    data = os.urandom(2 * MiB + 100)
    storage.put("k", [data])

    def drop_range(request: Any, **kwargs: Any) -> None:
        if "Range" in request.headers:
            del request.headers["Range"]  # as a store that does not do ranges would

    storage.client.meta.events.register("before-sign.s3.GetObject", drop_range)
    assert _read(storage, "k", MiB - 5, MiB + 5) == data[MiB - 5 : MiB + 6]
    assert _read(storage, "k", 2 * MiB) == data[2 * MiB :]
    chunks = list(storage.get("k", 3, None))
    assert b"".join(chunks) == data[3:]
    assert all(0 < len(c) <= s3_backend.CHUNK_SIZE for c in chunks)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_an_abandoned_get_releases_its_connection(make_backend) -> None:
    storage = make_backend()
    storage.put("k", [os.urandom(3 * MiB)])
    assert storage.head("k") == ObjectInfo(key="k", size=3 * MiB)
    baseline = _open_fds()
    for _ in range(20):
        stream = storage.get("k")
        next(stream)
        stream.close()  # type: ignore[attr-defined]
        stream = storage.get("k")
        next(stream)
        del stream  # abandoned mid-way, e.g. a client that disconnected
        storage.get("k")  # never iterated
    assert _open_fds() <= baseline + 2  # at most the pooled keep-alive connections
    assert _read(storage, "k", 0, 9) is not None


# -- listing and prefixes ----------------------------------------------------------------------


def test_prefixes_isolate_two_deployments_on_one_bucket(make_backend, raw, bucket) -> None:
    a = make_backend(S3_PREFIX="deploy-a/")
    b = make_backend(S3_PREFIX="deploy-b")  # a trailing slash is added
    assert b.prefix == "deploy-b/"
    a.put("ab/k", [b"from a"])
    b.put("ab/k", [b"from b"])
    b.put("ab/only-b", [b"b"])
    assert _read(a, "ab/k") == b"from a"
    assert _read(b, "ab/k") == b"from b"
    assert sorted(a.list()) == ["ab/k"]
    assert sorted(b.list("ab/")) == ["ab/k", "ab/only-b"]
    assert a.head("ab/only-b") is None
    assert a.delete("ab/k") is True
    assert _read(b, "ab/k") == b"from b"
    keys = sorted(item["Key"] for item in raw.list_objects_v2(Bucket=bucket)["Contents"])
    assert keys == ["deploy-b/ab/k", "deploy-b/ab/only-b"]


def test_list_pages_and_skips_keys_that_are_not_ours(
    make_backend, raw, bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(s3_backend, "LIST_PAGE_SIZE", 3)
    storage = make_backend(S3_PREFIX="p/")
    keys = [f"k/{i:02d}" for i in range(8)]
    for key in keys:
        storage.put(key, [b"x"])
    for foreign in ("p/k/", "p/K/upper", "p/k/.hidden", "p/k//double", "q/k/00"):
        raw.put_object(Bucket=bucket, Key=foreign, Body=b"")
    assert sorted(storage.list()) == keys
    assert sorted(storage.list("k/0")) == keys


def test_scan_reads_sizes_and_times_from_the_listing_pages(
    make_backend, raw, bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(s3_backend, "LIST_PAGE_SIZE", 2)
    storage = make_backend(S3_PREFIX="p/")
    before = time.time()
    for i in range(5):
        storage.put(f"k/{i}", [b"x" * i])
    raw.put_object(Bucket=bucket, Key="p/K/upper", Body=b"not ours")
    calls = _Calls(storage)
    infos = sorted(storage.scan(), key=lambda info: info.key)
    assert [(info.key, info.size) for info in infos] == [(f"k/{i}", i) for i in range(5)]
    for info in infos:
        assert before - 2 <= info.modified <= time.time() + 2  # S3 dates to the second
    assert calls.operations == ["ListObjectsV2"] * 3  # the pages alone: no HEAD per object


# -- incomplete uploads: what a killed writer leaves -------------------------------------------

# A process storing a 5 MiB + 1 byte object in 5 MiB parts, stopped after its first part is
# sent (until stdin closes): killed there, it can abort nothing.
_UPLOADER = """
import json, sys
from ctxcloud.plugins.storage_s3.backend import S3Storage

def body():
    yield b"a" * (5 * 1024 * 1024)
    yield b"b"  # the first part goes out as this one arrives
    print("part sent", flush=True)
    sys.stdin.read()

S3Storage.from_config(json.loads(sys.argv[1])).put("o/aa/killed", body())
"""


def test_a_killed_writers_upload_is_listed_then_aborted(s3_server, make_backend, raw, bucket):
    settings = s3_server.config(S3_BUCKET=bucket, S3_PREFIX="deploy/", **SMALL_PARTS)
    writer = subprocess.Popen(
        [sys.executable, "-c", _UPLOADER, json.dumps(settings)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert writer.stdout.readline() == "part sent\n"
    finally:
        os.kill(writer.pid, signal.SIGKILL)
        writer.wait(timeout=30)
        writer.stdin.close()
        writer.stdout.close()
    raw.create_multipart_upload(Bucket=bucket, Key="outside/o/aa/x")  # another deployment's
    raw.create_multipart_upload(Bucket=bucket, Key="deploy/NOT-OURS")  # no key of ours
    storage = make_backend(S3_PREFIX="deploy/", **SMALL_PARTS)

    (upload,) = storage.incomplete_uploads()
    assert upload.key == "o/aa/killed"
    assert upload.size == 5 * MiB and upload.started is not None
    assert list(storage.incomplete_uploads("o/bb/")) == []
    assert list(storage.incomplete_uploads(started_before=upload.started)) == []  # not older
    assert storage.head("o/aa/killed") is None

    assert storage.abort_upload(upload) is True
    assert storage.abort_upload(upload) is False  # gone: nothing to abort
    assert list(storage.incomplete_uploads()) == []
    assert sorted(u["Key"] for u in _uploads(raw, bucket)) == ["deploy/NOT-OURS", "outside/o/aa/x"]


# -- outages, missing bucket, timeouts ---------------------------------------------------------


def _unavailable_promptly(operation: Callable[[], object]) -> StorageUnavailable:
    started = time.monotonic()
    with pytest.raises(StorageUnavailable) as raised:
        result = operation()
        if isinstance(result, Iterator):
            list(result)
    assert time.monotonic() - started < PROMPTLY
    return raised.value


def test_s3_down_is_unavailable_promptly_then_recovers(monkeypatch: pytest.MonkeyPatch) -> None:
    with moto_s3() as s3:
        secret = "do-not-log-" + uuid.uuid4().hex
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
        storage = S3Storage.from_config(s3.config(**FAIL_FAST, **SMALL_PARTS))
        storage.put("k", [b"before the outage"])
        storage.check()
        s3.stop()
        errors = [
            _unavailable_promptly(lambda: storage.put("k", [b"during"])),
            _unavailable_promptly(lambda: storage.put("big", _pieces(os.urandom(6 * MiB)))),
            _unavailable_promptly(lambda: storage.get("k")),
            _unavailable_promptly(lambda: storage.get("k", 1, 5)),
            _unavailable_promptly(lambda: storage.head("k")),
            _unavailable_promptly(lambda: storage.delete("k")),
            _unavailable_promptly(lambda: storage.list()),
            _unavailable_promptly(storage.check),
        ]
        for error in errors:
            assert secret not in str(error)
        s3.start()  # same port, empty again (moto is in memory), bucket recreated
        storage.check()
        assert storage.head("k") is None
        storage.put("k", [b"after"])
        assert _read(storage, "k") == b"after"
        storage.close()


def test_retries_ride_out_a_short_outage() -> None:
    with moto_s3() as s3, aws_environment(s3.env):
        storage = S3Storage.from_config(s3.config(S3_MAX_ATTEMPTS=10))
        attempts: list[int] = []

        def refuse_twice(**kwargs: Any) -> None:
            attempts.append(1)
            if len(attempts) <= 2:
                raise EndpointConnectionError(endpoint_url=s3.endpoint_url)

        storage.client.meta.events.register("before-send.s3.PutObject", refuse_twice)
        storage.put("k", [b"x"])
        assert len(attempts) == 3
        assert _read(storage, "k") == b"x"
        storage.close()


def test_a_missing_bucket_is_unavailable_with_a_clear_message(s3_server: S3Server) -> None:
    storage = S3Storage.from_config(s3_server.config(S3_BUCKET="no-such-bucket", **FAIL_FAST))
    for operation in (
        storage.check,
        lambda: storage.put("k", [b"x"]),
        lambda: storage.get("k"),
        lambda: storage.list(),
        lambda: storage.delete("k"),
    ):
        error = _unavailable_promptly(operation)
        assert "no-such-bucket" in str(error) and "does not exist" in str(error)
    storage.close()


def test_a_store_that_never_answers_times_out() -> None:
    with socket.socket() as listener:  # accepts connections (backlog), never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        port = listener.getsockname()[1]
        storage = S3Storage.from_config(
            {
                "S3_BUCKET": "b-never",
                "S3_ENDPOINT_URL": f"http://127.0.0.1:{port}",
                "S3_REGION": "us-east-1",
                "S3_MAX_ATTEMPTS": 1,
                "S3_READ_TIMEOUT": 0.5,
            }
        )
        with aws_environment(s3server.S3_ENV):
            error = _unavailable_promptly(storage.check)
        assert "Timeout" in str(error)
        storage.close()


# -- server-side encryption --------------------------------------------------------------------


def test_sse_s3_is_requested_on_every_write(make_backend, raw, bucket) -> None:
    storage = make_backend(S3_SERVER_SIDE_ENCRYPTION="AES256", **SMALL_PARTS)
    calls = _Calls(storage)
    storage.put("small", [b"x"])
    storage.put("large", _pieces(os.urandom(6 * MiB)))
    for operation in ("PutObject", "CreateMultipartUpload"):
        (headers,) = calls.headers(operation)
        assert headers["x-amz-server-side-encryption"] == "AES256"
    for key in ("small", "large"):
        assert raw.head_object(Bucket=bucket, Key=key)["ServerSideEncryption"] == "AES256"


def test_sse_kms_sends_the_key_id(make_backend, raw, bucket) -> None:
    storage = make_backend(
        S3_SERVER_SIDE_ENCRYPTION="aws:kms", S3_SSE_KMS_KEY_ID="alias/ctxcloud", **SMALL_PARTS
    )
    calls = _Calls(storage)
    storage.put("small", [b"x"])
    storage.put("large", _pieces(os.urandom(6 * MiB)))
    for operation in ("PutObject", "CreateMultipartUpload"):
        (headers,) = calls.headers(operation)
        assert headers["x-amz-server-side-encryption"] == "aws:kms"
        assert headers["x-amz-server-side-encryption-aws-kms-key-id"] == "alias/ctxcloud"
    assert raw.head_object(Bucket=bucket, Key="large")["SSEKMSKeyId"] == "alias/ctxcloud"


def test_no_sse_header_by_default(make_backend) -> None:
    storage = make_backend()
    calls = _Calls(storage)
    storage.put("k", [b"x"])
    (headers,) = calls.headers("PutObject")
    assert "x-amz-server-side-encryption" not in headers


# -- through the app ---------------------------------------------------------------------------


def test_the_app_on_s3_reports_storage_health_and_follows_an_outage(tmp_path) -> None:
    with moto_s3() as s3, aws_environment(s3.env):
        app = create_app(
            {"ENV": "testing", "DATA_DIR": str(tmp_path / "data"), **s3.config(**FAIL_FAST)}
        )
        storage = app.extensions["ctxcloud"].storage
        assert isinstance(storage, S3Storage)
        client = app.test_client()

        health = client.get("/api/v1/health")
        assert health.status_code == 200, health.json
        assert health.json["checks"]["storage"] == "ok"

        s3.stop()
        started = time.monotonic()
        ready = client.get("/api/v1/health/ready")
        assert time.monotonic() - started < PROMPTLY
        assert ready.status_code == 503
        assert ready.json["checks"]["storage"] == "unavailable"
        assert "storage" in ready.json["failing"]

        s3.start()  # moto is in memory: start() recreates the bucket
        ready = client.get("/api/v1/health/ready")
        assert ready.status_code == 200, ready.json
        assert ready.json["checks"]["storage"] == "ok"
        storage.close()


def test_the_app_refuses_to_start_on_s3_without_a_bucket(tmp_path) -> None:
    from ctxcloud.settings import ConfigError

    with pytest.raises(ConfigError, match="CTXCLOUD_S3_BUCKET"):
        create_app({"ENV": "testing", "DATA_DIR": str(tmp_path), "STORAGE_BACKEND": "s3"})
