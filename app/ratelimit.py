"""Rate limits per credential (or client address): the tenant's limit, else the default.

Counters live in Redis when ``REDIS_URL`` is set (limits' Redis storage and fixed-window
strategy), so every process and host shares them, and in process memory otherwise. This
uses ``limits``, the engine of flask-limiter, directly: flask-limiter's per-request dispatch
(limit resolution, exemption scopes, request context bookkeeping) and limits' timer-driven
memory storage cost more than the counting itself, and every limit here is one app-wide
budget per caller. A request costs one counter hit and one window read; limit strings are
parsed once; the caller is authenticated once (the route reuses it); health probes and the
API docs skip the limiter entirely.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import Any

import flask
from limits import RateLimitItem, parse_many
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter

from app import errors
from app.auth import current_actor
from app.config import ConfigError

log = logging.getLogger("ctxcloud.ratelimit")
EXTENSION = "ctxcloud.ratelimit"
# Health probes and the API docs are never limited.
UNLIMITED_BLUEPRINTS = frozenset({"health", "api-docs", "docs_assets"})
_UNKNOWN = object()


class ProcessWindows:
    """Fixed windows in this process's memory, for running without Redis.

    A dict under a lock: cheaper than limits' memory storage, which starts a timer thread to
    expire its counters. Windows end by themselves; ended ones are dropped as the dict grows.
    """

    MAX_WINDOWS = 100_000

    def __init__(self) -> None:
        self.windows: dict[tuple, list] = {}
        self.lock = threading.Lock()

    def hit(self, item: RateLimitItem, *identity: str) -> bool:
        now = time.time()
        key = (item.amount, item.get_expiry(), identity)
        with self.lock:
            window = self.windows.get(key)
            if window is None or window[0] <= now:
                if len(self.windows) >= self.MAX_WINDOWS:
                    self.windows = {k: w for k, w in self.windows.items() if w[0] > now}
                window = self.windows[key] = [now + item.get_expiry(), 0]
            if window[1] >= item.amount:
                return False
            window[1] += 1
            return True

    def get_window_stats(self, item: RateLimitItem, *identity: str) -> tuple[float, int]:
        now = time.time()
        window = self.windows.get((item.amount, item.get_expiry(), identity))
        if window is None or window[0] <= now:
            return now + item.get_expiry(), item.amount
        return window[0], item.amount - window[1]


@dataclass(frozen=True)
class RateLimits:
    """The app's limiter (never a module global): counting strategy, key prefix, default."""

    strategy: FixedWindowRateLimiter | ProcessWindows
    key_prefix: str
    default: str

    def hit(self, limit: str, *identity: str) -> None:
        """Spend one unit of each of `limit`'s windows for `identity`; 429 when one is spent.

        The first window's state is kept on ``g`` for the RateLimit-* response headers.
        """
        items = parse_limit(limit)
        for item in items:
            if not self.strategy.hit(item, self.key_prefix, *identity):
                headers = self.headers(item, identity)
                headers["Retry-After"] = headers["RateLimit-Reset"]
                raise errors.RateLimited(
                    f"Rate limit exceeded: {item}. Retry later.", headers=headers
                )
        flask.g.rate_limit = (items[0], identity)

    def headers(self, item: RateLimitItem, identity: tuple[str, ...]) -> dict[str, str]:
        reset_time, remaining = self.strategy.get_window_stats(item, self.key_prefix, *identity)
        return {
            "RateLimit-Limit": str(item.amount),
            "RateLimit-Remaining": str(max(0, remaining)),
            "RateLimit-Reset": str(max(1, math.ceil(reset_time - time.time()))),
        }


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
        limits.hit(limits.default, f"addr:{request.remote_addr or '-'}")
    else:
        limits.hit(_limit_of(actor, limits.default), actor.log_name)


def _add_headers(response: flask.Response) -> flask.Response:
    """RateLimit-Limit, -Remaining and -Reset (seconds) for the budget this request spent."""
    spent = flask.g.get("rate_limit")
    if spent is None or "RateLimit-Limit" in response.headers:
        return response
    try:
        headers = flask.current_app.extensions[EXTENSION].headers(*spent)
    except Exception:
        log.warning("rate limit window unavailable", exc_info=True)
        return response
    response.headers.update(headers)
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
    redis_url = config["REDIS_URL"]
    app.extensions[EXTENSION] = RateLimits(
        strategy=FixedWindowRateLimiter(storage_from_string(redis_url))
        if redis_url
        else ProcessWindows(),
        key_prefix=f"{config['REDIS_KEY_PREFIX']}rl",
        default=str(config["RATE_LIMIT_DEFAULT"]),
    )
    app.before_request(_limit_request)
    app.after_request(_add_headers)
