"""Per-process caches of a tenant's hot rows, exact for every process at once.

A hot read (a project by slug, an entry's head version) is the same row request after
request, and on PostgreSQL each read is a round trip. A plugin may keep such rows in a
``TenantDataCache`` (``tenant_data_cache(name)``) instead. Each tenant has a **data
generation**, a counter shared by every process: whoever changes data that may be cached
raises it *after* the change commits and *before* answering (``tenant_data_changed``). A
cached value is used only while its tenant's generation is the one it was read under, and
the generation is read before the database is, so a stale row can never be stored as fresh.

Where the generation is read:

- **Without Redis** (the embedded default): a memory-mapped counter file in the data
  directory, as the credential generations are (``FileGenerations``): exact for every
  process on the host at once, no I/O to read. Read at each lookup.
- **With Redis**: once per request and tenant, remembered for the rest of the request. The
  request pipeline announces the caller's tenant to the rate limiter, whose one script per
  request reads the counter beside spending the windows: still one Redis round trip per
  request (``ctxcloud.ratelimit_storage``). A request that did not read it there (no rate
  limiting, another tenant) reads it on first use (one ``GET``). A client that was told of a
  change was told after the raise, so any request it sends next, to any process, reads the
  raised value: reads are never older than an acknowledged write. (A request that waits for
  a change, a long poll, must not trust a value read before it waited: it reads the
  database, ``TenantDataCache.get(..., cached=False)``.) Counters start at a random value
  (``SET NX``): a Redis that lost its data (it keeps none on disk) never gives back a value
  a process cached under before. A Redis that cannot answer leaves the caches unused
  (database reads) until it answers again.

Entries also expire after ``DATA_CACHE_TTL`` seconds: the bound on staleness if a raise could
not reach Redis after its change committed (the change stands; the failure is logged).
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import flask
import redis

from ctxcloud.settings import ConfigError
from ctxcloud.tenancy.credentials import FileGenerations

log = logging.getLogger("ctxcloud.data_cache")
EXTENSION = "ctxcloud.data_cache"
GENERATIONS_FILE = "data-generations"
# This request's generations read from Redis (tenant id -> value, None: unreadable).
_MEMO = "ctxcloud_data_generations"

T = TypeVar("T")


class DataGenerations(Protocol):
    def current(self, tenant_id: str) -> int | None: ...

    def bump(self, tenant_id: str) -> None: ...

    def announced(self, tenant_id: str) -> dict[str, str]: ...

    def prefetched(self, tenant_id: str, values: dict[str, Any]) -> None: ...


class FileDataGenerations:
    """The host's memory-mapped counters: read live, nothing to announce."""

    def __init__(self, path: str) -> None:
        self.counters = FileGenerations(path)

    def current(self, tenant_id: str) -> int | None:
        return self.counters.current(tenant_id)

    def bump(self, tenant_id: str) -> None:
        self.counters.bump(tenant_id)

    def announced(self, tenant_id: str) -> dict[str, str]:
        return {}

    def prefetched(self, tenant_id: str, values: dict[str, Any]) -> None:
        return None


# Each counter created at its seed if missing, then read (values as strings: a Lua number is
# a double, which would round a 62-bit counter).
READ = """
local values = {}
for i, key in ipairs(KEYS) do
  redis.call('SET', key, ARGV[i], 'NX')
  values[i] = redis.call('GET', key)
end
return values
"""
RAISE = """
redis.call('SET', KEYS[1], ARGV[1], 'NX')
redis.call('INCR', KEYS[1])
return redis.call('GET', KEYS[1])
"""


def seed() -> str:
    """A new counter's first value: random, so a Redis that lost its data starts elsewhere."""
    return str(secrets.randbits(62))


def _memo() -> dict[str, int | None] | None:
    if not flask.has_request_context():
        return None
    memo = flask.g.get(_MEMO)
    if memo is None:
        memo = {}
        setattr(flask.g, _MEMO, memo)
    return memo


class RedisDataGenerations:
    """Counters in Redis, read once per request (see the module docstring)."""

    def __init__(self, client: redis.Redis, prefix: str) -> None:
        self.client = client
        self.prefix = f"{prefix}datagen:"
        self.read_script = client.register_script(READ)
        self.raise_script = client.register_script(RAISE)

    def key(self, tenant_id: str) -> str:
        return self.prefix + tenant_id

    def current(self, tenant_id: str) -> int | None:
        memo = _memo()
        if memo is not None and tenant_id in memo:
            return memo[tenant_id]
        try:
            value: int | None = int(self.read_script(keys=[self.key(tenant_id)], args=[seed()])[0])
        except redis.RedisError:
            value = None  # the database answers instead
        if memo is not None:
            memo[tenant_id] = value
        return value

    def bump(self, tenant_id: str) -> None:
        memo = _memo()
        try:
            value: int | None = int(self.raise_script(keys=[self.key(tenant_id)], args=[seed()]))
        except redis.RedisError:
            log.error(
                "could not raise tenant %s's data generation: other processes may serve "
                "cached rows for up to DATA_CACHE_TTL seconds",
                tenant_id,
            )
            value = None
        if memo is not None:
            memo[tenant_id] = value

    def announced(self, tenant_id: str) -> dict[str, str]:
        """The counter this request will read, for the rate limiter's round trip: key → seed."""
        memo = _memo()
        if memo is not None and tenant_id in memo:
            return {}
        return {self.key(tenant_id): seed()}

    def prefetched(self, tenant_id: str, values: dict[str, Any]) -> None:
        """What the rate limiter's round trip read for `announced(tenant_id)`."""
        memo = _memo()
        raw = values.get(self.key(tenant_id))
        if memo is not None and raw is not None:
            memo[tenant_id] = int(raw)


@dataclass
class TenantDataCache:
    """Values of one kind, per tenant and key, valid while the tenant's generation holds."""

    generations: DataGenerations
    ttl: float
    max_entries: int
    entries: dict[tuple[str, Any], tuple[int, float, Any]] = field(default_factory=dict)

    def get(self, tenant_id: str, key: Any, load: Callable[[], T], *, cached: bool = True) -> T:
        """The value for (`tenant_id`, `key`): from this process's memory while still exact,
        else `load()` (read from the database), kept for the next request. With
        ``cached=False`` always `load()` (and keep what it read)."""
        generation = self.generations.current(tenant_id)
        if generation is None:
            return load()
        now = time.monotonic()
        slot = (tenant_id, key)
        if cached:
            entry = self.entries.get(slot)
            if entry is not None and entry[0] == generation and now < entry[1]:
                return entry[2]
        value = load()
        if len(self.entries) >= self.max_entries:
            self.entries.clear()
        self.entries[slot] = (generation, now + self.ttl, value)
        return value


@dataclass
class DataCaches:
    generations: DataGenerations
    ttl: float
    max_entries: int
    caches: dict[str, TenantDataCache] = field(default_factory=dict)

    def cache(self, name: str) -> TenantDataCache:
        found = self.caches.get(name)
        if found is None:
            found = self.caches[name] = TenantDataCache(
                self.generations, self.ttl, self.max_entries
            )
        return found


def _number(config: flask.Config, name: str, kind: type, least: float) -> Any:
    value = config[name]
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise ConfigError(f"CTXCLOUD_{name}={value!r} is not a number") from None
    if not least <= number < float("inf"):
        raise ConfigError(f"CTXCLOUD_{name} must be at least {least}")
    return number


def init_data_caches(app: flask.Flask) -> DataCaches:
    """Redis counters when configured, else the data directory's file; kept per app."""
    ext = app.extensions["ctxcloud"]
    if ext.redis is not None:
        generations: DataGenerations = RedisDataGenerations(
            ext.redis, app.config["REDIS_KEY_PREFIX"]
        )
    else:
        generations = FileDataGenerations(os.path.join(app.config["DATA_DIR"], GENERATIONS_FILE))
    caches = DataCaches(
        generations=generations,
        ttl=_number(app.config, "DATA_CACHE_TTL", float, 0),
        max_entries=_number(app.config, "DATA_CACHE_MAX_ENTRIES", int, 1),
    )
    app.extensions[EXTENSION] = caches
    return caches


def data_caches(app: flask.Flask | None = None) -> DataCaches:
    return (app or flask.current_app).extensions[EXTENSION]


def tenant_data_cache(name: str) -> TenantDataCache:
    """This process's cache `name` (a plugin's own, e.g. "context.project") of tenant rows."""
    return data_caches().cache(name)


def tenant_data_changed(tenant_id: str) -> None:
    """Call after committing a change to anything a ``TenantDataCache`` may hold of the tenant,
    before answering: every process then reads the database again for it."""
    data_caches().generations.bump(tenant_id)
