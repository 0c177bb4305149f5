"""S3Storage without a server: settings, the plugin's hooks, error mapping (botocore Stubber)."""

from __future__ import annotations

import datetime
import io
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.config import Config
from botocore.exceptions import (
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber

from ctxcloud.plugins.storage_s3.backend import S3Storage, _new_session
from ctxcloud.plugins.storage_s3.settings import DEFAULTS, MIN_PART_SIZE, S3Settings
from ctxcloud.settings import ConfigError
from ctxcloud.storage import (
    IncompleteUpload,
    ObjectNotFound,
    StorageBackend,
    StorageError,
    StorageUnavailable,
)

MiB = 1024 * 1024
BUCKET = "unit-bucket"


def _settings(**config: Any) -> S3Settings:
    return S3Settings.from_config({**DEFAULTS, "S3_BUCKET": BUCKET, **config})


# -- settings ----------------------------------------------------------------------------


def test_defaults() -> None:
    settings = _settings()
    assert settings.bucket == BUCKET
    assert settings.endpoint_url is None and settings.region is None
    assert settings.prefix == ""
    assert settings.addressing_style == "auto"
    assert settings.multipart_threshold == settings.part_size == 8 * MiB
    assert settings.max_attempts == 3
    assert settings.connect_timeout == 3.0 and settings.read_timeout == 10.0
    assert settings.retry_budget == 20.0
    assert settings.server_side_encryption is None and settings.sse_kms_key_id is None
    assert settings.buffer_size == 8 * MiB


def test_the_bucket_is_required_and_named_by_its_variable() -> None:
    for config in ({}, {**DEFAULTS}, {"S3_BUCKET": "  "}):
        with pytest.raises(ConfigError, match="CTXCLOUD_S3_BUCKET"):
            S3Settings.from_config(config)


def test_values_from_the_environment_are_parsed() -> None:
    settings = _settings(
        S3_BUCKET=12345,  # CTXCLOUD_S3_BUCKET=12345 arrives as an int (the env is JSON-parsed)
        S3_PART_SIZE="10485760",
        S3_MULTIPART_THRESHOLD=0,
        S3_CONNECT_TIMEOUT="2.5",
        S3_READ_TIMEOUT=30,
        S3_MAX_ATTEMPTS="",  # an empty variable means unset
        S3_SERVER_SIDE_ENCRYPTION="aes256",
        S3_ADDRESSING_STYLE="PATH",
    )
    assert settings.bucket == "12345"
    assert settings.part_size == 10 * MiB
    assert settings.buffer_size == 10 * MiB  # a threshold below a part gains nothing
    assert settings.connect_timeout == 2.5 and settings.read_timeout == 30.0
    assert settings.max_attempts == 3
    assert settings.server_side_encryption == "AES256"
    assert settings.addressing_style == "path"


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("", ""),
        ("ctxcloud/", "ctxcloud/"),
        ("ctxcloud", "ctxcloud/"),
        ("Prod/ctx-1/", "Prod/ctx-1/"),
    ],
)
def test_prefix_is_a_folder(prefix: str, expected: str) -> None:
    assert _settings(S3_PREFIX=prefix).prefix == expected


@pytest.mark.parametrize(
    ("setting", "value", "variable"),
    [
        ("S3_PREFIX", "/abs/", "CTXCLOUD_S3_PREFIX"),
        ("S3_PREFIX", "a//b/", "CTXCLOUD_S3_PREFIX"),
        ("S3_PREFIX", "a/../b/", "CTXCLOUD_S3_PREFIX"),
        ("S3_PREFIX", "a b/", "CTXCLOUD_S3_PREFIX"),
        ("S3_PREFIX", "x" * 600, "CTXCLOUD_S3_PREFIX"),
        ("S3_BUCKET", "a/b", "CTXCLOUD_S3_BUCKET"),
        ("S3_ENDPOINT_URL", "minio:9000", "CTXCLOUD_S3_ENDPOINT_URL"),
        ("S3_ADDRESSING_STYLE", "dns", "CTXCLOUD_S3_ADDRESSING_STYLE"),
        ("S3_PART_SIZE", MIN_PART_SIZE - 1, "CTXCLOUD_S3_PART_SIZE"),
        ("S3_PART_SIZE", 6 * 1024**3, "CTXCLOUD_S3_PART_SIZE"),
        ("S3_PART_SIZE", "8MiB", "CTXCLOUD_S3_PART_SIZE"),
        ("S3_PART_SIZE", True, "CTXCLOUD_S3_PART_SIZE"),
        ("S3_MULTIPART_THRESHOLD", -1, "CTXCLOUD_S3_MULTIPART_THRESHOLD"),
        ("S3_MAX_ATTEMPTS", 0, "CTXCLOUD_S3_MAX_ATTEMPTS"),
        ("S3_CONNECT_TIMEOUT", 0, "CTXCLOUD_S3_CONNECT_TIMEOUT"),
        ("S3_READ_TIMEOUT", "soon", "CTXCLOUD_S3_READ_TIMEOUT"),
        ("S3_SERVER_SIDE_ENCRYPTION", "SSE-C", "CTXCLOUD_S3_SERVER_SIDE_ENCRYPTION"),
        ("S3_SSE_KMS_KEY_ID", "alias/x", "CTXCLOUD_S3_SSE_KMS_KEY_ID"),  # without aws:kms
    ],
)
def test_bad_settings_stop_the_start_naming_the_variable(
    setting: str, value: object, variable: str
) -> None:
    with pytest.raises(ConfigError, match=variable):
        _settings(**{setting: value})


def test_sse_kms_with_a_key() -> None:
    settings = _settings(S3_SERVER_SIDE_ENCRYPTION="aws:kms", S3_SSE_KMS_KEY_ID="alias/ctxcloud")
    assert settings.server_side_encryption == "aws:kms"
    assert settings.sse_kms_key_id == "alias/ctxcloud"
    assert _settings(S3_SERVER_SIDE_ENCRYPTION="none").server_side_encryption is None


def test_the_client_gets_retries_timeouts_and_addressing() -> None:
    storage = S3Storage(
        _settings(
            S3_ENDPOINT_URL="http://127.0.0.1:9",
            S3_REGION="eu-west-1",
            S3_ADDRESSING_STYLE="path",
            S3_MAX_ATTEMPTS=7,
            S3_CONNECT_TIMEOUT=1.5,
            S3_READ_TIMEOUT=9,
        )
    )
    config = storage.client.meta.config
    assert storage.client.meta.endpoint_url == "http://127.0.0.1:9"
    assert storage.client.meta.region_name == "eu-west-1"
    assert config.retries == {"total_max_attempts": 7, "mode": "standard"}
    assert config.connect_timeout == 1.5 and config.read_timeout == 9
    assert config.s3["addressing_style"] == "path"
    assert "secret" not in repr(storage).lower()
    storage.close()


# -- the plugin --------------------------------------------------------------------------


def test_plugin_offers_s3_and_its_defaults() -> None:
    plugin = pytest.importorskip("ctxcloud.plugins.storage_s3")
    assert set(plugin.storage_backends()) == {"s3"}
    assert plugin.config_defaults() == DEFAULTS
    assert all(name.startswith("S3_") for name in DEFAULTS)
    assert hasattr(plugin.storage_backends, "ctxcloud_impl")
    assert hasattr(plugin.config_defaults, "ctxcloud_impl")
    storage = plugin.storage_backends()["s3"]({**DEFAULTS, "S3_BUCKET": BUCKET})
    assert isinstance(storage, S3Storage) and isinstance(storage, StorageBackend)
    assert storage.name == "s3"
    storage.close()


def test_create_app_without_a_bucket_names_the_variable(tmp_path) -> None:
    from ctxcloud import create_app

    with pytest.raises(ConfigError, match="CTXCLOUD_S3_BUCKET"):
        create_app({"ENV": "testing", "DATA_DIR": str(tmp_path), "STORAGE_BACKEND": "s3"})


def test_the_s3_defaults_are_in_every_app(tmp_path) -> None:
    from ctxcloud import create_app

    app = create_app({"ENV": "testing", "DATA_DIR": str(tmp_path)})
    assert app.config["S3_PART_SIZE"] == 8 * MiB
    assert app.config["S3_SERVER_SIDE_ENCRYPTION"] == "none"
    app.extensions["ctxcloud"].storage.close()


# -- error mapping, with a stubbed client --------------------------------------------------


@pytest.fixture
def stubbed() -> Iterator[tuple[S3Storage, Stubber]]:
    client = _new_session().client(
        "s3",
        aws_access_key_id="AKIDUNIT",
        aws_secret_access_key="unit-secret",
        region_name="us-east-1",
        config=Config(request_checksum_calculation="when_required"),
    )
    storage = S3Storage(
        _settings(S3_MULTIPART_THRESHOLD=5 * MiB, S3_PART_SIZE=5 * MiB), client=client
    )
    with Stubber(client) as stubber:
        yield storage, stubber
        stubber.assert_no_pending_responses()
    storage.close()


def _body(data: bytes) -> StreamingBody:
    return StreamingBody(io.BytesIO(data), len(data))


@pytest.mark.parametrize(
    ("code", "status", "expected"),
    [
        ("NoSuchKey", 404, ObjectNotFound),
        ("NoSuchBucket", 404, StorageUnavailable),
        ("SlowDown", 503, StorageUnavailable),
        ("InternalError", 500, StorageUnavailable),
        ("RequestTimeout", 400, StorageUnavailable),
        ("AccessDenied", 403, StorageUnavailable),
        ("InvalidAccessKeyId", 403, StorageUnavailable),
        ("InvalidArgument", 400, StorageError),
    ],
)
def test_get_maps_s3_errors(stubbed, code: str, status: int, expected: type) -> None:
    storage, stubber = stubbed
    stubber.add_client_error("get_object", service_error_code=code, http_status_code=status)
    with pytest.raises(expected) as raised:
        storage.get("k")
    if expected is StorageError:
        assert not isinstance(raised.value, StorageUnavailable)
    assert "unit-secret" not in str(raised.value)


def test_no_such_bucket_names_the_bucket(stubbed) -> None:
    storage, stubber = stubbed
    stubber.add_client_error("put_object", service_error_code="NoSuchBucket", http_status_code=404)
    with pytest.raises(StorageUnavailable, match=f"{BUCKET}.*does not exist"):
        storage.put("k", [b"x"])


def test_invalid_range_means_an_empty_read(stubbed) -> None:
    storage, stubber = stubbed
    stubber.add_client_error(
        "get_object",
        service_error_code="InvalidRange",
        http_status_code=416,
        expected_params={"Bucket": BUCKET, "Key": "k", "Range": "bytes=10-"},
    )
    assert list(storage.get("k", 10)) == []


def test_a_range_the_store_ignored_is_cut_from_the_whole_object(stubbed) -> None:
    storage, stubber = stubbed
    data = bytes(range(256)) * 10
    stubber.add_response(
        "get_object",
        {"Body": _body(data), "ContentLength": len(data)},
        {"Bucket": BUCKET, "Key": "k", "Range": "bytes=100-199"},
    )
    assert b"".join(storage.get("k", 100, 199)) == data[100:200]


def test_a_different_range_than_asked_is_an_error(stubbed) -> None:
    storage, stubber = stubbed
    stubber.add_response(
        "get_object",
        {"Body": _body(b"abc"), "ContentLength": 3, "ContentRange": "bytes 0-2/10"},
        {"Bucket": BUCKET, "Key": "k", "Range": "bytes=5-7"},
    )
    with pytest.raises(StorageError):
        storage.get("k", 5, 7)


def test_head_and_delete(stubbed) -> None:
    storage, stubber = stubbed
    stubber.add_response("head_object", {"ContentLength": 42}, {"Bucket": BUCKET, "Key": "k"})
    stubber.add_client_error("head_object", service_error_code="404", http_status_code=404)
    stubber.add_response("head_object", {"ContentLength": 1}, {"Bucket": BUCKET, "Key": "k"})
    stubber.add_response("delete_object", {}, {"Bucket": BUCKET, "Key": "k"})
    stubber.add_client_error("head_object", service_error_code="404", http_status_code=404)
    stubber.add_response("delete_object", {}, {"Bucket": BUCKET, "Key": "k"})
    stubber.add_client_error("head_object", service_error_code="403", http_status_code=403)
    assert storage.head("k").size == 42
    assert storage.head("k") is None
    assert storage.delete("k") is True
    assert storage.delete("k") is False
    with pytest.raises(StorageUnavailable, match="access denied"):
        storage.head("k")


def test_check_maps_a_missing_bucket_and_denial(stubbed) -> None:
    storage, stubber = stubbed
    stubber.add_response("head_bucket", {}, {"Bucket": BUCKET})
    stubber.add_client_error("head_bucket", service_error_code="404", http_status_code=404)
    stubber.add_client_error("head_bucket", service_error_code="403", http_status_code=403)
    stubber.add_client_error("head_bucket", service_error_code="503", http_status_code=503)
    storage.check()
    with pytest.raises(StorageUnavailable, match="does not exist"):
        storage.check()
    with pytest.raises(StorageUnavailable, match="access denied"):
        storage.check()
    with pytest.raises(StorageUnavailable):
        storage.check()


@pytest.mark.parametrize(
    "error",
    [
        EndpointConnectionError(endpoint_url="http://s3"),
        ConnectTimeoutError(endpoint_url="http://s3"),
        ReadTimeoutError(endpoint_url="http://s3"),
        NoCredentialsError(),
        ConnectionResetError(104, "Connection reset by peer"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_transport_failures_are_unavailable(error: Exception) -> None:
    class Broken:
        class meta:  # mimics a botocore client attribute
            config = Config()

        def __getattr__(self, name: str) -> Any:
            def fail(**kwargs: Any) -> None:
                raise error

            return fail

    storage = S3Storage(_settings(), client=Broken())
    for operation in (
        storage.check,
        lambda: storage.get("k"),
        lambda: storage.head("k"),
        lambda: storage.put("k", [b"x"]),
    ):
        with pytest.raises(StorageUnavailable):
            operation()


def test_a_failed_part_aborts_the_upload(stubbed) -> None:
    storage, stubber = stubbed
    key = {"Bucket": BUCKET, "Key": "k"}
    upload = {**key, "UploadId": "u-1"}
    stubber.add_response("create_multipart_upload", {"UploadId": "u-1"}, key)
    stubber.add_response("upload_part", {"ETag": '"e1"'}, {**upload, "PartNumber": 1, "Body": ANY})
    stubber.add_client_error("upload_part", service_error_code="SlowDown", http_status_code=503)
    stubber.add_response("abort_multipart_upload", {}, upload)
    with pytest.raises(StorageUnavailable, match="SlowDown"):
        storage.put("k", [b"a" * (5 * MiB), b"b" * (5 * MiB), b"c"])


def test_a_failed_complete_aborts_the_upload(stubbed) -> None:
    storage, stubber = stubbed
    key = {"Bucket": BUCKET, "Key": "k"}
    upload = {**key, "UploadId": "u-2"}
    stubber.add_response("create_multipart_upload", {"UploadId": "u-2"}, key)
    for number, etag in ((1, '"e1"'), (2, '"e2"')):
        stubber.add_response(
            "upload_part", {"ETag": etag}, {**upload, "PartNumber": number, "Body": ANY}
        )
    stubber.add_client_error(
        "complete_multipart_upload",
        service_error_code="InternalError",
        http_status_code=500,
        expected_params={
            **upload,
            "MultipartUpload": {
                "Parts": [{"PartNumber": 1, "ETag": '"e1"'}, {"PartNumber": 2, "ETag": '"e2"'}]
            },
        },
    )
    stubber.add_response("abort_multipart_upload", {}, upload)
    with pytest.raises(StorageUnavailable):
        storage.put("k", [b"a" * (5 * MiB + 1)])


def test_an_abort_that_fails_is_logged_not_raised(stubbed, caplog) -> None:
    storage, stubber = stubbed
    stubber.add_response("create_multipart_upload", {"UploadId": "u-3"}, None)
    stubber.add_response("upload_part", {"ETag": '"e1"'}, None)
    stubber.add_client_error("abort_multipart_upload", http_status_code=503)

    def failing() -> Iterator[bytes]:
        yield b"a" * (5 * MiB + 1)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        storage.put("k", failing())
    assert "could not abort" in caplog.text
    assert "unit-secret" not in caplog.text


@pytest.mark.parametrize(
    "chunk",
    [b"abc", bytearray(b"abc"), memoryview(b"abc"), memoryview(b"xaxbxc")[1::2]],
    ids=["bytes", "bytearray", "memoryview", "strided"],
)
def test_put_accepts_any_bytes_like_chunk(stubbed, chunk) -> None:
    storage, stubber = stubbed
    stubber.add_response(
        "put_object", {}, {"Bucket": BUCKET, "Key": "k", "Body": bytearray(bytes(chunk))}
    )
    assert storage.put("k", [chunk]) == 3


def test_put_of_an_int_array_counts_bytes(stubbed) -> None:
    import array

    storage, stubber = stubbed
    ints = array.array("i", [1, 2, 3])
    stubber.add_response("put_object", {}, {"Bucket": BUCKET, "Key": "k", "Body": ANY})
    assert storage.put("k", [ints]) == ints.itemsize * 3


# -- sweeps: incomplete uploads ------------------------------------------------------------


def _upload(key: str, upload_id: str, initiated: datetime.datetime) -> dict[str, Any]:
    return {"Key": key, "UploadId": upload_id, "Initiated": initiated}


def test_incomplete_uploads_skip_those_begun_within_the_grace(stubbed) -> None:
    storage, stubber = stubbed
    now = datetime.datetime.now(datetime.UTC)
    old, recent = now - datetime.timedelta(days=2), now - datetime.timedelta(minutes=5)
    stubber.add_response(
        "list_multipart_uploads",
        {
            "Uploads": [
                _upload("o/aa/killed", "u-old", old),
                _upload("o/bb/in-flight", "u-recent", recent),
                _upload("NOT/ours", "u-foreign", old),
            ]
        },
        {"Bucket": BUCKET, "Prefix": ""},
    )
    stubber.add_response(  # only the old upload's parts are read, for its size
        "list_parts",
        {"Parts": [{"PartNumber": 1, "Size": 5 * MiB}, {"PartNumber": 2, "Size": 3}]},
        {"Bucket": BUCKET, "Key": "o/aa/killed", "UploadId": "u-old"},
    )
    cutoff = (now - datetime.timedelta(days=1)).timestamp()
    (upload,) = storage.incomplete_uploads(started_before=cutoff)
    assert upload == IncompleteUpload("o/aa/killed", "u-old", old.timestamp(), 5 * MiB + 3)


def test_an_upload_that_ends_while_listed_is_skipped(stubbed) -> None:
    storage, stubber = stubbed
    old = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    stubber.add_response("list_multipart_uploads", {"Uploads": [_upload("o/aa/done", "u-1", old)]})
    stubber.add_client_error("list_parts", service_error_code="NoSuchUpload", http_status_code=404)
    assert list(storage.incomplete_uploads(started_before=1e12)) == []


def test_abort_upload_is_idempotent(stubbed) -> None:
    storage, stubber = stubbed
    upload = IncompleteUpload("o/aa/killed", "u-old", 0.0, 1)
    expected = {"Bucket": BUCKET, "Key": "o/aa/killed", "UploadId": "u-old"}
    stubber.add_response("abort_multipart_upload", {}, expected)
    stubber.add_client_error(
        "abort_multipart_upload", service_error_code="NoSuchUpload", http_status_code=404
    )
    stubber.add_client_error(
        "abort_multipart_upload", service_error_code="AccessDenied", http_status_code=403
    )
    assert storage.abort_upload(upload) is True
    assert storage.abort_upload(upload) is False
    with pytest.raises(StorageUnavailable, match="access denied"):
        storage.abort_upload(upload)
