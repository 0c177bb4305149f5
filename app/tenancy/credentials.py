"""How a revocation reaches every process while credentials are verified from memory.

Each process keeps the credentials it verified (``CredentialCache``) so a request needs no
database query. Each tenant (and the platform, for platform keys) has a **generation**
counter shared by every process: anything that can make a cached credential wrong
(revoking a key or a login, changing or deleting a user, suspending or deleting a tenant)
raises the tenant's generation *after* its transaction commits. A cached credential is used
only while the generation it was verified under is still current, and a verifier reads the
generation *before* it reads the database, so a stale entry can never be stored as fresh.

Without Redis the counters live in a small memory-mapped file in the data directory, exact
for every process on the host at once (the embedded default, gunicorn workers included).

With ``REDIS_URL`` they live in Redis, and each process mirrors the ones it reads
(``GenerationMirror``), so a request reads its generation from memory, not from Redis: a
raise is published on a channel in the same transaction, and a subscriber thread per process
forgets the mirrored value on hearing it (the next read fetches it). The subscriber pings
through its subscription every ``REVOCATION_MAX_DELAY / 4`` seconds; the mirror is trusted
only while a ping sent less than ``REVOCATION_MAX_DELAY`` seconds ago has come back, and
every message published before that ping was read before its answer. So a revocation
reaches every process within ``REVOCATION_MAX_DELAY`` (0.5 s) whatever happens to the
subscription (usually within a millisecond: the time the message takes), and the process
that made the change applies it at once. While the mirror is not trusted (starting,
reconnecting, a subscriber left behind) each read goes to Redis, as it would without the
mirror; an unreachable Redis fails closed (503).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import math
import mmap
import os
import struct
import threading
import time
import weakref
import zlib
from dataclasses import dataclass
from typing import Any, Protocol

import flask
import redis

from ctxcloud import errors
from ctxcloud.settings import ConfigError

log = logging.getLogger("ctxcloud.credentials")
EXTENSION = "ctxcloud.credentials"
PLATFORM_SCOPE = "platform"
GENERATIONS_FILE = "credential-generations"


def scope_of(tenant_id: str | None) -> str:
    """The generation a credential belongs to: its tenant's, or the platform's."""
    return tenant_id or PLATFORM_SCOPE


class Generations(Protocol):
    def current(self, scope: str) -> int: ...

    def bump(self, scope: str) -> None: ...


class GenerationMirror:
    """This process's copy of the generations it read from Redis, and how far to trust it.

    ``heard_at`` is when (``time.monotonic()``) the subscriber sent the last ping whose answer
    it has read: every raise published before then has been applied. Values are learned from
    reads and forgotten on every message; ``epoch`` moves on each forgetting and each
    (re)subscription, so a read that raced one of them is not learned.
    """

    MAX_VALUES = 100_000

    def __init__(self, max_delay: float) -> None:
        self.max_delay = max_delay
        self.values: dict[str, int] = {}
        self.epoch = 0
        self.synced = False
        self.heard_at = -math.inf
        self.lock = threading.Lock()
        self.clock = time.monotonic  # the subscriber's clock

    def get(self, scope: str) -> int | None:
        """The mirrored generation, or None: unknown, or the mirror may be behind."""
        if not self.synced or self.clock() - self.heard_at > self.max_delay:
            return None
        return self.values.get(scope)

    def learn(self, scope: str, value: int, epoch: int) -> None:
        """Keep a value read from Redis, unless something was forgotten since `epoch`."""
        with self.lock:
            if self.synced and self.epoch == epoch:
                if len(self.values) >= self.MAX_VALUES:
                    self.values.clear()
                self.values[scope] = value

    def forget(self, scope: str) -> None:
        with self.lock:
            self.values.pop(scope, None)
            self.epoch += 1

    def subscribed(self, sent_at: float) -> None:
        """The subscription is confirmed (its request sent at `sent_at`): start afresh."""
        with self.lock:
            self.values.clear()
            self.epoch += 1
            self.synced = True
            self.heard_at = sent_at

    def heard(self, sent_at: float) -> None:
        self.heard_at = max(self.heard_at, sent_at)

    def lost(self) -> None:
        with self.lock:
            self.values.clear()
            self.epoch += 1
            self.synced = False


class RedisGenerations:
    """Counters in Redis, read through this process's mirror (see the module docstring)."""

    def __init__(self, client: redis.Redis, prefix: str, max_delay: float = 0.5) -> None:
        self.client = client
        self.prefix = f"{prefix}credgen:"
        # Channels are not per database: the database index keeps deployments apart.
        database = client.connection_pool.connection_kwargs.get("db", 0)
        self.channel = f"{prefix}credgen@{database}"
        self.mirror = GenerationMirror(max_delay)
        self._subscriber_pid: int | None = None
        self._lock = threading.Lock()

    def current(self, scope: str) -> int:
        if self._subscriber_pid != os.getpid():
            self._subscribe()
        value = self.mirror.get(scope)
        if value is not None:
            return value
        epoch = self.mirror.epoch
        try:
            value = int(self.client.get(self.prefix + scope) or 0)
        except redis.RedisError as exc:
            # Fail closed: without the counter a revoked credential could pass.
            raise errors.Unavailable("The credential store is unavailable.") from exc
        self.mirror.learn(scope, value, epoch)
        return value

    def bump(self, scope: str) -> None:
        try:
            pipe = self.client.pipeline(transaction=True)
            pipe.incr(self.prefix + scope)
            pipe.publish(self.channel, scope)
            pipe.execute()
        except redis.RedisError as exc:
            raise errors.Unavailable(
                "The change is saved but the credential store is unavailable; cached "
                "credentials expire within AUTH_CACHE_TTL seconds."
            ) from exc
        finally:
            self.mirror.forget(scope)  # this process applies its own change at once

    def _subscribe(self) -> None:
        """Start this process's subscriber (again after a fork: threads do not survive it)."""
        with self._lock:
            if self._subscriber_pid == os.getpid():
                return
            self.mirror.lost()
            thread = threading.Thread(
                target=_subscriber,
                args=(weakref.ref(self), self.mirror, self.client, self.channel),
                name="ctxcloud-credential-generations",
                daemon=True,
            )
            thread.start()
            self._subscriber_pid = os.getpid()


def _subscriber(
    owner: weakref.ref, mirror: GenerationMirror, client: redis.Redis, channel: str
) -> None:
    """Forget every raised generation as it is published, and ping to show the mirror is
    current; on any failure, distrust the mirror and subscribe again. Ends with its owner
    (its app), so apps built and dropped (tests) leave no thread behind."""
    pool = client.connection_pool
    own = redis.Redis(
        connection_pool=redis.ConnectionPool(
            connection_class=pool.connection_class, max_connections=1, **pool.connection_kwargs
        )
    )
    interval = mirror.max_delay / 4
    pause = threading.Event()
    backoff = interval
    while owner() is not None:
        pubsub = own.pubsub()
        try:
            sent_at = time.monotonic()
            pubsub.subscribe(channel)
            next_ping = 0.0
            while owner() is not None:
                now = time.monotonic()
                if now >= next_ping:
                    pubsub.ping(repr(now))
                    next_ping = now + interval
                message = pubsub.get_message(timeout=max(0.0, next_ping - now))
                if message is not None:
                    _apply(message, mirror, sent_at)
                    backoff = interval
                answered_at = mirror.heard_at if mirror.synced else sent_at
                if time.monotonic() - answered_at > 4 * mirror.max_delay:
                    raise TimeoutError("the subscription stopped answering")
        except Exception:  # whatever broke: distrust the mirror and subscribe again
            if mirror.synced:
                log.warning("credential generation subscriber lost; reading Redis meanwhile")
            mirror.lost()
            pause.wait(backoff)
            backoff = min(backoff * 2, 5.0)
        finally:
            with contextlib.suppress(Exception):  # closing a broken connection
                pubsub.close()
    own.close()


def _apply(message: dict[str, Any], mirror: GenerationMirror, subscribed_at: float) -> None:
    kind, data = message.get("type"), message.get("data")
    if isinstance(data, bytes):
        data = data.decode()
    if kind == "message":
        mirror.forget(str(data))
    elif kind == "pong":
        with contextlib.suppress(TypeError, ValueError):  # not redis-py's own health check
            mirror.heard(float(data))
    elif kind == "subscribe":
        mirror.subscribed(subscribed_at)


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


def _max_delay(config: flask.Config) -> float:
    value = config["REVOCATION_MAX_DELAY"]
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        seconds = 0.0
    if not 0 < seconds < math.inf:
        raise ConfigError(f"CTXCLOUD_REVOCATION_MAX_DELAY={value!r} is not a positive number")
    return seconds


def init_credentials(app: flask.Flask) -> Credentials:
    """Redis counters when configured, else the data directory's file; kept per app."""
    ext = app.extensions["ctxcloud"]
    if ext.redis is not None:
        generations: Generations = RedisGenerations(
            ext.redis, app.config["REDIS_KEY_PREFIX"], max_delay=_max_delay(app.config)
        )
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
