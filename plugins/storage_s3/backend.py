"""S3Storage: objects in an S3 bucket (AWS, or MinIO, Ceph RGW, R2... through an endpoint URL).

Layout: object ``<S3_PREFIX><key>``; keys are the core's opaque keys, so the bucket shows
sizes, times and counts, never names. Writes are atomic because S3's are: a PutObject or
a CompleteMultipartUpload makes the new object visible at once, whole, and nothing else
does. A failed upload aborts its multipart upload, so no parts are left billed and the
old object (if any) stays. Reads are one GetObject, ranged when asked, streamed.

Errors: a store that is down, slow, throttling past the retries, refusing our
credentials or missing its bucket raises StorageUnavailable (the API answers 503); a
missing object raises ObjectNotFound; anything else S3 refuses is a StorageError.
Nothing here logs or repeats credentials.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import boto3
import botocore.loaders
import botocore.session
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    CredentialRetrievalError,
    NoCredentialsError,
    ParamValidationError,
    PartialCredentialsError,
)

from ctxcloud import (
    CHUNK_SIZE,
    Blocks,
    IncompleteUpload,
    ObjectInfo,
    ObjectNotFound,
    StorageBackend,
    StorageError,
    StorageUnavailable,
    StreamedBody,
    validate_key,
    validate_prefix,
)

from .settings import MAX_PARTS, S3Settings

__all__ = ["S3Storage"]

log = logging.getLogger("ctxcloud.storage.s3")

# gunicorn's gthread workers run 8 threads, each may hold a connection; leave headroom.
MAX_POOL_CONNECTIONS = 32
LIST_PAGE_SIZE = 1000

_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NotFound", "404"})
_NO_SUCH_UPLOAD = "NoSuchUpload"
_DENIED_CODES = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "AccountProblem",
        "ExpiredToken",
        "InvalidAccessKeyId",
        "InvalidToken",
        "SignatureDoesNotMatch",
        "TokenRefreshRequired",
        "403",
    }
)
_TRANSIENT_CODES = frozenset(
    {
        "InternalError",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "ServiceUnavailable",
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestThrottled",
        "TooManyRequests",
        "429",
    }
)
_CREDENTIAL_ERRORS = (NoCredentialsError, PartialCredentialsError, CredentialRetrievalError)
_CONTENT_RANGE_RE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


@functools.cache
def _shared_loader() -> botocore.loaders.Loader:
    """botocore's service-model loader, shared: parsing the S3 model costs ~0.2 s per session."""
    return botocore.session.Session().get_component("data_loader")


def _new_session() -> boto3.session.Session:
    """A session of its own per backend (credentials, config), but not its own model parsing.

    boto3's default session is a module global, and two apps in one process must not share
    one; the loader only reads the installed model files, the same for every session.
    """
    core = botocore.session.Session()
    core.register_component("data_loader", _shared_loader())
    return boto3.session.Session(botocore_session=core)


class RetryBudget:
    """Retries bounded in time, not only in count: botocore retries a failed call up to
    S3_MAX_ATTEMPTS times, each attempt waiting up to its connect and read timeouts; a retry
    that could not finish (backoff plus a whole attempt) within S3_RETRY_BUDGET of the call's
    start is not made, so a hung store fails a call within the budget."""

    STARTED = "ctxcloud_started"
    MAX_BACKOFF = 20.0  # botocore's standard mode never sleeps longer between attempts

    def __init__(self, budget: float, attempt_bound: float) -> None:
        self.budget = budget
        self.attempt_bound = attempt_bound

    def register(self, events: Any) -> None:
        events.register("before-call.s3", self.started)
        # First, so that its veto (False) is the answer botocore's retry handler cannot undo.
        events.register_first("needs-retry.s3", self.may_retry)

    def started(self, context: dict, **_: Any) -> None:
        context[self.STARTED] = time.monotonic()

    def may_retry(self, request_dict: dict, attempts: int, **_: Any) -> bool | None:
        """False (no retry) when another attempt could end past the budget; else no opinion."""
        started = (request_dict.get("context") or {}).get(self.STARTED)
        if started is None:
            return None
        backoff = min(self.MAX_BACKOFF, 2.0**attempts)
        if time.monotonic() - started + backoff + self.attempt_bound > self.budget:
            return False
        return None


def _client_error(exc: ClientError) -> tuple[str, int]:
    error = exc.response.get("Error", {})
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
    return str(error.get("Code") or status), int(status)


def _timestamp(fields: Mapping[str, Any], name: str = "LastModified") -> float | None:
    """A response's datetime field as a POSIX timestamp (None if the store sent none)."""
    value = fields.get(name)
    return value.timestamp() if value is not None else None


class S3Storage(StorageBackend):
    """Objects in one bucket under an optional prefix; encryption stays the caller's."""

    name = "s3"

    def __init__(self, settings: S3Settings, *, client: Any = None) -> None:
        """Build the client now (no request is made): a start-up never waits for S3."""
        self.settings = settings
        self.bucket = settings.bucket
        self.prefix = settings.prefix
        self.client = client if client is not None else self._make_client(settings)
        self._extra: dict[str, str] = {}
        if settings.server_side_encryption:
            self._extra["ServerSideEncryption"] = settings.server_side_encryption
            if settings.sse_kms_key_id:
                self._extra["SSEKMSKeyId"] = settings.sse_kms_key_id
        # Mirror s3transfer: with flexible checksums on, each part carries a CRC32 that
        # CompleteMultipartUpload must list; with "when_required" none is sent.
        calculation = getattr(self.client.meta.config, "request_checksum_calculation", None)
        self._part_checksum = "CRC32" if calculation == "when_supported" else None

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> S3Storage:
        """The storage_backends factory: the S3_* settings (CTXCLOUD_S3_BUCKET is required)."""
        return cls(S3Settings.from_config(config))

    @staticmethod
    def _make_client(settings: S3Settings) -> Any:
        config = Config(
            region_name=settings.region,
            signature_version="s3v4",
            s3={"addressing_style": settings.addressing_style},
            retries={"total_max_attempts": settings.max_attempts, "mode": "standard"},
            connect_timeout=settings.connect_timeout,
            read_timeout=settings.read_timeout,
            max_pool_connections=MAX_POOL_CONNECTIONS,
            user_agent_extra="ctxcloud",
        )
        # Credentials come from boto3's usual chain (environment, profile, instance role...).
        client = _new_session().client("s3", endpoint_url=settings.endpoint_url, config=config)
        RetryBudget(settings.retry_budget, settings.attempt_bound).register(client.meta.events)
        return client

    def __repr__(self) -> str:
        endpoint = self.settings.endpoint_url or "aws"
        return f"S3Storage(bucket={self.bucket!r}, prefix={self.prefix!r}, endpoint={endpoint!r})"

    # -- the interface -------------------------------------------------------

    def put(self, key: str, chunks: Iterable[bytes]) -> int:
        """One PutObject up to the buffer size, else a multipart upload aborted on any failure.

        Memory: one buffer of ``max(S3_MULTIPART_THRESHOLD, S3_PART_SIZE)`` bytes, filled
        in place and handed to botocore as is; after the first part it shrinks to
        S3_PART_SIZE and every later part reuses it.
        """
        target = self._object_key(validate_key(key))
        blocks = Blocks(chunks, self.settings.buffer_size)
        upload: _MultipartUpload | None = None
        try:
            for part in blocks:  # full, and more is coming: this is a multipart upload
                if upload is None:
                    upload = self._start_upload(target, key)
                upload.send(part)
                blocks.resize(self.settings.part_size)  # later parts reuse the buffer's head
            rest = blocks.rest()
            if upload is None:
                with self._errors("put", key):
                    self.client.put_object(Bucket=self.bucket, Key=target, Body=rest, **self._extra)
            else:
                upload.send(rest)
                upload.complete()
        except BaseException:  # includes GeneratorExit/KeyboardInterrupt from the iterable
            if upload is not None:
                upload.abort()
            raise
        return blocks.total

    def get(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """GetObject now (a missing key raises here), ranged unless the whole object is asked."""
        target = self._object_key(validate_key(key))
        if start < 0 or (end is not None and end < start):
            raise ValueError(f"invalid byte range: {start}-{end}")
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": target}
        ranged = start > 0 or end is not None
        if ranged:  # S3 clamps an end past the object to its last byte, as the contract says
            params["Range"] = f"bytes={start}-{'' if end is None else end}"
        try:
            response = self.client.get_object(**params)
        except ClientError as exc:
            code, status = _client_error(exc)
            if code == "InvalidRange" or status == 416:
                return iter(())  # the object exists and the range starts at or past its end
            if code in _NOT_FOUND_CODES:
                raise ObjectNotFound(key) from exc
            raise self._translate(exc, "get", key) from exc
        except (BotoCoreError, OSError) as exc:
            raise self._translate(exc, "get", key) from exc
        body = response["Body"]
        skip, limit = 0, None
        if ranged:
            content_range = _CONTENT_RANGE_RE.fullmatch(response.get("ContentRange") or "")
            if content_range is None:  # a store that ignored Range sent the whole object
                skip = start
                limit = None if end is None else end - start + 1
            elif int(content_range.group(1)) != start:
                body.close()
                raise StorageError(f"s3 storage: {key!r}: the store answered another range")
        return StreamedBody(
            body.iter_chunks(CHUNK_SIZE),
            body.close,
            lambda exc: StorageUnavailable(
                f"s3 storage: cannot read {key!r}: {type(exc).__name__}: {exc}"
            ),
            errors=(BotoCoreError, OSError),
            skip=skip,
            limit=limit,
        )

    def head(self, key: str) -> ObjectInfo | None:
        """HeadObject: the size without the bytes; None when the key names no object."""
        target = self._object_key(validate_key(key))
        try:
            response = self.client.head_object(Bucket=self.bucket, Key=target)
        except ClientError as exc:
            # A HEAD answer has no body, so a missing bucket is a bare 404 too: check() tells.
            if _client_error(exc)[0] in _NOT_FOUND_CODES:
                return None
            raise self._translate(exc, "head", key) from exc
        except (BotoCoreError, OSError) as exc:
            raise self._translate(exc, "head", key) from exc
        return ObjectInfo(
            key=key, size=int(response["ContentLength"]), modified=_timestamp(response)
        )

    def delete(self, key: str) -> bool:
        """HEAD to learn if it existed, then DeleteObject (idempotent; it reports a lost bucket)."""
        existed = self.head(key) is not None
        with self._errors("delete", key):
            self.client.delete_object(Bucket=self.bucket, Key=self._object_key(key))
        return existed

    def list(self, prefix: str = "") -> Iterator[str]:
        """ListObjectsV2 pages under S3_PREFIX + prefix, yielding keys without S3_PREFIX."""
        validate_prefix(prefix)
        return (item.key for item in self._list(prefix))

    def scan(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """The same ListObjectsV2 pages as list(): each item carries Size and LastModified."""
        validate_prefix(prefix)
        return self._list(prefix)

    def incomplete_uploads(
        self, prefix: str = "", *, started_before: float | None = None
    ) -> Iterator[IncompleteUpload]:
        """ListMultipartUploads under S3_PREFIX + prefix, then ListParts of each for its size."""
        validate_prefix(prefix)
        return self._incomplete_uploads(prefix, started_before)

    def abort_upload(self, upload: IncompleteUpload) -> bool:
        """AbortMultipartUpload; False when it is gone already (completed or aborted)."""
        target = self._object_key(validate_key(upload.key))
        try:
            self.client.abort_multipart_upload(
                Bucket=self.bucket, Key=target, UploadId=upload.upload_id
            )
        except ClientError as exc:
            if _client_error(exc)[0] == _NO_SUCH_UPLOAD:
                return False
            raise self._translate(exc, "abort an upload of", upload.key) from exc
        except (BotoCoreError, OSError) as exc:
            raise self._translate(exc, "abort an upload of", upload.key) from exc
        return True

    def check(self) -> None:
        """HeadBucket: the store answers, the credentials work, the bucket is there."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as exc:
            code, status = _client_error(exc)
            if code in _NOT_FOUND_CODES or code == "NoSuchBucket" or status == 404:
                raise self._no_such_bucket() from exc
            raise self._translate(exc, "check") from exc
        except (BotoCoreError, OSError) as exc:
            raise self._translate(exc, "check") from exc

    def close(self) -> None:
        """Close the client's connection pool."""
        with contextlib.suppress(Exception):
            self.client.close()

    # -- internals -----------------------------------------------------------

    def _object_key(self, key: str) -> str:
        return self.prefix + key

    def _list(self, prefix: str) -> Iterator[ObjectInfo]:
        paginator = self.client.get_paginator("list_objects_v2")
        pages = paginator.paginate(
            Bucket=self.bucket,
            Prefix=self.prefix + prefix,
            PaginationConfig={"PageSize": LIST_PAGE_SIZE},
        )
        with self._errors("list", prefix):
            for page in pages:
                for item in page.get("Contents", ()):
                    key = self._our_key(item["Key"])
                    if key is not None:
                        yield ObjectInfo(key=key, size=int(item["Size"]), modified=_timestamp(item))

    def _our_key(self, target: str) -> str | None:
        """The key of a bucket key under our prefix, or None when it is not one of ours (a
        console's "folder/" marker, a stray upload...)."""
        key = target[len(self.prefix) :]
        try:
            return validate_key(key)
        except ValueError:
            return None

    def _incomplete_uploads(
        self, prefix: str, started_before: float | None
    ) -> Iterator[IncompleteUpload]:
        paginator = self.client.get_paginator("list_multipart_uploads")
        pages = paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix)
        with self._errors("list uploads", prefix):
            for page in pages:
                for item in page.get("Uploads", ()):
                    key = self._our_key(item["Key"])
                    started = _timestamp(item, "Initiated")
                    if key is None or (
                        started_before is not None
                        and (started is None or started >= started_before)
                    ):
                        continue
                    size = self._parts_size(item["Key"], item["UploadId"])
                    if size is not None:
                        yield IncompleteUpload(key, item["UploadId"], started, size)

    def _parts_size(self, target: str, upload_id: str) -> int | None:
        """The bytes an upload's parts hold; None when the upload is gone meanwhile."""
        paginator = self.client.get_paginator("list_parts")
        size = 0
        try:
            for page in paginator.paginate(Bucket=self.bucket, Key=target, UploadId=upload_id):
                size += sum(int(part["Size"]) for part in page.get("Parts", ()))
        except ClientError as exc:
            if _client_error(exc)[0] == _NO_SUCH_UPLOAD:
                return None
            raise
        return size

    def _start_upload(self, target: str, key: str) -> _MultipartUpload:
        params = dict(self._extra)
        if self._part_checksum:
            params["ChecksumAlgorithm"] = self._part_checksum
        with self._errors("put", key):
            response = self.client.create_multipart_upload(Bucket=self.bucket, Key=target, **params)
        return _MultipartUpload(self, target, key, response["UploadId"])

    @contextlib.contextmanager
    def _errors(self, action: str, key: str | None = None) -> Iterator[None]:
        """Turn botocore failures into the interface's exceptions, keeping the cause."""
        try:
            yield
        except (ClientError, BotoCoreError, OSError) as exc:
            raise self._translate(exc, action, key) from exc

    def _translate(self, exc: BaseException, action: str, key: str | None = None) -> StorageError:
        what = f"s3 storage: cannot {action}" + (f" {key!r}" if key else "")
        if isinstance(exc, ClientError):
            code, status = _client_error(exc)
            if code == "NoSuchBucket":
                return self._no_such_bucket()
            if status >= 500 or code in _TRANSIENT_CODES:
                return StorageUnavailable(f"{what}: the store answered {code} (HTTP {status})")
            if status == 403 or code in _DENIED_CODES:
                return StorageUnavailable(
                    f"{what}: access denied ({code}); check the credentials and the bucket "
                    f"policy for bucket {self.bucket!r}"
                )
            return StorageError(f"{what}: the store answered {code} (HTTP {status})")
        if isinstance(exc, _CREDENTIAL_ERRORS):
            return StorageUnavailable(
                f"{what}: no usable AWS credentials ({type(exc).__name__}); set "
                "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile or an instance role"
            )
        if isinstance(exc, ParamValidationError):
            return StorageError(f"{what}: {exc}")
        # EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError, ConnectionClosedError,
        # SSLError, IncompleteReadError, ResponseStreamingError, socket errors...
        return StorageUnavailable(f"{what}: {type(exc).__name__}: {exc}")

    def _no_such_bucket(self) -> StorageUnavailable:
        return StorageUnavailable(
            f"s3 storage: bucket {self.bucket!r} does not exist (CTXCLOUD_S3_BUCKET)"
        )


class _MultipartUpload:
    """One CreateMultipartUpload's parts; complete() publishes the object, abort() drops it."""

    __slots__ = ("_key", "_parts", "_storage", "_target", "upload_id")

    def __init__(self, storage: S3Storage, target: str, key: str, upload_id: str) -> None:
        self._storage = storage
        self._target = target
        self._key = key
        self._parts: list[dict[str, Any]] = []
        self.upload_id = upload_id

    def send(self, buffer: bytearray) -> None:
        """UploadPart the buffer as the next part; botocore has sent it all when this returns."""
        number = len(self._parts) + 1
        if number > MAX_PARTS:
            raise StorageError(
                f"s3 storage: cannot put {self._key!r}: more than {MAX_PARTS} parts of "
                f"{self._storage.settings.part_size} bytes; raise CTXCLOUD_S3_PART_SIZE"
            )
        storage = self._storage
        params: dict[str, Any] = {}
        if storage._part_checksum:
            params["ChecksumAlgorithm"] = storage._part_checksum
        with storage._errors("put", self._key):
            response = storage.client.upload_part(
                Bucket=storage.bucket,
                Key=self._target,
                UploadId=self.upload_id,
                PartNumber=number,
                Body=buffer,
                **params,
            )
        part = {"PartNumber": number, "ETag": response["ETag"]}
        checksum = f"Checksum{storage._part_checksum}" if storage._part_checksum else None
        if checksum and checksum in response:
            part[checksum] = response[checksum]
        self._parts.append(part)

    def complete(self) -> None:
        storage = self._storage
        with storage._errors("put", self._key):
            storage.client.complete_multipart_upload(
                Bucket=storage.bucket,
                Key=self._target,
                UploadId=self.upload_id,
                MultipartUpload={"Parts": self._parts},
            )

    def abort(self) -> None:
        """Drop the parts; a failure is logged, never raised, so it cannot mask the cause."""
        storage = self._storage
        try:
            storage.client.abort_multipart_upload(
                Bucket=storage.bucket, Key=self._target, UploadId=self.upload_id
            )
        except Exception as exc:
            log.warning(
                "s3 storage: could not abort a multipart upload; the bucket's lifecycle rule "
                "must remove it",
                extra={
                    "bucket": storage.bucket,
                    "upload_id": self.upload_id,
                    "error": type(exc).__name__,
                },
            )
