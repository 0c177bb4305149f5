"""The rate limiter's storages: fixed windows in process memory or in Redis, as ``limits``
storages that flask-limiter builds from ``RATELIMIT_STORAGE_URI``.

Registered under their own URI schemes (``limits``' storage registry: a subclass of
``limits.storage.Storage`` with ``STORAGE_SCHEME`` is found by ``storage_from_string``):

- ``ctxcloud-memory://`` (the embedded default): a dict under a lock. limits' own
  ``memory://`` starts a timer thread to expire windows, which costs more CPU than the
  counting; here an ended window restarts on its next hit and ended windows are dropped
  when the dict grows large, with no thread at all.
- ``ctxcloud-redis://`` (with ``CTXCLOUD_REDIS_URL``): the app's own Redis client (bounded
  waits, a capped pool; passed as the ``client`` storage option). flask-limiter asks a
  storage for one window at a time (``incr``, then ``get`` / ``get_expiry`` for the
  headers), a round trip each. A request's windows are known before the first of them is
  spent (the pipeline's credential and tenant windows), so ``batch`` announces them: the
  first ``incr`` of one of them spends them all in one script (``SPEND``: per window,
  ``SET NX EX`` + ``INCRBY`` + ``PTTL``, atomically) and every later call of the same
  request about them is answered from that reply. One round trip per request, however many
  windows (a script costs redis-py about half the CPU of the same commands in a
  ``MULTI``). A batch may also name counters to read in that same script (``reads``: the
  caller's tenant's data generation, ``ctxcloud.tenancy.data_cache``), each created at its
  seed if missing; their values come back in the batch's ``values``.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
from limits import RateLimitItem
from limits.errors import ConfigurationError
from limits.storage import Storage

__all__ = ["MemoryWindows", "RedisWindows", "batch"]


class MemoryWindows(Storage):
    """Fixed windows in this process's memory: ``{key: [ends_at, count]}``, no timer thread."""

    STORAGE_SCHEME = ["ctxcloud-memory"]
    # Past this many windows, ended ones are dropped (a sweep costs one pass, rarely).
    MAX_WINDOWS = 100_000

    def __init__(self, uri: str | None = None, wrap_exceptions: bool = False, **_: Any) -> None:
        super().__init__(uri, wrap_exceptions=wrap_exceptions)
        self.windows: dict[str, list[float]] = {}
        self.lock = threading.Lock()

    @property
    def base_exceptions(self) -> tuple[type[Exception], ...]:
        return ()

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        now = time.time()
        with self.lock:
            window = self.windows.get(key)
            if window is None or window[0] <= now:
                if len(self.windows) >= self.MAX_WINDOWS:
                    self.windows = {k: w for k, w in self.windows.items() if w[0] > now}
                window = self.windows[key] = [now + expiry, 0]
            window[1] += amount
            return int(window[1])

    def get(self, key: str) -> int:
        window = self.windows.get(key)
        return 0 if window is None or window[0] <= time.time() else int(window[1])

    def get_expiry(self, key: str) -> float:
        window = self.windows.get(key)
        now = time.time()
        return now if window is None or window[0] <= now else window[0]

    def check(self) -> bool:
        return True

    def reset(self) -> int | None:
        with self.lock:
            count = len(self.windows)
            self.windows = {}
        return count

    def clear(self, key: str) -> None:
        with self.lock:
            self.windows.pop(key, None)


@dataclass
class _Batch:
    """A request's announced windows (key -> expiry seconds) and, once spent, their counts
    and ends (epoch seconds)."""

    windows: dict[str, int]
    # Counters to read in the same round trip (full key -> seed) and, once spent, their values.
    reads: dict[str, str] = field(default_factory=dict)
    values: dict[str, bytes] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    ends: dict[str, float] = field(default_factory=dict)
    taken: set[str] = field(default_factory=set)


_batch: contextvars.ContextVar[_Batch | None] = contextvars.ContextVar(
    "ctxcloud_ratelimit_batch", default=None
)


@contextlib.contextmanager
def batch(
    storage: Storage,
    windows: Sequence[tuple[RateLimitItem, str, Any]],
    reads: Mapping[str, str] | None = None,
) -> Iterator[dict[str, bytes]]:
    """Within this block, `storage` may spend the `windows` ((limit item, key, ...)) together
    on the first ``incr`` of any of them, reading the counters `reads` (key -> seed) in the
    same round trip; the dict yielded holds their values once spent (a storage without
    batching ignores both, and the dict stays empty)."""
    if not isinstance(storage, RedisWindows):
        yield {}
        return
    current = _Batch({key: item.get_expiry() for item, key, *_ in windows}, dict(reads or {}))
    token = _batch.set(current)
    try:
        yield current.values
    finally:
        _batch.reset(token)


# Spend `ARGV[1]` of each of the first `ARGV[2]` keys, windows (created with the expiry
# ARGV[i + 2] if missing): answers its count and its time to live in milliseconds, window
# after window. Each later key is a counter to read (created at its seed ARGV[i + 2] if
# missing), answered as a string after the windows.
SPEND = """
local answers = {}
local windows = tonumber(ARGV[2])
for i, key in ipairs(KEYS) do
  if i <= windows then
    redis.call('SET', key, 0, 'EX', ARGV[i + 2], 'NX')
    answers[#answers + 1] = redis.call('INCRBY', key, ARGV[1])
    answers[#answers + 1] = redis.call('PTTL', key)
  else
    redis.call('SET', key, ARGV[i + 2], 'NX')
    answers[#answers + 1] = redis.call('GET', key)
  end
end
return answers
"""


class RedisWindows(Storage):
    """Fixed windows in Redis, shared by every process and host (see the module docstring)."""

    STORAGE_SCHEME = ["ctxcloud-redis"]

    def __init__(
        self,
        uri: str | None = None,
        wrap_exceptions: bool = False,
        *,
        client: redis.Redis | None = None,
        key_prefix: str = "",
        **_: Any,
    ) -> None:
        if client is None:
            raise ConfigurationError(
                "ctxcloud-redis:// takes the app's Redis client (set CTXCLOUD_REDIS_URL)"
            )
        super().__init__(uri, wrap_exceptions=wrap_exceptions)
        self.client = client
        self.key_prefix = key_prefix
        self.spend_script = client.register_script(SPEND)  # loaded on first use

    @property
    def base_exceptions(self) -> type[Exception]:
        return redis.RedisError

    def _spend(
        self,
        windows: dict[str, int],
        amount: int = 1,
        reads: dict[str, str] | None = None,
        values: dict[str, bytes] | None = None,
    ) -> tuple[dict, dict]:
        """One round trip: every window created if missing (with its expiry), incremented,
        and its time to live read; and each counter of `reads` read into `values`."""
        reads = reads or {}
        replies = self.spend_script(
            keys=[*(self.key_prefix + key for key in windows), *reads],
            args=[amount, len(windows), *windows.values(), *reads.values()],
        )
        if reads and values is not None:
            values.update(zip(reads, replies[2 * len(windows) :], strict=True))
        replies = replies[: 2 * len(windows)]
        now = time.time()
        counts, ends = {}, {}
        for (key, expiry), count, ttl_ms in zip(
            windows.items(), replies[0::2], replies[1::2], strict=True
        ):
            counts[key] = int(count)
            # A key without a time to live (it cannot happen here): a whole window from now.
            ends[key] = now + (ttl_ms / 1000 if ttl_ms > 0 else expiry)
        return counts, ends

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        current = _batch.get()
        if current is not None and key in current.windows and key not in current.taken:
            if not current.counts:
                current.counts, current.ends = self._spend(
                    current.windows, reads=current.reads, values=current.values
                )
            current.taken.add(key)
            # The batch spent one unit; a larger cost spends the rest now.
            if amount != 1:
                current.counts[key] = int(self.client.incrby(self.key_prefix + key, amount - 1))
            return current.counts[key]
        counts, ends = self._spend({key: expiry}, amount)
        if current is not None:
            current.counts[key], current.ends[key] = counts[key], ends[key]
            current.taken.add(key)
        return counts[key]

    def get(self, key: str) -> int:
        current = _batch.get()
        if current is not None and key in current.taken:
            return current.counts[key]
        return int(self.client.get(self.key_prefix + key) or 0)

    def get_expiry(self, key: str) -> float:
        current = _batch.get()
        if current is not None and key in current.taken:
            return current.ends[key]
        ttl_ms = self.client.pttl(self.key_prefix + key)
        return time.time() + max(ttl_ms, 0) / 1000

    def check(self) -> bool:
        try:
            return bool(self.client.ping())
        except redis.RedisError:
            return False

    def reset(self) -> int | None:
        count = 0
        for name in self.client.scan_iter(match=self.key_prefix + "*", count=1000):
            count += int(self.client.delete(name))
        return count

    def clear(self, key: str) -> None:
        self.client.delete(self.key_prefix + key)
