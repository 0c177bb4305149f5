"""GCSStorage: objects in a Google Cloud Storage bucket, through the JSON API.

Layout: object ``<GCS_PREFIX><key>``; keys are the core's opaque keys, so the bucket shows
sizes, times and counts, never names. Writes are atomic because GCS's are: an object appears
whole when its one upload request, or the last request of its resumable upload, succeeds,
and nothing else makes it visible. A failed resumable upload is cancelled (DELETE on its
session); one that cannot be cancelled (the store went away, the process died) expires on
its own after a week and never becomes an object.

Media (the bytes) go over the documented JSON API upload and download protocols, through one
authorized session: an object of up to one chunk in one ``uploadType=media`` request, larger
ones as a resumable upload of GCS_CHUNK_SIZE requests, the same buffer reused for every one;
a read is one streamed GET. Metadata (head, list, delete, the health probe) goes through the
SDK. Every request carries ``timeout=(connect, read)`` and one ``Retry`` whose deadline keeps
a call, retries included, within GCS_RETRY_BUDGET.

Errors: a store that is down, slow, throttling past the retries, refusing our credentials or
missing its bucket raises StorageUnavailable (the API answers 503); a missing object raises
ObjectNotFound; anything else GCS refuses is a StorageError. Nothing here logs or repeats
credentials or upload session URLs (a session URL lets anyone holding it upload).
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, TypeVar
from urllib.parse import quote

import google.auth
import requests
import urllib3.exceptions
from google.api_core import exceptions as api_exceptions
from google.api_core.retry import Retry
from google.auth import exceptions as auth_exceptions
from google.auth.credentials import AnonymousCredentials, Credentials
from google.auth.transport.requests import AuthorizedSession
from google.cloud import storage
from google.cloud.storage.retry import DEFAULT_RETRY

from ctxcloud import (
    CHUNK_SIZE,
    Blocks,
    ObjectInfo,
    ObjectNotFound,
    StorageBackend,
    StorageError,
    StorageUnavailable,
    StreamedBody,
    validate_key,
    validate_prefix,
)

from .settings import GCSSettings

__all__ = ["SCOPES", "GCSStorage"]

log = logging.getLogger("ctxcloud.storage.gcs")

SCOPES = ("https://www.googleapis.com/auth/devstorage.read_write",)
LIST_PAGE_SIZE = 1000
INITIAL_BACKOFF = 0.25  # seconds before the first retry; doubled (with jitter) each time
MAX_BACKOFF = 4.0
RESUME_INCOMPLETE = 308  # a resumable upload's answer to a chunk: more is expected
CANCELLED = 499  # GCS's answer to a DELETE on a resumable session
OCTET_STREAM = "application/octet-stream"

# requests/urllib3/socket failures: the store is unreachable or stopped answering.
_TRANSPORT_ERRORS = (
    requests.RequestException,
    urllib3.exceptions.HTTPError,
    http.client.HTTPException,
    auth_exceptions.TransportError,
    OSError,
)
# Everything a call may fail with that is the store's or the network's doing.
_FAILURES = (
    api_exceptions.GoogleAPICallError,
    api_exceptions.RetryError,
    auth_exceptions.GoogleAuthError,
    *_TRANSPORT_ERRORS,
)
_CONTENT_RANGE_RE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
_PERSISTED_RE = re.compile(r"bytes=0-(\d+)")
_SECRET_QUERY_RE = re.compile(r"(upload_id|upload_protocol)=[^&\s'\"]+")

T = TypeVar("T")


def _redact(text: str) -> str:
    """A message without resumable session ids, which are bearer capabilities."""
    return _SECRET_QUERY_RE.sub(r"\1=<redacted>", text)


def _raise_for_status(response: requests.Response, *expected: int) -> requests.Response:
    """Return the response if its status is expected, else raise the api_core error for it
    (which the retry predicate classifies: 408/429/5xx are retried)."""
    if response.status_code in expected:
        return response
    try:
        error = api_exceptions.from_http_response(response)  # reads the (small) error body
    finally:
        response.close()
    raise error


class GCSStorage(StorageBackend):
    """Objects in one bucket under an optional prefix; encryption stays the caller's."""

    name = "gcs"

    def __init__(self, settings: GCSSettings, *, credentials: Credentials | None = None) -> None:
        """Nothing is contacted here (credentials are looked up at the first call): a start-up
        never waits for GCS or the metadata server."""
        self.settings = settings
        self.bucket_name = settings.bucket
        self.prefix = settings.prefix
        self._credentials = credentials
        self._lock = threading.Lock()
        self._client: storage.Client | None = None
        self._session: AuthorizedSession | None = None
        self._bucket: storage.Bucket | None = None
        # One policy for every call: the SDK's predicate (connection errors, timeouts, 408,
        # 429, 5xx), exponential backoff with jitter, and a deadline that leaves room for a
        # whole last attempt within the budget.
        self.retry: Retry = DEFAULT_RETRY.with_delay(
            initial=INITIAL_BACKOFF, maximum=MAX_BACKOFF, multiplier=2.0
        ).with_timeout(settings.retry_deadline)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> GCSStorage:
        """The storage_backends factory: the GCS_* settings (CTXCLOUD_GCS_BUCKET is required)."""
        return cls(GCSSettings.from_config(config))

    def __repr__(self) -> str:
        endpoint = self.settings.endpoint_url or "google"
        return (
            f"GCSStorage(bucket={self.bucket_name!r}, prefix={self.prefix!r}, "
            f"endpoint={endpoint!r})"
        )

    # -- clients, built at first use -----------------------------------------------------

    @property
    def session(self) -> AuthorizedSession:
        """The authorized requests session that carries the bytes (uploads and downloads)."""
        self._connect()
        assert self._session is not None
        return self._session

    @property
    def client(self) -> storage.Client:
        """The SDK client, for metadata: head, list, delete and the health probe."""
        self._connect()
        assert self._client is not None
        return self._client

    def _connect(self) -> None:
        if self._client is not None:
            return
        with self._lock:
            if self._client is not None:
                return
            credentials = self._credentials or self._find_credentials()
            options = {"api_endpoint": self.settings.endpoint_url}
            client = storage.Client(
                project=None,  # object calls need none; nothing here creates or lists buckets
                credentials=credentials,
                client_options=options if self.settings.endpoint_url else None,
            )
            session = AuthorizedSession(credentials, refresh_timeout=self.settings.attempt_bound)
            self._session = session
            self._bucket = client.bucket(self.bucket_name)
            self._client = client

    def _find_credentials(self) -> Credentials:
        """Anonymous for an emulator; otherwise Application Default Credentials: the
        GOOGLE_APPLICATION_CREDENTIALS file, gcloud's user credentials, or the service account
        of the VM, Cloud Run service or GKE pod (Workload Identity)."""
        if self.settings.endpoint_url is not None:
            return AnonymousCredentials()
        credentials, _project = google.auth.default(scopes=SCOPES)
        return credentials

    # -- the interface -------------------------------------------------------------------

    def put(self, key: str, chunks: Iterable[bytes]) -> int:
        """One upload request up to GCS_CHUNK_SIZE, else a resumable upload cancelled on failure.

        Memory: one buffer of GCS_CHUNK_SIZE bytes, filled in place and sent as is (a view,
        not a copy), reused for every chunk of the upload.
        """
        name = self._object_name(validate_key(key))
        blocks = Blocks(chunks, self.settings.chunk_size)
        upload: _ResumableUpload | None = None
        try:
            for chunk in blocks:  # full, and more is coming: a resumable upload
                if upload is None:
                    upload = self._start_upload(name, key)
                blocks.keep(upload.send(chunk))  # what GCS did not persist goes again
            rest = blocks.rest()
            if upload is None:
                self._upload_whole(name, key, rest)
            else:
                upload.finish(rest)
        except BaseException:  # includes GeneratorExit/KeyboardInterrupt from the iterable
            if upload is not None:
                upload.cancel()
            raise
        return blocks.total

    def get(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """One GET now (a missing key raises here), ranged unless the whole object is asked,
        streamed in CHUNK_SIZE reads."""
        name = self._object_name(validate_key(key))
        if start < 0 or (end is not None and end < start):
            raise ValueError(f"invalid byte range: {start}-{end}")
        headers = {"Accept-Encoding": "identity"}  # the stored bytes, never a transcoding
        ranged = start > 0 or end is not None
        if ranged:  # GCS clamps an end past the object to its last byte, as the contract says
            headers["Range"] = f"bytes={start}-{'' if end is None else end}"

        def attempt() -> requests.Response:
            response = self.session.get(
                self._download_url(name),
                headers=headers,
                stream=True,
                timeout=self.settings.timeout,
            )
            return _raise_for_status(response, 200, 206, 416)

        try:
            response = self._call(attempt)
        except api_exceptions.NotFound as exc:
            if _bucket_missing(exc):
                raise self._no_such_bucket() from exc
            raise ObjectNotFound(key) from exc
        except _FAILURES as exc:
            raise self._translate(exc, "get", key) from exc
        if response.status_code == 416:  # the object exists and the range starts past its end
            response.close()
            return iter(())
        skip, limit = 0, None
        if ranged:
            content_range = _CONTENT_RANGE_RE.fullmatch(response.headers.get("Content-Range", ""))
            if response.status_code == 200 or content_range is None:
                skip = start  # a store that ignored Range sent the whole object
                limit = None if end is None else end - start + 1
            elif int(content_range.group(1)) != start:
                response.close()
                raise StorageError(f"gcs storage: {key!r}: the store answered another range")
        return StreamedBody(
            response.raw.stream(CHUNK_SIZE, decode_content=True),
            response.close,
            lambda exc: StorageUnavailable(f"gcs storage: cannot read {key!r}: {_describe(exc)}"),
            errors=_TRANSPORT_ERRORS,
            skip=skip,
            limit=limit,
        )

    def head(self, key: str) -> ObjectInfo | None:
        """The object's metadata (size, ``updated``), without the bytes; None when missing."""
        name = self._object_name(validate_key(key))
        with self._errors("head", key):
            blob = self._bucket_handle().get_blob(
                name, timeout=self.settings.timeout, retry=self.retry
            )
        if blob is None:
            return None
        return ObjectInfo(key=key, size=int(blob.size or 0), modified=_timestamp(blob))

    def delete(self, key: str) -> bool:
        """One DELETE; a 404 means it was not there (no error, so deletes can retry).

        A DELETE retried after a first attempt whose answer was lost finds nothing and
        reports False, though the object existed a moment before.
        """
        name = self._object_name(validate_key(key))
        try:
            self._bucket_handle().delete_blob(name, timeout=self.settings.timeout, retry=self.retry)
        except api_exceptions.NotFound as exc:
            if _bucket_missing(exc):
                raise self._no_such_bucket() from exc
            return False
        except _FAILURES as exc:
            raise self._translate(exc, "delete", key) from exc
        return True

    def list(self, prefix: str = "") -> Iterator[str]:
        """Yield every key under prefix, from the listing pages (1,000 names a request)."""
        validate_prefix(prefix)  # now, not on the first next()
        return (info.key for info in self._listing(prefix, "items(name),nextPageToken"))

    def scan(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """The listing pages carry each object's size and ``updated``: no request per object."""
        validate_prefix(prefix)
        return self._listing(prefix, "items(name,size,updated),nextPageToken")

    def check(self) -> None:
        """List one name under the prefix: the bucket exists and the credentials may list it.

        Not a bucket GET: that needs storage.buckets.get, which roles/storage.objectAdmin
        (all the service needs) does not grant.
        """
        with self._errors("check the bucket"):
            blobs = self.client.list_blobs(
                self.bucket_name,
                prefix=self.prefix,
                max_results=1,
                fields="items(name)",
                timeout=self.settings.timeout,
                retry=self.retry,
            )
            for _ in blobs:
                break

    def close(self) -> None:
        """Release the connection pools; the next call builds them again."""
        with self._lock:
            client, session = self._client, self._session
            self._client = self._session = self._bucket = None
        for closeable in (session, client):
            if closeable is not None:
                with contextlib.suppress(Exception):
                    closeable.close()

    # -- internals -----------------------------------------------------------------------

    def _object_name(self, key: str) -> str:
        return self.prefix + key

    def _our_key(self, name: str) -> str | None:
        """The key of an object name, or None for names under the prefix we did not write."""
        if not name.startswith(self.prefix):
            return None
        key = name[len(self.prefix) :]
        try:
            return validate_key(key)
        except ValueError:
            return None

    def _download_url(self, name: str) -> str:
        return (
            f"{self.client.api_endpoint}/download/storage/v1/b/"
            f"{quote(self.bucket_name, safe='')}/o/{quote(name, safe='')}?alt=media"
        )

    def _upload_url(self, name: str) -> str:
        return (
            f"{self.client.api_endpoint}/upload/storage/v1/b/{quote(self.bucket_name, safe='')}"
            f"/o?uploadType=media&name={quote(name, safe='')}"
        )

    def _call(self, attempt: Callable[[], T]) -> T:
        """Run one request with the retry policy."""
        return self.retry(attempt)()

    def _bucket_handle(self) -> storage.Bucket:
        """The SDK's bucket object (no request: it is only a name on the client)."""
        self._connect()
        assert self._bucket is not None
        return self._bucket

    def _upload_whole(self, name: str, key: str, data: bytearray) -> None:
        """The whole object in one ``uploadType=media`` request (retried as a whole)."""
        if not data:
            # GCS takes an empty media upload; gcp-storage-emulator fails on one (a 500), so
            # an empty object goes as the SDK's one-request multipart upload instead.
            with self._errors("put", key):
                self._bucket_handle().blob(name).upload_from_string(
                    b"",
                    content_type=OCTET_STREAM,
                    timeout=self.settings.timeout,
                    retry=self.retry,
                )
            return

        def attempt() -> requests.Response:
            response = self.session.post(
                self._upload_url(name),
                data=memoryview(data),  # a view, not a copy
                headers={"Content-Type": OCTET_STREAM},
                timeout=self.settings.timeout,
            )
            return _raise_for_status(response, 200, 201)

        with self._errors("put", key):
            self._call(attempt).close()

    def _start_upload(self, name: str, key: str) -> _ResumableUpload:
        with self._errors("put", key):
            url = (
                self._bucket_handle()
                .blob(name)
                .create_resumable_upload_session(
                    content_type=OCTET_STREAM,
                    checksum=None,  # ours is authenticated encryption, checked on every read
                    timeout=self.settings.timeout,
                    retry=self.retry,
                )
            )
        return _ResumableUpload(self, key, url)

    def _listing(self, prefix: str, fields: str) -> Iterator[ObjectInfo]:
        with self._errors("list", prefix):
            blobs = self.client.list_blobs(
                self.bucket_name,
                prefix=self.prefix + prefix,
                page_size=LIST_PAGE_SIZE,
                fields=fields,
                timeout=self.settings.timeout,
                retry=self.retry,
            )
            for blob in blobs:
                key = self._our_key(blob.name)
                if key is not None:
                    yield ObjectInfo(key=key, size=int(blob.size or 0), modified=_timestamp(blob))

    @contextlib.contextmanager
    def _errors(self, action: str, key: str | None = None) -> Iterator[None]:
        """Turn SDK, auth and transport failures into the interface's exceptions."""
        try:
            yield
        except _FAILURES as exc:
            raise self._translate(exc, action, key) from exc

    def _translate(self, exc: BaseException, action: str, key: str | None = None) -> StorageError:
        what = f"gcs storage: cannot {action}" + (f" {key!r}" if key else "")
        if isinstance(exc, StorageError):
            return exc
        if isinstance(exc, api_exceptions.RetryError):
            cause = exc.cause if exc.cause is not None else exc
            return StorageUnavailable(
                f"{what}: still failing when CTXCLOUD_GCS_RETRY_BUDGET "
                f"({self.settings.retry_budget:g} s) ran out: {_describe(cause)}"
            )
        if isinstance(exc, auth_exceptions.DefaultCredentialsError):
            return StorageUnavailable(
                f"{what}: no Google credentials found ({_redact(str(exc))}); set "
                "GOOGLE_APPLICATION_CREDENTIALS, run `gcloud auth application-default login`, "
                "or run as a service account (Workload Identity on GKE)"
            )
        if isinstance(exc, auth_exceptions.RefreshError):
            return StorageUnavailable(
                f"{what}: the Google credentials could not be refreshed ({type(exc).__name__})"
            )
        if isinstance(exc, api_exceptions.GoogleAPICallError):
            status = int(exc.code or 0)
            if status == 404:
                return self._no_such_bucket()  # where an object's absence is no error
            if status >= 500 or status in (408, 429):
                return StorageUnavailable(f"{what}: the store answered HTTP {status}")
            if status in (401, 403):
                return StorageUnavailable(
                    f"{what}: access denied (HTTP {status}); the service account needs "
                    f"roles/storage.objectAdmin on bucket {self.bucket_name!r}"
                )
            return StorageError(f"{what}: the store answered {_describe(exc)}")
        if isinstance(exc, (auth_exceptions.GoogleAuthError, *_TRANSPORT_ERRORS)):
            return StorageUnavailable(f"{what}: {_describe(exc)}")
        return StorageError(f"{what}: {_describe(exc)}")

    def _no_such_bucket(self) -> StorageUnavailable:
        return StorageUnavailable(
            f"gcs storage: bucket {self.bucket_name!r} does not exist (CTXCLOUD_GCS_BUCKET)"
        )


def _describe(exc: BaseException) -> str:
    if isinstance(exc, api_exceptions.GoogleAPICallError):
        reason = exc.message.rsplit(": ", 1)[-1] if exc.message else ""
        return _redact(f"HTTP {exc.code} ({reason})" if reason else f"HTTP {exc.code}")
    return _redact(f"{type(exc).__name__}: {exc}")


def _bucket_missing(exc: api_exceptions.GoogleAPICallError) -> bool:
    """GCS answers 404 for a missing bucket and a missing object alike; its message differs."""
    return "bucket does not exist" in (exc.message or "").lower()


def _timestamp(blob: Any) -> float | None:
    """GCS's ``updated``: when the object (this generation) was written."""
    updated = blob.updated
    return updated.timestamp() if updated is not None else None


class _ResumableUpload:
    """One resumable upload session: chunks of GCS_CHUNK_SIZE bytes, then the final one.

    The protocol (cloud.google.com/storage/docs/performing-resumable-uploads): each PUT names
    its bytes with Content-Range (``bytes a-b/*``, the last one ``bytes a-b/total``); GCS
    answers 308 with ``Range: bytes=0-n`` (what it has persisted), then 200 with the object.
    A chunk it persisted only in part stays in the buffer and goes again with the next one.
    A failed request is retried with the same bytes, as the SDK's own uploads do.
    """

    __slots__ = ("_key", "_storage", "_url", "persisted")

    def __init__(self, storage: GCSStorage, key: str, url: str) -> None:
        self._storage = storage
        self._key = key
        self._url = url
        self.persisted = 0  # bytes GCS has confirmed; the buffer starts at this offset

    def send(self, chunk: bytearray) -> int:
        """Send a whole chunk (a multiple of 256 KiB); return how many bytes at its end GCS
        did not persist, to go again at the start of the next one."""
        return len(chunk) - self._put(chunk, len(chunk), total=None)

    def finish(self, rest: bytearray) -> None:
        """Send the rest with the object's size: GCS publishes the object on the last byte."""
        filled = len(rest)
        total = self.persisted + filled
        while True:
            stored = self._put(rest, filled, total=total)
            if stored is None:
                return
            if stored == 0:
                raise StorageError(
                    f"gcs storage: cannot put {self._key!r}: the store persisted nothing of "
                    "the final chunk"
                )
            with memoryview(rest) as view:
                view[: filled - stored] = view[stored:filled]  # memmove: they may overlap
            filled -= stored

    def _put(self, buffer: bytearray, count: int, total: int | None) -> int | None:
        """PUT the buffer's first ``count`` bytes at the persisted offset; return how many of
        them GCS persisted, or None once the object is complete."""
        storage = self._storage
        first = self.persisted
        if count:
            content_range = f"bytes {first}-{first + count - 1}/{'*' if total is None else total}"
        else:
            content_range = f"bytes */{total}"

        def attempt() -> requests.Response:
            body = memoryview(buffer)[:count] if count else b""  # a view, not a copy
            response = storage.session.put(
                self._url,
                data=body,
                headers={"Content-Range": content_range},
                timeout=storage.settings.timeout,
            )
            if response.status_code in (404, 410):  # expired, or cancelled under us
                response.close()
                raise StorageError(
                    f"gcs storage: cannot put {self._key!r}: the upload session is gone "
                    f"(HTTP {response.status_code}: expired or cancelled)"
                )
            return _raise_for_status(response, 200, 201, RESUME_INCOMPLETE)

        with storage._errors("put", self._key):
            response = storage._call(attempt)
        response.close()
        if response.status_code != RESUME_INCOMPLETE:
            if total is None:
                raise StorageError(
                    f"gcs storage: cannot put {self._key!r}: the store completed the upload "
                    "before its last chunk"
                )
            self.persisted = total
            return None
        match = _PERSISTED_RE.fullmatch(response.headers.get("Range", ""))
        persisted = int(match.group(1)) + 1 if match else 0
        if not first <= persisted <= first + count:
            raise StorageError(
                f"gcs storage: cannot put {self._key!r}: the store reports {persisted} bytes "
                f"persisted after {first} + {count} sent"
            )
        self.persisted = persisted
        return persisted - first

    def cancel(self) -> None:
        """DELETE the session; a failure is logged, never raised, so it cannot mask the cause.

        An upload that cannot be cancelled publishes nothing: GCS drops it a week after it
        began.
        """
        storage = self._storage
        try:
            response = storage.session.delete(self._url, timeout=storage.settings.timeout)
            response.close()
            status = response.status_code
        except Exception as exc:
            status, error = None, type(exc).__name__
        else:
            error = None
        if status in (CANCELLED, 200, 204, 404, 410):
            return
        log.warning(
            "gcs storage: could not cancel a resumable upload; it publishes nothing and "
            "expires a week after it began",
            extra={"bucket": storage.bucket_name, "status": status, "error": error},
        )
