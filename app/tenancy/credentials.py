"""How a revocation reaches every process at once while credentials are verified from memory.

Each process keeps the credentials it verified (``CredentialCache``) so a request needs no
database query. Each tenant (and the platform, for platform keys) has a **generation**
counter shared by every process: anything that can make a cached credential wrong
(revoking a key or a login, changing or deleting a user, suspending or deleting a tenant)
raises the tenant's generation *after* its transaction commits. A cached credential is used
only while the generation it was verified under is still current, and a verifier reads the
generation *before* it reads the database, so a stale entry can never be stored as fresh.

With ``REDIS_URL`` the counters live in Redis (one GET per request, every host; read in the
rate limiter's own round trip when the limiter is on, see ``ctxcloud.auth.deferred_checks``).
Without it they live in a small memory-mapped file in the data directory, exact for every
process on the host (the embedded default, gunicorn workers included).
"""

from __future__ import annotations

import fcntl
import mmap
import os
import struct
import zlib
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol

import flask
import redis

from ctxcloud import errors
from ctxcloud.auth import DeferredCheck, deferred_checks

EXTENSION = "ctxcloud.credentials"
PLATFORM_SCOPE = "platform"
GENERATIONS_FILE = "credential-generations"


def scope_of(tenant_id: str | None) -> str:
    """The generation a credential belongs to: its tenant's, or the platform's."""
    return tenant_id or PLATFORM_SCOPE


class Generations(Protocol):
    def current(self, scope: str) -> int: ...

    def bump(self, scope: str) -> None: ...


class RedisGenerations:
    """Counters in Redis: every process on every host sees a bump on its next request."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.client = client
        self.prefix = f"{prefix}credgen:"

    def redis_key(self, scope: str) -> str:
        """The counter's key, for a caller reading it in its own round trip (the limiter)."""
        return self.prefix + scope

    def current(self, scope: str) -> int:
        try:
            value = self.client.get(self.prefix + scope)
        except redis.RedisError as exc:
            # Fail closed: without the counter a revoked credential could pass.
            raise errors.Unavailable("The credential store is unavailable.") from exc
        return int(value or 0)

    def bump(self, scope: str) -> None:
        try:
            self.client.incr(self.prefix + scope)
        except redis.RedisError as exc:
            raise errors.Unavailable(
                "The change is saved but the credential store is unavailable; cached "
                "credentials expire within AUTH_CACHE_TTL seconds."
            ) from exc


class FileGenerations:
    """Counters in a memory-mapped file: exact for every process on this host, no I/O to read.

    Scopes hash into a fixed number of slots; two tenants sharing a slot only cost each other
    an occasional cache reload.
    """

    SLOTS = 4096
    SIZE = SLOTS * 8

    def __init__(self, path: str) -> None:
        self.path = path
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < self.SIZE:
                os.ftruncate(fd, self.SIZE)  # extending keeps what another process wrote
            self.map = mmap.mmap(fd, self.SIZE)
        finally:
            os.close(fd)

    def _offset(self, scope: str) -> int:
        return (zlib.crc32(scope.encode()) % self.SLOTS) * 8

    def current(self, scope: str) -> int:
        return struct.unpack_from("<Q", self.map, self._offset(scope))[0]

    def bump(self, scope: str) -> None:
        offset = self._offset(scope)
        with open(self.path, "rb") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            value = struct.unpack_from("<Q", self.map, offset)[0]
            struct.pack_into("<Q", self.map, offset, (value + 1) % 2**64)


@dataclass
class CachedCredential:
    """A verification result: the Actor (None: refused) and under which generation it holds."""

    actor: Any
    scope: str
    generation: int
    fresh_until: float
    # The credential's own expiry (epoch seconds), checked on every use.
    expires_at: float | None = None
    # Last time this process wrote the credential's last-used time (API keys).
    last_used_written: float = 0.0


class CredentialCache:
    """Verified credentials of this process, valid while their generation is current."""

    def __init__(self, generations: Generations, ttl: float, max_entries: int) -> None:
        self.generations = generations
        self.ttl = ttl
        self.max_entries = max_entries
        self.entries: dict[str, CachedCredential] = {}

    def get(self, key: str, now: float) -> CachedCredential | None:
        """The entry for `key` if still fresh and verified under the current generation."""
        entry = self.entries.get(key)
        if entry is None or now >= entry.fresh_until:
            return None
        deferred = deferred_checks()
        redis_key = getattr(self.generations, "redis_key", None)
        if deferred is not None and redis_key is not None:
            # The limiter reads the generation in its own Redis round trip and, if it moved,
            # forgets this entry and authenticates again before the actor is used.
            deferred.append(
                DeferredCheck(redis_key(entry.scope), entry.generation, partial(self.forget, key))
            )
            return entry
        if self.generations.current(entry.scope) != entry.generation:
            return None
        return entry

    def forget(self, key: str) -> None:
        self.entries.pop(key, None)

    def put(
        self,
        key: str,
        actor: Any,
        scope: str,
        generation: int,
        now: float,
        expires_at: float | None = None,
    ) -> CachedCredential:
        if len(self.entries) >= self.max_entries:
            self.entries.clear()
        entry = CachedCredential(actor, scope, generation, now + self.ttl, expires_at)
        self.entries[key] = entry
        return entry


@dataclass
class Credentials:
    """The app's generation counters and one cache per credential kind."""

    generations: Generations
    ttl: float
    max_entries: int
    caches: dict[str, CredentialCache]

    def cache(self, kind: str) -> CredentialCache:
        cache = self.caches.get(kind)
        if cache is None:
            cache = self.caches[kind] = CredentialCache(
                self.generations, self.ttl, self.max_entries
            )
        return cache


def init_credentials(app: flask.Flask) -> Credentials:
    """Redis counters when configured, else the data directory's file; kept per app."""
    ext = app.extensions["ctxcloud"]
    if ext.redis is not None:
        generations: Generations = RedisGenerations(ext.redis, app.config["REDIS_KEY_PREFIX"])
    else:
        generations = FileGenerations(os.path.join(app.config["DATA_DIR"], GENERATIONS_FILE))
    credentials = Credentials(
        generations=generations,
        ttl=float(app.config["AUTH_CACHE_TTL"]),
        max_entries=int(app.config["AUTH_CACHE_MAX_ENTRIES"]),
        caches={},
    )
    app.extensions[EXTENSION] = credentials
    return credentials


def credentials() -> Credentials:
    """The current app's credential state (built by the core's tenancy at start-up)."""
    return flask.current_app.extensions[EXTENSION]


def credential_cache(kind: str) -> CredentialCache:
    """This process's cache of verified credentials of one kind ("api_key", "jwt"...)."""
    return credentials().cache(kind)


def credentials_changed(tenant_id: str | None) -> None:
    """Call after committing anything that invalidates the tenant's cached credentials."""
    credentials().generations.bump(scope_of(tenant_id))
