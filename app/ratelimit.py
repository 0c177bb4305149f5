"""Rate limits per credential (or client address): the tenant's limit, else the default.

Fixed windows, counted in Redis when ``REDIS_URL`` is set (every process and host shares
them) and in process memory otherwise. A hit is one Redis round trip (SET NX + INCR + PTTL
in one transaction) that answers both "allowed?" and the RateLimit-* headers; limit strings
are parsed once (``limits``, flask-limiter's engine); the caller is authenticated once (the
route reuses it); health probes and the API docs skip the limiter entirely.

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

from app import errors
from app.auth import current_actor
from app.config import ConfigError

log = logging.getLogger("ctxcloud.ratelimit")
EXTENSION = "ctxcloud.ratelimit"
# Health probes and the API docs are never limited.
UNLIMITED_BLUEPRINTS = frozenset({"health", "api-docs", "docs_assets"})
_UNKNOWN = object()


@dataclass(frozen=True)
class Window:
    """One hit's outcome: allowed or not, what is left, and when the window ends (epoch)."""

    allowed: bool
    limit: int
    remaining: int
    reset_at: float

    def headers(self) -> dict[str, str]:
        return {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(max(1, math.ceil(self.reset_at - time.time()))),
        }


class Counters(Protocol):
    def hit(self, item: RateLimitItem, key: str) -> Window: ...


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
        return Window(count <= item.amount, item.amount, max(0, item.amount - count), reset_at)


class RedisCounters:
    """Windows in Redis, shared by every process: one round trip per hit."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client

    def hit(self, item: RateLimitItem, key: str) -> Window:
        expiry = item.get_expiry()
        pipe = self.client.pipeline(transaction=True)
        pipe.set(key, 0, ex=expiry, nx=True)
        pipe.incr(key)
        pipe.pttl(key)
        _, count, ttl_ms = pipe.execute()
        reset_at = time.time() + (ttl_ms / 1000 if ttl_ms > 0 else expiry)
        return Window(count <= item.amount, item.amount, max(0, item.amount - count), reset_at)


@dataclass(frozen=True)
class RateLimits:
    """The app's limiter (never a module global): its counters, key prefix and default."""

    counters: Counters
    key_prefix: str
    default: str

    def hit(self, limit: str, *identity: str) -> Window:
        """Spend one unit of each of `limit`'s windows; 429 when one is spent.

        Returns the first window's state (kept on ``g`` for the RateLimit-* headers).
        """
        name = ":".join(identity)
        first = None
        for item in parse_limit(limit):
            key = f"{self.key_prefix}{item.amount}/{item.get_expiry()}:{name}"
            window = self.counters.hit(item, key)
            first = first or window
            if not window.allowed:
                headers = window.headers()
                headers["Retry-After"] = headers["RateLimit-Reset"]
                raise errors.RateLimited(
                    f"Rate limit exceeded: {item}. Retry later.", headers=headers
                )
        assert first is not None
        return first


@functools.lru_cache(maxsize=1024)
def parse_limit(text: str) -> tuple[RateLimitItem, ...]:
    """ "600/minute" (or "10/second;600/minute") as limit items; ValueError when malformed."""
    return tuple(parse_many(text))


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


def _limit_of(actor: Any, default: str) -> str:
    """The caller's tenant's `rate_limit` setting when it is a valid limit, else the default."""
    tenant = getattr(actor, "tenant", None)
    text = (getattr(tenant, "config", None) or {}).get("rate_limit")
    if text:
        try:
            parse_limit(text)
            return text
        except (TypeError, ValueError):
            log.warning("ignoring a malformed tenant rate limit", extra={"rate_limit": text})
    return default


def _limit_request() -> None:
    """Spend the caller's budget: the user's or API key's, else the client address's."""
    request = flask.request
    if request.blueprint in UNLIMITED_BLUEPRINTS or request.endpoint is None:
        return
    limits: RateLimits = flask.current_app.extensions[EXTENSION]
    actor = _caller()
    if actor is None:
        window = limits.hit(limits.default, "addr", request.remote_addr or "-")
    else:
        window = limits.hit(_limit_of(actor, limits.default), actor.log_name)
    flask.g.rate_limit_window = window


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
