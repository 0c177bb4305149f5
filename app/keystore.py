"""Per-tenant data keys: random 256-bit keys, stored only wrapped by a master key.

Destroying a tenant's row makes every object ever written for it unreadable
(crypto-shredding), whatever else a crashed deletion left behind.
"""

from __future__ import annotations

import threading
import time

import flask
import peewee

from ctxcloud.crypto import MasterKeyring, new_data_key
from ctxcloud.db import BaseModel, BytesField, utcnow
from ctxcloud.migrations import Migration

# How long a process may keep an unwrapped data key; bounds how long a destroyed key stays
# usable by another process that had it cached (this process forgets at once).
CACHE_SECONDS = 60.0


class TenantKeyDestroyed(Exception):
    """The tenant's data key was destroyed: its objects are unreadable by design."""


class TenantKey(BaseModel):
    tenant_id = peewee.CharField(primary_key=True, max_length=64)
    master_key_id = peewee.CharField(max_length=128)
    wrapped_key = BytesField()
    created_at = peewee.DateTimeField()
    rotated_at = peewee.DateTimeField(null=True)
    # Set when the key is destroyed; the row stays as a tombstone so no new key is ever made.
    destroyed_at = peewee.DateTimeField(null=True)

    class Meta:
        table_name = "ctxcloud_tenant_key"


def _context(tenant_id: str) -> bytes:
    return b"tenant:" + tenant_id.encode()


class Keystore:
    """Unwrapped data keys for one app, cached briefly per process."""

    def __init__(self, keyring: MasterKeyring) -> None:
        self.keyring = keyring
        self._cache: dict[str, tuple[bytes, float]] = {}
        self._lock = threading.Lock()

    def data_key(self, tenant_id: str) -> bytes:
        """The tenant's data key, created on first use; TenantKeyDestroyed after shredding."""
        cached = self._cache.get(tenant_id)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        row = TenantKey.get_or_none(TenantKey.tenant_id == tenant_id)
        if row is None:
            row = self._create(tenant_id)
        if row.destroyed_at is not None:
            raise TenantKeyDestroyed(tenant_id)
        key = self.keyring.unwrap(row.master_key_id, row.wrapped_key, _context(tenant_id))
        with self._lock:
            self._cache[tenant_id] = (key, time.monotonic() + CACHE_SECONDS)
        return key

    def _create(self, tenant_id: str) -> TenantKey:
        key_id, wrapped = self.keyring.wrap(new_data_key(), _context(tenant_id))
        now = utcnow()
        # Two processes may race to create it; the first insert wins and both use that one.
        TenantKey.insert(
            tenant_id=tenant_id, master_key_id=key_id, wrapped_key=wrapped, created_at=now
        ).on_conflict_ignore().execute()
        return TenantKey.get(TenantKey.tenant_id == tenant_id)

    def destroy(self, tenant_id: str) -> None:
        """Crypto-shred: overwrite the wrapped key and forget it; idempotent."""
        now = utcnow()
        updated = (
            TenantKey.update(wrapped_key=b"", master_key_id="", destroyed_at=now)
            .where(TenantKey.tenant_id == tenant_id)
            .execute()
        )
        if not updated:
            TenantKey.insert(
                tenant_id=tenant_id,
                master_key_id="",
                wrapped_key=b"",
                created_at=now,
                destroyed_at=now,
            ).on_conflict_ignore().execute()
        with self._lock:
            self._cache.pop(tenant_id, None)

    def rotate_master(self) -> int:
        """Re-wrap every live data key under the active master key; objects are untouched."""
        active = self.keyring.active_id
        rotated = 0
        query = TenantKey.select().where(
            TenantKey.destroyed_at.is_null(), TenantKey.master_key_id != active
        )
        for row in query:
            key_id, wrapped = self.keyring.rewrap(
                row.master_key_id, row.wrapped_key, _context(row.tenant_id)
            )
            TenantKey.update(
                master_key_id=key_id,
                wrapped_key=wrapped,
                rotated_at=utcnow(),
            ).where(
                TenantKey.tenant_id == row.tenant_id,
                TenantKey.master_key_id == row.master_key_id,
            ).execute()
            rotated += 1
        return rotated

    def master_keys_in_use(self) -> dict[str, int]:
        """How many live data keys each master key wraps: an old key may go once its count is 0."""
        rows = (
            TenantKey.select(TenantKey.master_key_id, peewee.fn.COUNT(TenantKey.tenant_id))
            .where(TenantKey.destroyed_at.is_null())
            .group_by(TenantKey.master_key_id)
            .tuples()
        )
        return dict(rows)


def current_keystore() -> Keystore:
    return flask.current_app.extensions["ctxcloud"].keystore


def _create_tenant_keys(migrator, db) -> None:
    class FrozenTenantKey(peewee.Model):
        tenant_id = peewee.CharField(primary_key=True, max_length=64)
        master_key_id = peewee.CharField(max_length=128)
        wrapped_key = peewee.BlobField()
        created_at = peewee.DateTimeField()
        rotated_at = peewee.DateTimeField(null=True)
        destroyed_at = peewee.DateTimeField(null=True)

        class Meta:
            database = db
            table_name = "ctxcloud_tenant_key"

    db.create_tables([FrozenTenantKey])


MIGRATIONS = [Migration("core.0001_tenant_keys", _create_tenant_keys)]
