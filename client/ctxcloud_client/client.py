"""`Client`: the ctxcloud HTTP API (v1) as Python methods, over one httpx connection pool."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx

from ctxcloud_client import errors
from ctxcloud_client.auth import BearerCredential, ClientCredentials, Credential
from ctxcloud_client.body import CHUNK_SIZE, BodyData, StreamedBody
from ctxcloud_client.models import (
    Changes,
    CommitPut,
    Entry,
    FeedChange,
    Manifest,
    NotModified,
    Project,
    Revision,
    Upload,
    UploadedBody,
    WrittenEntry,
)
from ctxcloud_client.paths import quote_entry_path, quote_segment
from ctxcloud_client.retry import (
    IDEMPOTENT_METHODS,
    RETRY_STATUSES,
    RetryPolicy,
    retry_after_seconds,
)

__version__ = "0.1.0"

API_PREFIX = "/api/v1"
DEFAULT_TIMEOUT = httpx.Timeout(60.0, connect=10.0)
DEFAULT_PAGE_SIZE = 100
# The changes feed: its largest page, and how much longer than a `wait` a read may take.
CHANGES_PAGE_SIZE = 1000
WAIT_READ_MARGIN = 30.0
USER_AGENT = f"ctxcloud-client/{__version__}"


class EntryStream:
    """An entry's bytes as they arrive: iterate for chunks; `entry` holds its headers (size,
    sha256, type, revision, ETag). Close it (or use `with`) if you stop before the end."""

    def __init__(self, response: httpx.Response, entry: Entry, chunk_size: int) -> None:
        self._response = response
        self.entry = entry
        self._chunk_size = chunk_size

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._response.iter_bytes(self._chunk_size)
        except httpx.TransportError as exc:
            raise errors.ConnectionFailed(f"The entry's body broke off: {exc}") from exc
        finally:
            self._response.close()

    def close(self) -> None:
        self._response.close()

    def __enter__(self) -> EntryStream:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class Client:
    """A client of one ctxcloud service, with one credential.

    `base_url` is the service's root (`http://host:8000`); the client adds `/api/v1`. Give
    exactly one credential: `api_key` (`ctx_...`), `token` (an access token), or `client_id`
    with `client_secret` (OAuth 2 client credentials: tokens are fetched from
    `/api/v1/oauth/token`, cached, renewed shortly before they expire and once on a 401).

    Retries: a 429 or 503 answer, and a connection error on an idempotent request (or one
    that never connected), are tried again up to `max_retries` times, waiting what
    `Retry-After` asks (else a short exponential backoff) but never more than `max_retry_wait`
    seconds in all; past that the error is raised. A request whose body cannot be sent twice
    (an iterator, or a file that cannot seek) is never retried. `sleep` is how the client
    waits (tests pass a fake). Thread-safe; use it as a context manager, or `close()` it.
    """

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        token: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        scope: str | None = None,
        timeout: float | httpx.Timeout = DEFAULT_TIMEOUT,
        max_retries: int = 3,
        max_retry_wait: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.BaseTransport | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        forms = [api_key is not None, token is not None, (client_id, client_secret) != (None, None)]
        if sum(forms) != 1:
            raise ValueError(
                "Give exactly one credential: api_key, token, or client_id with client_secret."
            )
        if (client_id is None) != (client_secret is None):
            raise ValueError("client_id and client_secret go together.")
        if scope is not None and client_id is None:
            raise ValueError("scope applies to client credentials only.")
        if max_retries < 0:
            raise ValueError("max_retries must be 0 or more.")
        self.base_url = base_url.rstrip("/")
        self.retry = RetryPolicy(max_retries=max_retries, max_wait=max_retry_wait)
        self._sleep = sleep
        self._http = httpx.Client(
            base_url=self.base_url + API_PREFIX,
            timeout=timeout,
            transport=transport,
            headers={"User-Agent": USER_AGENT, **(headers or {})},
            follow_redirects=False,
        )
        self.credential: Credential
        if client_id is not None and client_secret is not None:
            self.credential = ClientCredentials(
                client_id, client_secret, self._fetch_token, scope=scope, clock=clock
            )
        else:
            self.credential = BearerCredential(api_key if api_key is not None else token)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        return f"Client({self.base_url!r}, credential={self.credential!r})"

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    # ---- the caller ---------------------------------------------------------------------

    def whoami(self) -> dict[str, Any]:
        """Who the credential is: `{"type", "id", "tenant", "role", "permissions"}`."""
        answer: dict[str, Any] = self._json("GET", "/auth/whoami")
        return answer

    # ---- projects -----------------------------------------------------------------------

    def list_projects(self, *, page_size: int = DEFAULT_PAGE_SIZE) -> Iterator[Project]:
        """Every project the credential can see, oldest first, fetched a page at a time."""
        return self._paginate("/projects", page_size, Project.from_json)

    def get_project(self, project: str) -> Project:
        """A project by id or slug."""
        return Project.from_json(self._json("GET", self._project_url(project)))

    def create_project(
        self,
        name: str,
        *,
        slug: str | None = None,
        description: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Project:
        body = _without_none(
            name=name,
            slug=slug,
            description=description,
            metadata=dict(metadata) if metadata is not None else None,
        )
        return Project.from_json(self._json("POST", "/projects", json=body))

    def update_project(
        self,
        project: str,
        *,
        name: str | None = None,
        slug: str | None = None,
        description: str | None = None,
        metadata: Mapping[str, Any] | None = None,
    ) -> Project:
        """Change what is given; what is None stays."""
        body = _without_none(
            name=name,
            slug=slug,
            description=description,
            metadata=dict(metadata) if metadata is not None else None,
        )
        if not body:
            raise ValueError("Nothing to change: give name, slug, description or metadata.")
        return Project.from_json(self._json("PATCH", self._project_url(project), json=body))

    def delete_project(self, project: str) -> None:
        self._request("DELETE", self._project_url(project))

    # ---- the manifest -------------------------------------------------------------------

    def manifest(
        self,
        project: str,
        revision: int | None = None,
        prefix: str | None = None,
        include_content: bool = False,
        max_bytes: int | None = None,
        *,
        if_none_match: str | None = None,
    ) -> Manifest | NotModified:
        """The project's entries at the head (or at `revision`), optionally under `prefix`;
        with `include_content`, text entries inline up to `max_bytes` in all.

        Pass a previous manifest's `etag` as `if_none_match` to get `NotModified` (falsy)
        instead of the same manifest again.
        """
        params = _without_none(revision=revision, prefix=prefix, max_bytes=max_bytes)
        if include_content:
            params["include_content"] = "true"
        headers = {"If-None-Match": if_none_match} if if_none_match else {}
        response = self._request("GET", self._context_url(project), params=params, headers=headers)
        etag = response.headers.get("ETag")
        if response.status_code == 304:
            return NotModified(etag or if_none_match)
        return Manifest.from_json(response.json(), etag=etag)

    # ---- entries ------------------------------------------------------------------------

    def get_entry(self, project: str, path: str, revision: int | None = None) -> bytes:
        """An entry's bytes (whole, in memory: `stream_entry` or `download_entry` for large
        ones), checked against the SHA-256 the service sent."""
        with self.stream_entry(project, path, revision) as stream:
            data = b"".join(stream)
        _check_content(stream.entry, len(data), hashlib.sha256(data).hexdigest())
        return data

    def stream_entry(
        self,
        project: str,
        path: str,
        revision: int | None = None,
        *,
        chunk_size: int = CHUNK_SIZE,
    ) -> EntryStream:
        """An entry's bytes as an iterator of chunks; the request is made now, so an error
        (404, ...) is raised here, not on the first chunk."""
        response = self._request(
            "GET",
            self._entry_url(project, path),
            params=_without_none(revision=revision),
            stream=True,
        )
        return EntryStream(response, Entry.from_headers(path, response.headers), chunk_size)

    def download_entry(
        self,
        project: str,
        path: str,
        dest_path: str | os.PathLike[str],
        revision: int | None = None,
    ) -> Entry:
        """Stream an entry into `dest_path`: written to a temporary file beside it, checked
        against the size and SHA-256 the service sent, then renamed over `dest_path`. A
        download that fails leaves no partial file (and any old `dest_path` as it was)."""
        dest = Path(dest_path)
        digest = hashlib.sha256()
        size = 0
        with self.stream_entry(project, path, revision) as stream:
            handle, temp_name = tempfile.mkstemp(
                prefix=f".{dest.name}.", suffix=".part", dir=dest.parent
            )
            try:
                with os.fdopen(handle, "wb") as out:
                    for chunk in stream:
                        out.write(chunk)
                        digest.update(chunk)
                        size += len(chunk)
                    out.flush()
                    os.fsync(out.fileno())
                _check_content(stream.entry, size, digest.hexdigest())
                os.replace(temp_name, dest)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(temp_name)
                raise
        return stream.entry

    def put_entry(
        self,
        project: str,
        path: str,
        data: BodyData,
        *,
        content_type: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        if_match: str | None = None,
        if_none_match: str | None = None,
        sha256: str | None = None,
        size: int | None = None,
    ) -> WrittenEntry:
        """Write an entry from bytes, a binary file object or an iterator of bytes, streamed
        in chunks (a file is never read whole). `Content-SHA256` goes with it when known
        (given as `sha256`, or computed for bytes): the service then stores nothing on a
        mismatch. `if_match` (an ETag) and `if_none_match="*"` (create only) make the write
        conditional (`PreconditionFailed`). Without `content_type` the tenant's default
        applies. An iterator, or a file that cannot seek, is sent once: never retried."""
        body = StreamedBody(data, size)
        headers = body.headers()
        digest = sha256 or body.sha256()
        if digest:
            headers["Content-SHA256"] = digest
        if content_type:
            headers["Content-Type"] = content_type
        if metadata is not None:
            headers["Entry-Metadata"] = json.dumps(dict(metadata), separators=(",", ":"))
        if if_match:
            headers["If-Match"] = if_match
        if if_none_match:
            headers["If-None-Match"] = if_none_match
        response = self._request("PUT", self._entry_url(project, path), body=body, headers=headers)
        entry = Entry.from_json(response.json())
        return WrittenEntry(
            **{**vars(entry), "etag": response.headers.get("ETag") or entry.etag},
            created=response.status_code == 201,
        )

    def delete_entry(self, project: str, path: str, *, if_match: str | None = None) -> None:
        """Delete an entry (a new revision records it); `if_match` makes it conditional."""
        headers = {"If-Match": if_match} if if_match else {}
        self._request("DELETE", self._entry_url(project, path), headers=headers)

    # ---- commits and uploads ------------------------------------------------------------

    def commit(
        self,
        project: str,
        put: Iterable[CommitPut | Mapping[str, Any]] = (),
        delete: Iterable[str] = (),
        message: str | None = None,
        parent_revision: int | None = None,
    ) -> Revision:
        """Several puts and deletes as one revision, or nothing (`Conflict` when
        `parent_revision` is not the head any more). A put is a `CommitPut` or its dict:
        `{"path", "content" | "content_base64" | "upload_id", "content_type"?, "metadata"?}`.
        Not retried on a broken connection (a commit is not idempotent)."""
        body: dict[str, Any] = {
            "put": [CommitPut.coerce(item).to_json() for item in put],
            "delete": list(delete),
        }
        if message is not None:
            body["message"] = message
        if parent_revision is not None:
            body["parent_revision"] = parent_revision
        return Revision.from_json(
            self._json("POST", self._context_url(project) + "/commits", json=body)
        )

    def create_upload(self, project: str) -> Upload:
        """Stage an upload: fill it with `send_upload`, then name its `upload_id` in a commit's
        put (atomic commits of entries of any size)."""
        return Upload.from_json(self._json("POST", self._context_url(project) + "/uploads"))

    def send_upload(
        self,
        project: str,
        upload_id: str,
        data: BodyData,
        *,
        sha256: str | None = None,
        size: int | None = None,
    ) -> UploadedBody:
        """Send a staged upload's bytes, streamed as `put_entry` sends them (same retry rule)."""
        body = StreamedBody(data, size)
        headers = body.headers()
        digest = sha256 or body.sha256()
        if digest:
            headers["Content-SHA256"] = digest
        url = f"{self._context_url(project)}/uploads/{quote_segment(upload_id)}"
        response = self._request("PUT", url, body=body, headers=headers)
        return UploadedBody.from_json(response.json())

    # ---- revisions ----------------------------------------------------------------------

    def list_revisions(
        self, project: str, *, page_size: int = DEFAULT_PAGE_SIZE
    ) -> Iterator[Revision]:
        """The project's revisions, newest first, fetched a page at a time."""
        return self._paginate(
            self._context_url(project) + "/revisions", page_size, Revision.from_json
        )

    def get_revision(self, project: str, revision: int) -> Revision:
        url = f"{self._context_url(project)}/revisions/{int(revision)}"
        return Revision.from_json(self._json("GET", url))

    # ---- the changes feed (watching) ----------------------------------------------------

    def changes(
        self,
        project: str,
        since: int,
        *,
        wait: float | None = None,
        page_size: int = CHANGES_PAGE_SIZE,
    ) -> Changes:
        """Every path-level change of the revisions after `since`, in order (all pages).

        With `wait` (seconds, at most 60), a project still at `since` answers as soon as a
        change commits, or after `wait` with no changes (`revision` == `since`). Continue
        with `since=answer.revision`. A 410 (`history_pruned`) or 409 (`revision_ahead`)
        means the feed cannot bring a copy at `since` up to date: start from the manifest.
        A full server's 503 `too_many_watchers` is retried after its Retry-After.
        """
        url = self._context_url(project) + "/changes"
        timeout = None
        if wait is not None:
            read = float(wait) + WAIT_READ_MARGIN
            timeout = httpx.Timeout(read, connect=DEFAULT_TIMEOUT.connect)
        items: list[FeedChange] = []
        page: int | None = 1
        answer: Any = None
        while page is not None:
            params: dict[str, Any] = {"since": int(since), "page": page, "page_size": page_size}
            if wait is not None and page == 1:
                params["wait"] = wait
            response = self._request("GET", url, params=params, timeout=timeout)
            answer = response.json()
            found = [FeedChange.from_json(item) for item in answer.get("changes") or []]
            items.extend(found)
            page = _next_page(response, page) if len(found) >= page_size else None
        return Changes(
            from_revision=int(answer.get("from_revision", since)),
            revision=int(answer["revision"]),
            history_starts_at=int(answer.get("history_starts_at") or 0),
            changes=tuple(items),
        )

    # ---- plumbing -----------------------------------------------------------------------

    @staticmethod
    def _project_url(project: str) -> str:
        return f"/projects/{quote_segment(project)}"

    def _context_url(self, project: str) -> str:
        return self._project_url(project) + "/context"

    def _entry_url(self, project: str, path: str) -> str:
        return f"{self._context_url(project)}/entries/{quote_entry_path(path)}"

    def _json(self, method: str, url: str, **kwargs: Any) -> Any:
        return self._request(method, url, **kwargs).json()

    def _paginate(
        self, url: str, page_size: int, parse: Callable[[Mapping[str, Any]], Any]
    ) -> Iterator[Any]:
        page: int | None = 1
        while page is not None:
            response = self._request("GET", url, params={"page": page, "page_size": page_size})
            for item in response.json():
                yield parse(item)
            page = _next_page(response, page)

    def _fetch_token(self, form: dict[str, str], headers: dict[str, str]) -> dict[str, Any]:
        answer = self._request(
            "POST", "/oauth/token", form=form, headers=headers, authenticate=False
        ).json()
        if not isinstance(answer, dict) or not isinstance(answer.get("access_token"), str):
            raise errors.OAuthError(
                "The token endpoint answered without an access_token.",
                error="invalid_response",
                status=200,
                body=answer,
            )
        return answer

    def _request(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        form: Mapping[str, str] | None = None,
        body: StreamedBody | None = None,
        headers: Mapping[str, str] | None = None,
        stream: bool = False,
        authenticate: bool = True,
        timeout: httpx.Timeout | None = None,
    ) -> httpx.Response:
        """Send with the credential, retrying as the class says; an error answer raises."""
        attempt, waited, renewed = 0, 0.0, False
        replayable = body is None or body.rewindable
        while True:
            request_headers = dict(headers or {})
            if authenticate:
                request_headers.update(self.credential.headers())
            request = self._http.build_request(
                method,
                url,
                params=params,
                json=json,
                data=form,
                content=body.content() if body is not None else None,
                headers=request_headers,
                **({"timeout": timeout} if timeout is not None else {}),
            )
            try:
                response = self._http.send(request, stream=stream)
            except httpx.TransportError as exc:
                never_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout)
                delay = self.retry.delay(attempt, None)
                if (
                    replayable
                    and (never_sent or method in IDEMPOTENT_METHODS)
                    and self.retry.allows(attempt, waited, delay)
                ):
                    self._sleep(delay)
                    attempt, waited = attempt + 1, waited + delay
                    continue
                raise errors.ConnectionFailed(
                    f"{method} {request.url}: {exc.__class__.__name__}: {exc}"
                ) from exc
            status = response.status_code
            if (
                status == 401
                and authenticate
                and self.credential.refreshable
                and not renewed
                and replayable
            ):
                response.close()
                self.credential.invalidate()
                renewed = True
                continue
            if status in RETRY_STATUSES and replayable:
                delay = self.retry.delay(
                    attempt, retry_after_seconds(response.headers.get("Retry-After"))
                )
                if self.retry.allows(attempt, waited, delay):
                    response.close()
                    self._sleep(delay)
                    attempt, waited = attempt + 1, waited + delay
                    continue
            if status >= 400:
                try:
                    response.read()
                finally:
                    response.close()
                if not authenticate:
                    raise errors.oauth_error_from_response(response)
                raise errors.error_from_response(response)
            return response


def _without_none(**values: Any) -> dict[str, Any]:
    return {name: value for name, value in values.items() if value is not None}


def _next_page(response: httpx.Response, page: int) -> int | None:
    """The next page from flask-smorest's `X-Pagination` header; None after the last."""
    raw = response.headers.get("X-Pagination")
    if not raw:
        return None
    try:
        pagination = json.loads(raw)
    except ValueError:
        return None
    next_page = pagination.get("next_page") if isinstance(pagination, dict) else None
    return next_page if isinstance(next_page, int) and next_page > page else None


def _check_content(entry: Entry, size: int, sha256: str) -> None:
    if entry.sha256 and sha256 != entry.sha256.lower():
        raise errors.ContentMismatch(
            f"{entry.path}: received bytes hash to {sha256}, the service said {entry.sha256}."
        )
    if entry.size and size != entry.size:
        raise errors.ContentMismatch(
            f"{entry.path}: received {size} bytes, the service said {entry.size}."
        )
