"""The rules every entry write obeys, checked in one place, once per write.

An entry PUT and every put of a commit pass through `admit` before a byte is stored:

1. the path (400 `invalid_path`; kept in NFC, the form every lookup uses);
2. the content type against the tenant's `allowed_content_types` (415);
3. the size the client announced against the tenant's `max_entry_bytes` (413), and the
   announced sizes together against what `max_storage_bytes` leaves (403 `quota_exceeded`);
4. the bytes as they stream: a write that passes `max_entry_bytes`, or writes that together
   pass the storage left, stop at the first chunk too many (413 / 403) and store nothing.

The storage quota is checked once more, exactly, inside the transaction that records the
write (the context service, under the tenant's usage lock): this is the early refusal.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from ctxcloud import UnsupportedMediaType, tenancy
from ctxcloud.plugins.context import options
from ctxcloud.plugins.context.options import DEFAULT_CONTENT_TYPE
from ctxcloud.plugins.context.paths import UnsafePath, quoted, validate_path
from ctxcloud.plugins.context.problems import EntryTooLarge, InvalidPath


@dataclass(frozen=True)
class EntryWrite:
    """One entry to store: path, bytes (as chunks), type and metadata."""

    path: str
    chunks: Iterable[bytes]
    content_type: str = DEFAULT_CONTENT_TYPE
    metadata: dict[str, Any] = field(default_factory=dict)
    # The size announced before the bytes arrive (Content-Length), to refuse early.
    size_hint: int | None = None
    # A commit's put of staged bytes (an upload, already checked and stored): no chunks.
    upload_id: str | None = None


def entry_limit(tenant: Any) -> int:
    """The largest entry the tenant may write (its max_entry_bytes quota)."""
    limit = tenant.quota("max_entry_bytes") if tenant is not None else None
    return tenancy.UNLIMITED_BYTES if limit is None else limit


def admit(tenant: Any, writes: list[EntryWrite], *, named: bool = False) -> list[EntryWrite]:
    """The writes, checked, their paths in NFC and their chunks bounded (see the module).

    `named`: problems name the path (a commit's several writes), as `'a/b': ...`.
    """
    limit = entry_limit(tenant)
    admitted = []
    for write in writes:
        path = _path(write.path, named)
        _check_type(tenant, write.content_type)
        if write.size_hint is not None and write.size_hint > limit:
            raise _too_large(path, limit, named)
        admitted.append(replace(write, path=path))
    space = tenancy.storage_left(tenant) if tenant is not None else None
    announced = sum(write.size_hint or 0 for write in admitted)
    if space is not None and announced > space:
        raise tenancy.no_space(tenant, announced)
    budget = _Budget(tenant, space)
    return [
        replace(write, chunks=budget.bounded(write.chunks, limit, write.path, named))
        for write in admitted
    ]


def admit_upload(tenant: Any, chunks: Iterable[bytes], size_hint: int | None) -> Iterator[bytes]:
    """An upload's bytes, bounded as an entry's are (rules 3 and 4): it becomes an entry."""
    limit = entry_limit(tenant)
    if size_hint is not None and size_hint > limit:
        raise _too_large("", limit, named=False)
    space = tenancy.storage_left(tenant) if tenant is not None else None
    if space is not None and (size_hint or 0) > space:
        raise tenancy.no_space(tenant, size_hint or 0)
    return _Budget(tenant, space).bounded(chunks, limit, "", named=False)


def _path(path: str, named: bool) -> str:
    try:
        return validate_path(path)
    except UnsafePath as exc:
        if not named:
            raise
        raise UnsafePath(f"{quoted(path)}: {exc.detail}", exc.path) from None
    except InvalidPath as exc:
        if not named:
            raise
        raise InvalidPath(f"{quoted(path)}: {exc.detail}") from None


def _check_type(tenant: Any, content_type: str) -> None:
    if tenant is not None and not options.allows_content_type(tenant, content_type):
        base = content_type.split(";", 1)[0].strip()
        raise UnsupportedMediaType(
            f"The tenant allows no entries of type {base!r}.",
            allowed=tenant.setting("allowed_content_types"),
        )


def _too_large(path: str, limit: int, named: bool) -> EntryTooLarge:
    if named:
        return EntryTooLarge(f"{quoted(path)} is larger than {limit} bytes.")
    return EntryTooLarge(f"The entry is larger than the limit of {limit} bytes.")


class _Budget:
    """The storage a request's writes may still take, spent as their bytes stream."""

    def __init__(self, tenant: Any, space: int | None) -> None:
        self.tenant = tenant
        self.space = space
        self.spent = 0

    def bounded(
        self, chunks: Iterable[bytes], limit: int, path: str, named: bool
    ) -> Iterator[bytes]:
        size = 0
        for chunk in chunks:
            size += len(chunk)
            if size > limit:
                raise _too_large(path, limit, named)
            self.spent += len(chunk)
            if self.space is not None and self.spent > self.space:
                raise tenancy.no_space(self.tenant, self.spent)
            yield chunk
