"""Rate limits per credential (or client address), and a tenant-wide ceiling.

A credential spends its tenant's `rate_limit` (else the service default); every request of
a tenant also spends the tenant's window, which refuses past the tenant's
`tenant_rate_limit` when one is set and otherwise only counts (the usage endpoint reports
it). Fixed windows, counted in Redis when ``REDIS_URL`` is set (every process and host shares
them) and in process memory otherwise. A request's hits are one Redis round trip (SET NX +
INCR + PTTL per window, in one transaction) that answers both "allowed?" and the RateLimit-*
headers; limit strings are parsed once (``limits``, flask-limiter's engine); the caller is
authenticated once (the route reuses it); health probes and the API docs skip the limiter entirely.

flask-limiter itself is not used: its per-request dispatch (limit resolution, exemption
scopes, request-context bookkeeping, a second storage read for the headers) and limits'
timer-driven memory storage cost more than the counting, and every limit here is one
app-wide budget per caller.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

import flask
import redis
from limits import RateLimitItem, parse_many

from ctxcloud import errors
from ctxcloud.auth import current_actor, deferring_credential_checks
from ctxcloud.settings import ConfigError

log = logging.getLogger("ctxcloud.ratelimit")
EXTENSION = "ctxcloud.ratelimit"
# Health probes and the API docs are never limited.
UNLIMITED_BLUEPRINTS = frozenset({"health", "api-docs", "docs_assets"})
_UNKNOWN = object()
# The window a tenant's requests are counted in when it has no tenant-wide ceiling.
TENANT_COUNT_WINDOW = "1/minute"


@dataclass(frozen=True)
class Window:
    """One hit's outcome: allowed or not, what is left, and when the window ends (epoch)."""

    allowed: bool
    limit: int
    remaining: int
    reset_at: float
    count: int = 0

    @classmethod
    def counted(cls, item: RateLimitItem, count: int, reset_at: float) -> Window:
        """The window of `item` once `count` requests are in it (allowed: within the limit)."""
        return cls(count <= item.amount, item.amount, max(0, item.amount - count), reset_at, count)

    def headers(self) -> dict[str, str]:
        return {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(max(1, math.ceil(self.reset_at - time.time()))),
        }


class Counters(Protocol):
    def hit(self, item: RateLimitItem, key: str) -> Window: ...

    def hit_many(self, hits: list[tuple[RateLimitItem, str]]) -> list[Window]: ...

    def peek(self, item: RateLimitItem, key: str) -> Window: ...


class ProcessCounters:
    """Windows in this process's memory (no Redis): a dict under a lock, no timer thread.

    Ended windows restart on their next hit and are dropped when the dict grows large.
    """

    MAX_WINDOWS = 100_000

    def __init__(self) -> None:
        self.windows: dict[str, list[float]] = {}
        self.lock = threading.Lock()

    def hit(self, item: RateLimitItem, key: str) -> Window:
        now = time.time()
        with self.lock:
            window = self.windows.get(key)
            if window is None or window[0] <= now:
                if len(self.windows) >= self.MAX_WINDOWS:
                    self.windows = {k: w for k, w in self.windows.items() if w[0] > now}
                window = self.windows[key] = [now + item.get_expiry(), 0]
            window[1] += 1
            count, reset_at = window[1], window[0]
        return Window.counted(item, count, reset_at)

    def hit_many(self, hits: list[tuple[RateLimitItem, str]]) -> list[Window]:
        return [self.hit(item, key) for item, key in hits]

    def peek(self, item: RateLimitItem, key: str) -> Window:
        now = time.time()
        with self.lock:
            window = self.windows.get(key)
            if window is None or window[0] <= now:
                count, reset_at = 0, now + item.get_expiry()
            else:
                count, reset_at = int(window[1]), window[0]
        return Window.counted(item, count, reset_at)


class RedisCounters:
    """Windows in Redis, shared by every process: one round trip per hit."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def hit(self, item: RateLimitItem, key: str) -> Window:
        return self.hit_many([(item, key)])[0]

    def hit_many(self, hits: list[tuple[RateLimitItem, str]]) -> list[Window]:
        return self.hit_many_reading(hits, [])[0]

    def hit_many_reading(
        self, hits: list[tuple[RateLimitItem, str]], reads: list[str]
    ) -> tuple[list[Window], list[bytes | None]]:
        """The hits, and GETs of `reads` (credential generations) in the same round trip."""
        pipe = self.client.pipeline(transaction=True)
        for key in reads:
            pipe.get(key)
        for item, key in hits:
            pipe.set(key, 0, ex=item.get_expiry(), nx=True)
            pipe.incr(key)
            pipe.pttl(key)
        replies = pipe.execute()
        values, replies = replies[: len(reads)], replies[len(reads) :]
        now = time.time()
        windows = [
            Window.counted(item, count, _reset_at(now, ttl_ms, item))
            for (item, _), count, ttl_ms in zip(hits, replies[1::3], replies[2::3], strict=True)
        ]
        return windows, values

    def peek(self, item: RateLimitItem, key: str) -> Window:
        pipe = self.client.pipeline(transaction=True)
        pipe.get(key)
        pipe.pttl(key)
        value, ttl_ms = pipe.execute()
        return Window.counted(item, int(value or 0), _reset_at(time.time(), ttl_ms, item))


def _reset_at(now: float, ttl_ms: int, item: RateLimitItem) -> float:
    """When a Redis window ends: its TTL from now (a key without one: a whole window)."""
    return now + (ttl_ms / 1000 if ttl_ms > 0 else item.get_expiry())


@dataclass(frozen=True)
class Budget:
    """A limit spent under one identity; an unenforced budget only counts (usage reports it)."""

    limit: str
    identity: tuple[str, ...]
    enforced: bool = True


@dataclass(frozen=True)
class RateLimits:
    """The app's limiter (never a module global): its counters, key prefix and default."""

    counters: Counters
    key_prefix: str
    default: str

    def _key(self, item: RateLimitItem, identity: tuple[str, ...]) -> str:
        return f"{self.key_prefix}{item.amount}/{item.get_expiry()}:{':'.join(identity)}"

    def spend(self, *budgets: Budget) -> Window | None:
        """Spend one unit of every window of every budget at once; 429 when an enforced one is
        spent.

        Returns the enforced window with the least left (for the RateLimit-* headers).
        """
        return self.spend_reading(budgets, [])[0]

    def spend_reading(
        self, budgets: tuple[Budget, ...] | list[Budget], reads: list[str]
    ) -> tuple[Window | None, list[bytes | None]]:
        """spend(), and the values of the Redis keys `reads` from the same round trip."""
        hits, owners = [], []
        for budget in budgets:
            for item in parse_limit(budget.limit):
                hits.append((item, self._key(item, budget.identity)))
                owners.append(budget)
        if reads:
            windows, values = self.counters.hit_many_reading(hits, reads)
        else:
            windows, values = self.counters.hit_many(hits), []
        binding = None
        for (item, _), window, budget in zip(hits, windows, owners, strict=True):
            if not budget.enforced:
                continue
            if not window.allowed:
                headers = window.headers()
                headers["Retry-After"] = headers["RateLimit-Reset"]
                raise errors.RateLimited(
                    f"Rate limit exceeded: {item}. Retry later.", headers=headers
                )
            if binding is None or window.remaining < binding.remaining:
                binding = window
        return binding, values

    def hit(self, limit: str, *identity: str) -> Window | None:
        return self.spend(Budget(limit, identity))

    def peek(self, budget: Budget) -> Window:
        """The budget's first window as it stands, without spending."""
        item = parse_limit(budget.limit)[0]
        return self.counters.peek(item, self._key(item, budget.identity))


@functools.lru_cache(maxsize=1024)
def parse_limit(text: str) -> tuple[RateLimitItem, ...]:
    """ "600/minute" (or "10/second;600/minute") as limit items; ValueError when malformed."""
    return tuple(parse_many(text))


def is_limit(text: Any) -> bool:
    """True for a well-formed limit string such as "600/minute"."""
    try:
        return isinstance(text, str) and bool(parse_limit(text))
    except ValueError:
        return False


def _caller() -> Any:
    """The request's actor, or None: no credential, or a bad one the route will refuse itself."""
    caller = flask.g.get("ratelimit_caller", _UNKNOWN)
    if caller is _UNKNOWN:
        try:
            caller = current_actor(required=False)
        except errors.ProblemError:
            caller = None
        flask.g.ratelimit_caller = caller
    return caller


def _valid(text: str | None) -> str | None:
    if text and not is_limit(text):
        log.warning("ignoring a malformed tenant rate limit", extra={"rate_limit": text})
        return None
    return text or None


def tenant_budget(tenant_id: str, ceiling: str | None) -> Budget:
    """Every request of a tenant counts in this window; it refuses only past a ceiling."""
    return Budget(ceiling or TENANT_COUNT_WINDOW, ("tenant", tenant_id), enforced=bool(ceiling))


def budgets_of(actor: Any, default: str) -> list[Budget]:
    """The credential's budget (its tenant's `rate_limit`, else the default) and the tenant's.

    A tenant object offers ``rate_limits() -> (per_credential, tenant_wide)``.
    """
    tenant = getattr(actor, "tenant", None)
    per_credential, tenant_wide = (
        tenant.rate_limits() if hasattr(tenant, "rate_limits") else (None, None)
    )
    budgets = [Budget(_valid(per_credential) or default, (actor.log_name,))]
    if actor.tenant_id:
        budgets.append(tenant_budget(actor.tenant_id, _valid(tenant_wide)))
    return budgets


def _limit_request() -> None:
    """Spend the caller's budgets: the credential's and its tenant's, else the address's."""
    request = flask.request
    if request.blueprint in UNLIMITED_BLUEPRINTS or request.endpoint is None:
        return
    limits: RateLimits = flask.current_app.extensions[EXTENSION]
    if not isinstance(limits.counters, RedisCounters):
        flask.g.rate_limit_window = limits.spend(*_budgets(_caller(), limits))
        return
    # One Redis round trip: the credential's revocation generation is read with the hits.
    with deferring_credential_checks() as checks:
        actor = _caller()
    window, values = limits.spend_reading(
        _budgets(actor, limits), [check.redis_key for check in checks]
    )
    stale = [c for c, value in zip(checks, values, strict=True) if int(value or 0) != c.expected]
    if stale:
        # Revoked or changed since this process cached it (rare): forget it and authenticate
        # again, now reading the generation; the stale identity's unit stays spent.
        for check in stale:
            check.forget()
        flask.g.pop("actor", None)
        flask.g.pop("ratelimit_caller", None)
        window = limits.spend(*_budgets(_caller(), limits))
    flask.g.rate_limit_window = window


def _budgets(actor: Any, limits: RateLimits) -> list[Budget]:
    if actor is None:
        return [Budget(limits.default, ("addr", flask.request.remote_addr or "-"))]
    return budgets_of(actor, limits.default)


def tenant_requests(tenant: Any) -> Window | None:
    """The tenant's current window (requests so far, its ceiling if any); None when disabled."""
    limits: RateLimits | None = flask.current_app.extensions.get(EXTENSION)
    if limits is None:
        return None
    _, tenant_wide = tenant.rate_limits()
    return limits.peek(tenant_budget(tenant.id, _valid(tenant_wide)))


def _add_headers(response: flask.Response) -> flask.Response:
    """RateLimit-Limit, -Remaining and -Reset (seconds) for the budget this request spent."""
    window = flask.g.get("rate_limit_window")
    if window is not None and "RateLimit-Limit" not in response.headers:
        response.headers.update(window.headers())
    return response


def count_attempt(limit: str, *identity: str) -> None:
    """Spend one attempt of a named budget (logins per address, per username...); 429 when spent.

    A no-op when rate limiting is disabled.
    """
    limits: RateLimits | None = flask.current_app.extensions.get(EXTENSION)
    if limits is not None:
        limits.hit(limit, *identity)


def init_rate_limiting(app: flask.Flask) -> None:
    """Build this app's limiter on Redis or memory; a malformed limit stops the start."""
    config = app.config
    for name in ("RATE_LIMIT_DEFAULT", "RATE_LIMIT_LOGIN"):
        try:
            parse_limit(str(config[name]))
        except ValueError:
            raise ConfigError(
                f"CTXCLOUD_{name}={config[name]!r} is not a rate limit such as '600/minute'"
            ) from None
    if not config["RATE_LIMIT_ENABLED"]:
        return
    client = app.extensions["ctxcloud"].redis
    app.extensions[EXTENSION] = RateLimits(
        counters=RedisCounters(client) if client is not None else ProcessCounters(),
        key_prefix=f"{config['REDIS_KEY_PREFIX']}rl:",
        default=str(config["RATE_LIMIT_DEFAULT"]),
    )
    app.before_request(_limit_request)
    app.after_request(_add_headers)
