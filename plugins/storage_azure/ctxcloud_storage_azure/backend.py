"""AzureBlobStorage: objects as block blobs in one Azure Storage container.

Layout: blob ``<AZURE_PREFIX><key>``; keys are the core's opaque keys, so the container shows
sizes, times and counts, never names. Azure drops a trailing "." from every segment of a blob
name, so a key segment ending in "." is stored with a "~" after it ("a./b" is "a.~/b"): "~" is
no key character, so the mapping is reversible and two keys never share a blob.

Writes are atomic because Azure's are: an object up to SINGLE_PUT_LIMIT goes in one Put Blob;
a larger one is staged block by block (Put Block, one buffer of AZURE_BLOCK_SIZE reused) and
published by one Put Block List. Staged blocks are invisible; a failed upload drops them when
the key held no object (a conditional Delete Blob that cannot touch a committed blob), else
they wait for the key's next commit or Azure's expiry of uncommitted blocks after a week.
A commit discards every uncommitted block of the blob, a concurrent writer's included: that
writer's own commit then fails (InvalidBlockList) and, if a value was committed since its
first block landed, it lost a race it may lose (that value overwrote it), so its put succeeds;
otherwise its blocks were dropped under it (``ctxcloud storage gc``) and it fails.

Reads are ranged Get Blob requests of at most READ_SIZE (4 MiB) each (the SDK's downloader,
pinned to the blob's ETag), handed on in pieces of at most CHUNK_SIZE, so nothing holds a whole
object. The transport reads responses in 256 KiB socket reads (the SDK's own default, which a
transport of one's own must set) and gives the SDK its streams without a length: the SDK joins
each response with ``b"".join(list(stream))``, and list() would presize itself to the length,
eight bytes of pointers per byte of the response (32 MiB for 4 MiB). Memory per read is then
about twice READ_SIZE.

Errors: an account that is down, slow, busy past the retries, refusing our credentials or
missing its container raises StorageUnavailable (the API answers 503); a missing blob raises
ObjectNotFound; anything else Azure refuses is a StorageError. Nothing here logs or repeats
credentials (SAS signatures in URLs are masked in messages).
"""

from __future__ import annotations

import contextlib
import logging
import random
import re
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.core.pipeline.transport import RequestsTransport
from azure.core.rest._requests_basic import RestRequestsTransportResponse
from azure.storage.blob import (
    BlobBlock,
    BlobClient,
    BlobServiceClient,
    BlockState,
    ExponentialRetry,
)
from requests import Session
from requests.adapters import HTTPAdapter

from ctxcloud import (
    CHUNK_SIZE,
    Blocks,
    IncompleteUpload,
    ObjectInfo,
    ObjectNotFound,
    StorageBackend,
    StorageError,
    StorageUnavailable,
    validate_key,
    validate_prefix,
)

from .settings import MAX_BLOCKS, AzureSettings

__all__ = ["AzureBlobStorage", "BudgetedRetry"]

log = logging.getLogger("ctxcloud.storage.azure")

# gunicorn's gthread workers run 8 threads, each may hold a connection; leave headroom.
MAX_POOL_CONNECTIONS = 32
LIST_PAGE_SIZE = 1000
MAX_SEGMENTS = 254  # Azure's ceiling on the "/"-separated segments of a blob name
# Bytes per Get Blob request of a read (the SDK's default chunk); memory is about twice this.
READ_SIZE = 4 * CHUNK_SIZE
# Bytes per socket read of a response body (the SDK's default, DATA_BLOCK_SIZE).
SOCKET_READ_SIZE = 256 * 1024
# Objects up to this go in one Put Blob (one request; the SDK wants them as bytes, a copy);
# larger ones as blocks sent from the buffer itself (two requests or more, no copy).
SINGLE_PUT_LIMIT = CHUNK_SIZE
# Older than any blob: If-Unmodified-Since this date fails (412) for every committed blob, so a
# delete carrying it can only remove a blob that has uncommitted blocks and nothing committed
# (conditions treat such a blob as not existing).
NEVER_MODIFIED = datetime(2000, 1, 1, tzinfo=UTC)

_NOT_FOUND_CODES = frozenset({"BlobNotFound", "ResourceNotFound"})
_NO_CONTAINER = "ContainerNotFound"
_INVALID_BLOCK_LIST = "InvalidBlockList"
_TRANSIENT_CODES = frozenset(
    {"InternalError", "OperationTimedOut", "ServerBusy", "ServerTimeout", "TooManyRequests"}
)
_DENIED_CODES = frozenset(
    {
        "AuthenticationFailed",
        "AuthorizationFailure",
        "AuthorizationPermissionMismatch",
        "AuthorizationProtocolMismatch",
        "AuthorizationResourceTypeMismatch",
        "AuthorizationServiceMismatch",
        "AuthorizationSourceIPMismatch",
        "AccountIsDisabled",
        "InsufficientAccountPermissions",
        "KeyBasedAuthenticationNotPermitted",
    }
)
_SEGMENT_FINAL_DOT = re.compile(r"\.(?=/|$)")
_DOT_BEFORE_SLASH = re.compile(r"\.(?=/)")
_SAS_SIGNATURE = re.compile(r"(?i)(\bsig=)[^&\s'\"]+")


class BudgetedRetry(ExponentialRetry):
    """The SDK's retries, bounded in time as well as in count.

    A failed request (connection refused or reset, a timeout, a 5xx such as 503 ServerBusy, a
    408) is retried up to AZURE_MAX_ATTEMPTS attempts in all, after an exponential backoff
    with full jitter (up to 1, 2, 4... s, at most MAX_BACKOFF); a retry that could not finish
    (its backoff plus a whole attempt's connect and read timeouts) within AZURE_RETRY_BUDGET
    of the request's start is not made, so a hung account fails a request within the budget.
    """

    MAX_BACKOFF = 20.0
    BASE_BACKOFF = 1.0
    _STARTED = "ctxcloud_started"
    _BACKOFF = "ctxcloud_backoff"

    def __init__(self, *, retries: int, budget: float, attempt_bound: float) -> None:
        super().__init__(
            initial_backoff=0,
            increment_base=2,
            random_jitter_range=0,
            retry_total=retries,
            # One count for every kind of failure: AZURE_MAX_ATTEMPTS is the whole story.
            retry_connect=retries,
            retry_read=retries,
            retry_status=retries,
        )
        self.budget = budget
        self.attempt_bound = attempt_bound

    def configure_retries(self, request: Any) -> dict[str, Any]:
        settings = super().configure_retries(request)
        settings[self._STARTED] = time.monotonic()
        return settings

    def increment(self, settings: dict[str, Any], request: Any, response=None, error=None) -> bool:
        """False (give up now) when the retries are spent or another could end past the budget."""
        if not super().increment(settings, request, response=response, error=error):
            return False
        ceiling = min(self.MAX_BACKOFF, self.BASE_BACKOFF * 2.0 ** (settings["count"] - 1))
        # bandit B311 wants a CSPRNG: this is the jitter of a retry's backoff, no secret.
        backoff = random.uniform(0, ceiling)  # nosec B311
        elapsed = time.monotonic() - settings[self._STARTED]
        if elapsed + backoff + self.attempt_bound > self.budget:
            return False
        settings[self._BACKOFF] = backoff
        return True

    def get_backoff_time(self, settings: dict[str, Any]) -> float:
        return settings.get(self._BACKOFF, 0.0)


def _code(exc: HttpResponseError) -> str:
    code = exc.error_code
    if code is None:
        return str(exc.status_code or "")
    return str(getattr(code, "value", code))


def _masked(text: str) -> str:
    """One line of an SDK message, with any SAS signature masked."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return _SAS_SIGNATURE.sub(r"\1***", line)


class AzureBlobStorage(StorageBackend):
    """Objects in one container under an optional prefix; encryption stays the caller's."""

    name = "azure"

    def __init__(self, settings: AzureSettings, *, service: BlobServiceClient | None = None):
        """Build the client now (no request is made): a start-up never waits for Azure."""
        self.settings = settings
        self.prefix = settings.prefix
        self._credential: Any = None
        self.session: Session | None = None  # the HTTP session requests go through (ours only)
        self.service = service if service is not None else self._make_service(settings)
        self.container = self.service.get_container_client(settings.container)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> AzureBlobStorage:
        """The storage_backends factory: the AZURE_* settings (a container and credentials)."""
        return cls(AzureSettings.from_config(config))

    def _make_service(self, settings: AzureSettings) -> BlobServiceClient:
        session = self.session = Session()
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=MAX_POOL_CONNECTIONS, max_retries=0)
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        options: dict[str, Any] = {
            "transport": _Transport(
                connection_data_block_size=SOCKET_READ_SIZE,
                session=session,
                session_owner=True,
                connection_timeout=settings.connect_timeout,
                read_timeout=settings.read_timeout,
            ),
            "retry_policy": BudgetedRetry(
                retries=settings.retries,
                budget=settings.retry_budget,
                attempt_bound=settings.attempt_bound,
            ),
            "connection_timeout": settings.connect_timeout,
            "read_timeout": settings.read_timeout,
            # One block per request either way: put() hands the SDK at most one block, and
            # reads come back in READ_SIZE requests (the first one included).
            "max_single_put_size": settings.block_size,
            "max_block_size": settings.block_size,
            "max_single_get_size": READ_SIZE,
            "max_chunk_get_size": READ_SIZE,
            "user_agent": "ctxcloud",
        }
        if settings.connection_string:
            return BlobServiceClient.from_connection_string(settings.connection_string, **options)
        if settings.account_key:
            credential: Any = settings.account_key
        else:
            from azure.identity import DefaultAzureCredential

            # Environment, AKS workload identity, managed identity, Azure CLI...: no request
            # is made until the first storage call needs a token.
            credential = self._credential = DefaultAzureCredential()
        return BlobServiceClient(settings.account_url, credential=credential, **options)

    def __repr__(self) -> str:
        return (
            f"AzureBlobStorage(account={self.service.account_name!r}, "
            f"container={self.settings.container!r}, prefix={self.prefix!r})"
        )

    # -- the interface -------------------------------------------------------

    def put(self, key: str, chunks: Iterable[bytes]) -> int:
        """One Put Blob up to SINGLE_PUT_LIMIT, else Put Block per block and one Put Block List.

        Memory: one buffer of AZURE_BLOCK_SIZE bytes, filled in place and handed to the SDK as
        is for each Put Block (the same buffer for every block). Put Blob wants ``bytes``, so
        an object small enough for it is copied once (at most SINGLE_PUT_LIMIT bytes).
        """
        blob = self._blob(validate_key(key))
        blocks = Blocks(chunks, self.settings.block_size)
        upload: _BlockUpload | None = None
        try:
            for block in blocks:  # full, and more is coming: a block upload
                if upload is None:
                    upload = _BlockUpload(self, blob, key)
                upload.stage(block)
            rest = blocks.rest()
            if upload is None and len(rest) <= SINGLE_PUT_LIMIT:
                data = bytes(rest)
                del rest  # the copy is all that is held from here on
                with self._errors("put", key):
                    blob.upload_blob(data, length=len(data), overwrite=True)
            else:
                if upload is None:
                    upload = _BlockUpload(self, blob, key)
                if rest:
                    upload.stage(rest)
                upload.commit()
        except BaseException:  # includes GeneratorExit/KeyboardInterrupt from the iterable
            if upload is not None:
                upload.discard()
            raise
        return blocks.total

    def get(self, key: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Get Blob now (a missing key raises here), then CHUNK_SIZE ranges as they are read."""
        blob = self._blob(validate_key(key))
        if start < 0 or (end is not None and end < start):
            raise ValueError(f"invalid byte range: {start}-{end}")
        # No range for a whole object (the SDK reads an empty blob only without one); Azure
        # clamps a range past the object to its end.
        ranged = start > 0 or end is not None
        offset = start if ranged else None
        length = None if end is None else end - start + 1
        try:
            downloader = blob.download_blob(offset=offset, length=length, max_concurrency=1)
        except (AzureError, OSError) as exc:
            if isinstance(exc, ResourceNotFoundError) and _code(exc) in _NOT_FOUND_CODES:
                raise ObjectNotFound(key) from exc
            if isinstance(exc, HttpResponseError) and exc.status_code == 416:
                return iter(())  # the object exists and the range starts at or past its end
            raise self._translate(exc, "get", key) from exc
        return _Chunks(self, downloader.chunks(), key)

    def head(self, key: str) -> ObjectInfo | None:
        """Get Blob Properties: the size and time without the bytes; None when missing."""
        blob = self._blob(validate_key(key))
        properties = self._properties(blob, key)
        if properties is None:
            return None
        return ObjectInfo(
            key=key, size=int(properties.size), modified=_timestamp(properties.last_modified)
        )

    def delete(self, key: str) -> bool:
        """Delete Blob; False when there was none (a retried delete is no error)."""
        blob = self._blob(validate_key(key))
        try:
            blob.delete_blob()
        except (AzureError, OSError) as exc:
            if isinstance(exc, ResourceNotFoundError) and _code(exc) in _NOT_FOUND_CODES:
                return False
            raise self._translate(exc, "delete", key) from exc
        return True

    def list(self, prefix: str = "") -> Iterator[str]:
        """Every key under the prefix, from List Blobs pages; other names are skipped."""
        start = self._listing_prefix(validate_prefix(prefix))  # checked now, not on first next()
        return (key for key, _ in self._listing(start))

    def scan(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Sizes and times straight from the List Blobs pages: no request per object."""
        start = self._listing_prefix(validate_prefix(prefix))
        return (
            ObjectInfo(key=key, size=int(item.size), modified=_timestamp(item.last_modified))
            for key, item in self._listing(start)
        )

    def incomplete_uploads(
        self, prefix: str = "", *, started_before: float | None = None
    ) -> Iterator[IncompleteUpload]:
        """Blobs with staged blocks and nothing committed: what a writer killed mid-upload left.

        List Blobs with uncommitted blobs shows them as empty blobs; Get Blob Properties tells
        them from committed empty ones (it does not find them). Blocks staged over an existing
        object are not shown here: that object's next commit, or Azure after a week, drops them.
        """
        start = self._listing_prefix(validate_prefix(prefix))
        return self._incomplete(start, started_before)

    def abort_upload(self, upload: IncompleteUpload) -> bool:
        """Delete the blob of uncommitted blocks, unless an object was committed under it since."""
        return self._discard(self._blob(validate_key(upload.key)), upload.key) is True

    def check(self) -> None:
        """List one blob under the prefix: the container exists and we may read it."""
        with self._errors("check the container"):
            pages = self.container.list_blobs(name_starts_with=self.prefix, results_per_page=1)
            next(iter(pages.by_page()), None)

    def close(self) -> None:
        """Release the connection pool (and the credential's, for DefaultAzureCredential)."""
        with contextlib.suppress(Exception):
            self.service.close()
        if self._credential is not None:
            with contextlib.suppress(Exception):
                self._credential.close()

    # -- helpers -------------------------------------------------------------

    def _blob_name(self, key: str) -> str:
        name = self.prefix + _SEGMENT_FINAL_DOT.sub(".~", key)
        if name.count("/") + 1 > MAX_SEGMENTS:
            raise ValueError(f"azure storage: key {key!r} has more parts than Azure allows")
        return name

    def _blob(self, key: str) -> BlobClient:
        return self.container.get_blob_client(self._blob_name(key))

    def _listing_prefix(self, prefix: str) -> str:
        # A dot the prefix ends with may begin "a.b" as well as "a./": leave it unescaped.
        return self.prefix + _DOT_BEFORE_SLASH.sub(".~", prefix)

    def _key_of(self, name: str) -> str | None:
        """The key a blob name stores, or None for a blob that is not one of ours."""
        if not name.startswith(self.prefix):
            return None
        stored = name[len(self.prefix) :]
        key = stored.replace(".~", ".")
        try:
            validate_key(key)
        except ValueError:
            return None
        return key if _SEGMENT_FINAL_DOT.sub(".~", key) == stored else None

    def _listing(self, start: str, *, uncommitted: bool = False) -> Iterator[tuple[str, Any]]:
        include = ["uncommittedblobs"] if uncommitted else None
        with self._errors("list"):
            items = self.container.list_blobs(
                name_starts_with=start, include=include, results_per_page=LIST_PAGE_SIZE
            )
            for item in items:
                key = self._key_of(item.name)
                if key is not None:
                    yield key, item

    def _incomplete(self, start: str, started_before: float | None) -> Iterator[IncompleteUpload]:
        for key, item in self._listing(start, uncommitted=True):
            if item.size:
                continue  # committed: an uncommitted blob lists as empty
            started = _timestamp(item.creation_time or item.last_modified)
            if started_before is not None and (started is None or started >= started_before):
                continue
            blob = self._blob(key)
            if self._properties(blob, key) is not None:
                continue  # a committed empty object
            yield IncompleteUpload(
                key=key, upload_id=str(item.etag), started=started, size=self._staged(blob, key)
            )

    def _staged(self, blob: BlobClient, key: str) -> int | None:
        """The bytes of the blob's uncommitted blocks (None if it vanished meanwhile)."""
        try:
            _, uncommitted = blob.get_block_list("uncommitted")
        except (AzureError, OSError) as exc:
            if isinstance(exc, ResourceNotFoundError) and _code(exc) in _NOT_FOUND_CODES:
                return None
            raise self._translate(exc, "list the blocks of", key) from exc
        return sum(int(block.size) for block in uncommitted)

    def _properties(self, blob: BlobClient, key: str) -> Any:
        """Get Blob Properties, or None when no object is committed under the name."""
        try:
            return blob.get_blob_properties()
        except (AzureError, OSError) as exc:
            # Azure answers a HEAD with x-ms-error-code: a missing container is no missing blob.
            if isinstance(exc, ResourceNotFoundError) and _code(exc) in _NOT_FOUND_CODES:
                return None
            raise self._translate(exc, "head", key) from exc

    def _discard(self, blob: BlobClient, key: str) -> bool | None:
        """Delete the blob if it has nothing committed (conditional, see NEVER_MODIFIED).

        True: deleted; False: nothing to delete, or an object is committed under the name.
        """
        try:
            blob.delete_blob(if_unmodified_since=NEVER_MODIFIED)
        except ResourceModifiedError:
            return False  # a committed object: never ours to remove here
        except (AzureError, OSError) as exc:
            if isinstance(exc, ResourceNotFoundError) and _code(exc) in _NOT_FOUND_CODES:
                return False
            raise self._translate(exc, "abort the upload of", key) from exc
        return True

    @contextlib.contextmanager
    def _errors(self, action: str, key: str | None = None) -> Iterator[None]:
        """Turn SDK failures into the interface's exceptions, keeping the cause."""
        try:
            yield
        except (AzureError, OSError) as exc:
            raise self._translate(exc, action, key) from exc

    def _translate(self, exc: BaseException, action: str, key: str | None = None) -> StorageError:
        what = f"azure storage: cannot {action}" + (f" {key!r}" if key else "")
        if isinstance(exc, HttpResponseError) and exc.status_code:
            code, status = _code(exc), int(exc.status_code)
            if code == _NO_CONTAINER:
                return self._no_such_container()
            if status >= 500 or status in (408, 429) or code in _TRANSIENT_CODES:
                return StorageUnavailable(f"{what}: the account answered {code} (HTTP {status})")
            if status in (401, 403) or code in _DENIED_CODES:
                return StorageUnavailable(
                    f"{what}: access denied ({code}); check the credentials and that they hold "
                    f"Storage Blob Data Contributor on container {self.settings.container!r}"
                )
            return StorageError(f"{what}: the account answered {code} (HTTP {status})")
        if isinstance(exc, ClientAuthenticationError):  # no token: DefaultAzureCredential
            return StorageUnavailable(
                f"{what}: no usable Azure credential ({type(exc).__name__}: "
                f"{_masked(exc.message or str(exc))})"
            )
        # ServiceRequestError (refused, DNS, connect timeout), ServiceResponseError (reset,
        # read timeout), IncompleteReadError, socket errors...
        return StorageUnavailable(f"{what}: {type(exc).__name__}: {_masked(str(exc))}")

    def _no_such_container(self) -> StorageUnavailable:
        return StorageUnavailable(
            f"azure storage: container {self.settings.container!r} does not exist "
            "(CTXCLOUD_AZURE_CONTAINER)"
        )


def _timestamp(value: datetime | None) -> float | None:
    return value.timestamp() if value is not None else None


class _BlockUpload:
    """The blocks of one put(): staged under ids of its own, committed (or discarded) at the end."""

    __slots__ = ("_began", "_blob", "_ids", "_key", "_storage", "upload_id")

    def __init__(self, storage: AzureBlobStorage, blob: BlobClient, key: str) -> None:
        self._storage = storage
        self._blob = blob
        self._key = key
        self._ids: list[str] = []
        # Every block id of a blob must have one length; a random upload id keeps two
        # concurrent writers of one key from replacing each other's blocks.
        self.upload_id = uuid.uuid4().hex
        self._began: datetime | None = None  # the account's clock when our first block landed

    def stage(self, data: bytearray) -> None:
        """Put Block: the SDK has sent all of ``data`` when this returns, so it may be refilled."""
        if len(self._ids) >= MAX_BLOCKS:
            raise StorageError(
                f"azure storage: cannot put {self._key!r}: more than {MAX_BLOCKS} blocks of "
                f"{self._storage.settings.block_size} bytes; raise CTXCLOUD_AZURE_BLOCK_SIZE"
            )
        block_id = f"{self.upload_id}{len(self._ids):08d}"
        with self._storage._errors("put", self._key):
            headers = self._blob.stage_block(block_id, data, length=len(data))
        if self._began is None:
            self._began = headers.get("date") or datetime.now(UTC)
        self._ids.append(block_id)

    def commit(self) -> None:
        """Put Block List of our blocks, exactly those staged (never an older one of the name)."""
        blocks = [BlobBlock(block_id, BlockState.UNCOMMITTED) for block_id in self._ids]
        try:
            self._blob.commit_block_list(blocks)
        except HttpResponseError as exc:
            if _code(exc) != _INVALID_BLOCK_LIST:
                raise self._storage._translate(exc, "put", self._key) from exc
            if not self._superseded():
                raise StorageError(
                    f"azure storage: cannot put {self._key!r}: its staged blocks were dropped "
                    "(the upload was aborted, or the object deleted, while it was written)"
                ) from exc
            log.info(
                "azure storage: a concurrent put of the same key committed first; this one "
                "counts as overwritten by it",
                extra={"object_key": self._key},
            )
        except (AzureError, OSError) as exc:
            raise self._storage._translate(exc, "put", self._key) from exc

    def _superseded(self) -> bool:
        """Whether an object was committed under the key after our first block landed.

        Only a commit (Put Block List or Put Blob) or a delete drops a blob's uncommitted blocks
        before Azure's week is out; a delete leaves no object (or one committed later still), and
        both times come from the account's clock, to the second: a commit in that very second
        counts as one after our block, the only commit that could have dropped it.
        """
        properties = self._storage._properties(self._blob, self._key)
        if properties is None or self._began is None:
            return False
        return properties.last_modified >= self._began.replace(microsecond=0)

    def discard(self) -> None:
        """After a failure: drop the staged blocks if no object is committed under the key.

        Never raises, so it cannot mask the failure; what it leaves, Azure drops after a week
        (or the key's next commit does).
        """
        if not self._ids:
            return
        try:
            self._storage._discard(self._blob, self._key)
        except Exception as exc:
            log.warning(
                "azure storage: could not drop the blocks of a failed upload; Azure discards "
                "uncommitted blocks after a week, `ctxcloud storage gc` sooner",
                extra={"object_key": self._key, "error": type(exc).__name__},
            )


class _UnsizedStream:
    """A response body stream as the transport makes it, without ``__len__`` (see the module);
    the SDK may set attributes on it (it does: ``properties``)."""

    def __init__(self, stream: Iterator[bytes]) -> None:
        self._stream = stream

    def __iter__(self) -> _UnsizedStream:
        return self

    def __next__(self) -> bytes:
        return next(self._stream)

    def __getattr__(self, name: str) -> Any:  # .response, close()... of the SDK's generator
        return getattr(self._stream, name)


class _StreamedResponse(RestRequestsTransportResponse):
    # The SDK calls response.stream_download(), which azure-core's back-compat layer answers
    # with _stream_download(); tests/storage/test_azure.py fails if that stops being so.
    def _stream_download(self, pipeline: Any, **kwargs: Any) -> Iterator[bytes]:
        return _UnsizedStream(super()._stream_download(pipeline, **kwargs))


class _Transport(RequestsTransport):
    """azure-core's requests transport whose streamed responses have no length."""

    def send(self, request: Any, **kwargs: Any) -> Any:
        response = super().send(request, **kwargs)
        if kwargs.get("stream") and type(response) is RestRequestsTransportResponse:
            return _StreamedResponse(
                request=response.request,
                internal_response=response.internal_response,
                block_size=response.block_size,
            )
        return response


class _Chunks(Iterator[bytes]):
    """The get() stream: the SDK's ranged requests cut into CHUNK_SIZE pieces, their errors
    translated; close() stops it."""

    __slots__ = ("_chunks", "_key", "_pending", "_storage")

    def __init__(self, storage: AzureBlobStorage, chunks: Iterator[bytes], key: str) -> None:
        self._storage = storage
        self._chunks: Iterator[bytes] | None = chunks
        self._key = key
        self._pending: tuple[memoryview, int] | None = None

    def __iter__(self) -> _Chunks:
        return self

    def __next__(self) -> bytes:
        if self._pending is not None:
            view, offset = self._pending
            piece = bytes(view[offset : offset + CHUNK_SIZE])
            offset += len(piece)
            self._pending = (view, offset) if offset < len(view) else None
            return piece
        while self._chunks is not None:
            try:
                chunk = next(self._chunks)
            except StopIteration:
                break
            except ResourceModifiedError as exc:  # the downloader pins the first answer's ETag
                self.close()
                raise StorageError(
                    f"azure storage: {self._key!r} was replaced while it was being read"
                ) from exc
            except (AzureError, OSError) as exc:
                self.close()
                if isinstance(exc, ResourceNotFoundError) and _code(exc) in _NOT_FOUND_CODES:
                    raise StorageError(
                        f"azure storage: {self._key!r} was deleted while it was being read"
                    ) from exc
                raise self._storage._translate(exc, "read", self._key) from exc
            if len(chunk) > CHUNK_SIZE:
                self._pending = (memoryview(chunk), 0)
                return next(self)
            if chunk:
                return bytes(chunk)
        self.close()
        raise StopIteration

    def close(self) -> None:
        """Stop early, e.g. when a client disconnects mid-download: no further range is asked."""
        self._chunks = None
        self._pending = None
