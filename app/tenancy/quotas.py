"""Quota enforcement that is exact under concurrency.

Each check runs in the transaction of the write it guards, under a lock on the tenant's
usage row (``FOR UPDATE`` on PostgreSQL; SQLite's write transactions are already serial),
so two writers can never both take the last unit. Counts (projects, users, API keys) are
counted under that lock; stored bytes are a counter in the same row, raised and lowered by
the writes themselves, so reading it is exact and cheap.

Stored bytes are the plaintext sizes of every entry version still kept (history included):
replacing an entry adds the new version's bytes; pruning old revisions, deleting a project
or deleting the tenant frees them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ctxcloud.db import PreparedWrite, for_update
from ctxcloud.errors import Forbidden
from ctxcloud.tenancy.models import TenantUsage

# "No limit" for byte counts that must be a number (the largest BIGINT).
UNLIMITED_BYTES = 2**63 - 1


class QuotaExceeded(Forbidden):
    """403 `quota_exceeded`, with the `quota`, its `limit` and what the tenant `used`."""

    code = "quota_exceeded"


def _ensure(tenant_id: str) -> None:
    TenantUsage.insert(tenant_id=tenant_id, storage_bytes=0).on_conflict_ignore().execute()


def lock(tenant_id: str) -> TenantUsage:
    """Hold the tenant's usage row until the transaction ends (call inside one)."""

    def locked() -> TenantUsage | None:  # a new query each time: peewee caches results
        return for_update(TenantUsage.select().where(TenantUsage.tenant_id == tenant_id)).first()

    row = locked()
    if row is None:
        _ensure(tenant_id)  # waits for a concurrent creator's commit on PostgreSQL
        row = locked()
    return row


def open_usage(tenant_id: str) -> None:
    """Create the tenant's usage row (with the tenant; later writes only update it)."""
    _ensure(tenant_id)


def refuse(name: str, limit: int, used: int, detail: str) -> QuotaExceeded:
    return QuotaExceeded(detail, quota=name, limit=limit, used=used)


def check_count(tenant: Any, name: str, count: Callable[[], int], adding: int = 1) -> None:
    """403 quota_exceeded unless `adding` more fit under quota `name` (inside the write's
    transaction, which then holds the tenant's usage lock)."""
    limit = tenant.quota(name)
    if limit is None:
        return
    lock(tenant.id)
    used = count()
    if used + adding > limit:
        raise refuse(name, limit, used, f"The tenant's {name} quota ({limit}) is reached.")


def storage_bytes(tenant_id: str) -> int:
    row = TenantUsage.get_or_none(TenantUsage.tenant_id == tenant_id)
    return row.storage_bytes if row else 0


def storage_left(tenant: Any) -> int | None:
    """Bytes the tenant may still store (None: unlimited); a hint, the write re-checks."""
    limit = tenant.quota("max_storage_bytes")
    return None if limit is None else max(0, limit - storage_bytes(tenant.id))


# Every write counts its bytes: the statements are built once (PreparedWrite).
_ADD = PreparedWrite(
    lambda size, tenant_id: TenantUsage.update(
        storage_bytes=TenantUsage.storage_bytes + size
    ).where(TenantUsage.tenant_id == tenant_id),
    [None, None],
)
_ADD_WITHIN = PreparedWrite(
    lambda size, tenant_id, size_again, limit: TenantUsage.update(
        storage_bytes=TenantUsage.storage_bytes + size
    ).where(TenantUsage.tenant_id == tenant_id, TenantUsage.storage_bytes + size_again <= limit),
    [None, None, None, None],
)


def add_storage(tenant: Any, size: int) -> None:
    """Count `size` more stored bytes, or 403 quota_exceeded past max_storage_bytes.

    One conditional UPDATE: it takes the row lock, and PostgreSQL re-evaluates the condition
    on the newest row after waiting for it, so concurrent writers cannot overshoot.
    """
    limit = tenant.quota("max_storage_bytes")

    def counted() -> bool:
        if limit is None:
            return bool(_ADD.execute(size, tenant.id))
        return bool(_ADD_WITHIN.execute(size, tenant.id, size, limit))

    if counted():
        return
    # No row yet, or one a concurrent first write has not committed: make sure it exists
    # (waiting for that writer), then the condition alone decides.
    _ensure(tenant.id)
    if not counted():
        raise no_space(tenant, size)


def no_space(tenant: Any, size: int) -> QuotaExceeded:
    """The refusal of `size` more bytes that do not fit the tenant's storage quota."""
    limit = tenant.quota("max_storage_bytes")
    used = storage_bytes(tenant.id)
    return refuse(
        "max_storage_bytes",
        limit,
        used,
        f"Storing {size} more bytes would pass the tenant's storage quota of {limit} bytes "
        f"({used} used).",
    )


def release_storage(tenant_id: str, size: int) -> None:
    """Count `size` bytes as freed (inside the transaction that deletes them)."""
    if size:
        TenantUsage.update(storage_bytes=TenantUsage.storage_bytes - size).where(
            TenantUsage.tenant_id == tenant_id
        ).execute()


def forget(tenant_id: str) -> None:
    TenantUsage.delete().where(TenantUsage.tenant_id == tenant_id).execute()
