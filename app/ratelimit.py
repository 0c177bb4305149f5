"""Rate limits: flask-limiter's ``Limiter``, one per app, and the budgets every request spends.

The app's limiter is a ``flask_limiter.Limiter`` built in ``init_rate_limiting`` and kept on
``app.extensions`` (never a module global: two apps in one process count apart). It owns:

- the storage and its configuration (``RATELIMIT_STORAGE_URI``, by default
  ``ctxcloud-memory://`` or, with ``REDIS_URL``, ``ctxcloud-redis://``: see
  ``ctxcloud.ratelimit_storage``), in fixed windows;
- the limits routes declare with its own decorator, which plugins reach through the toolkit
  as ``ctxcloud.limit`` / ``ctxcloud.shared_limit`` (``Limiter.limit`` / ``shared_limit`` of
  the app serving the request); the login attempts of the users plugin are declared so;
- ``RateLimitExceeded``, answered as a 429 ``rate_limited`` problem with ``Retry-After``.

Every request to a limited route (all but health and the API docs) also spends its caller's
budgets, decided by the request pipeline (``ctxcloud.pipeline``) once it knows the caller:
the credential's (its tenant's ``rate_limit`` quota, else ``RATE_LIMIT_DEFAULT``) and its
tenant's (refusing past the tenant's ``tenant_rate_limit``, and otherwise only counting for
the usage endpoint), or, without an accepted credential, the client address's. Those are
spent here on the limiter's storage, all of a request's windows together (one Redis round
trip), rather than as flask-limiter application limits: flask-limiter's per-request
middleware (walking its limit registry, exemption scopes and request-context bookkeeping)
costs ~50 us of CPU per request even with nothing to limit, the whole budget this part has;
so its before/after-request hooks are left out (``init_rate_limiting``) and its decorator
limits run where they are declared.
"""

from __future__ import annotations

import functools
import logging
import math
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import flask
import limits
from flask_limiter import Limiter, RateLimitExceeded
from limits import RateLimitItem

from ctxcloud import errors, ratelimit_storage
from ctxcloud.settings import ConfigError

log = logging.getLogger("ctxcloud.ratelimit")
F = TypeVar("F", bound=Callable[..., Any])
EXTENSION = "ctxcloud.ratelimit"
# Health probes and the API docs are never limited (nor authenticated).
UNLIMITED_BLUEPRINTS = frozenset({"health", "api-docs", "docs_assets"})
# The window a tenant's requests are counted in when it has no tenant-wide ceiling.
TENANT_COUNT_WINDOW = "1/minute"
# flask-limiter settings that would add limits of their own beside ctxcloud's budgets.
FOREIGN_LIMITS = ("RATELIMIT_DEFAULT", "RATELIMIT_APPLICATION", "RATELIMIT_META")


@functools.lru_cache(maxsize=1024)
def parse_limit(text: str) -> tuple[RateLimitItem, ...]:
    """ "600/minute" (or "10/second;600/minute") as limit items; ValueError when malformed."""
    return tuple(limits.parse_many(text))


def is_limit(text: Any) -> bool:
    """True for a well-formed limit string such as "600/minute"."""
    try:
        return isinstance(text, str) and bool(parse_limit(text))
    except ValueError:
        return False


@dataclass(frozen=True)
class Window:
    """A window as a response reports it: its limit, what is left, when it ends (epoch)."""

    limit: int
    remaining: int
    reset_at: float
    # Requests counted in it so far (refused ones included).
    count: int = 0

    def headers(self) -> dict[str, str]:
        """RateLimit-Limit, -Remaining and -Reset (seconds until the window ends)."""
        return {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(max(1, math.ceil(self.reset_at - time.time()))),
        }


@dataclass(frozen=True)
class Budget:
    """Limits spent under one identity; an unenforced budget only counts (usage reports it)."""

    items: tuple[RateLimitItem, ...]
    identity: tuple[str, ...]
    enforced: bool = True


def _valid(text: str | None) -> str | None:
    if text and not is_limit(text):
        log.warning("ignoring a malformed tenant rate limit", extra={"rate_limit": text})
        return None
    return text or None


def tenant_budget(tenant_id: str, ceiling: str | None) -> Budget:
    """Every request of a tenant counts in this window; it refuses only past a ceiling."""
    return Budget(
        parse_limit(ceiling or TENANT_COUNT_WINDOW), ("tenant", tenant_id), enforced=bool(ceiling)
    )


def window_key(item: RateLimitItem, identity: tuple[str, ...]) -> str:
    """The storage key of a budget's window (``limits``' own layout, built more cheaply)."""
    return f"LIMITER/{'/'.join(identity)}/{item.amount}/{item.multiples}/{item.GRANULARITY.name}"


def client_address() -> str:
    """The client's address (``X-Forwarded-For`` only behind CTXCLOUD_TRUSTED_PROXY_HOPS
    proxies): the key of requests without a credential and flask-limiter's default key."""
    return flask.request.remote_addr or "-"


@dataclass
class RateLimiting:
    """The app's limiter and the budgets a request spends on its storage."""

    limiter: Limiter

    @property
    def enabled(self) -> bool:
        return bool(self.limiter.enabled)

    def budgets(self, actor: Any) -> list[Budget]:
        """What a request spends: its credential's budget and its tenant's, else its address's.

        ``RATE_LIMIT_DEFAULT`` is read per request, as the tenant quota's default is.
        """
        default = flask.current_app.config["RATE_LIMIT_DEFAULT"]
        if actor is None:
            return [Budget(parse_limit(default), ("address", client_address()))]
        tenant = actor.tenant
        if tenant is None:  # a platform key
            return [Budget(parse_limit(default), ("credential", actor.log_name))]
        per_credential, tenant_wide = tenant.rate_limits()
        return [
            Budget(parse_limit(_valid(per_credential) or default), ("credential", actor.log_name)),
            tenant_budget(tenant.id, _valid(tenant_wide)),
        ]

    def spend(self, budgets: Sequence[Budget]) -> Window | None:
        """Spend one request of every window of every budget (together: one Redis round trip);
        429 when an enforced one is spent, else the enforced window with the least left."""
        return self.spend_and_read(budgets)[0]

    def spend_and_read(
        self, budgets: Sequence[Budget], reads: Mapping[str, str] | None = None
    ) -> tuple[Window | None, dict[str, bytes]]:
        """``spend``, and the values of the counters `reads` (Redis key -> seed; created at
        the seed if missing) read in the same round trip: empty where the storage is not
        Redis, or when no window was spent (``ratelimit_storage.batch``)."""
        storage = self.limiter.storage
        windows = [
            (item, window_key(item, budget.identity), budget.enforced)
            for budget in budgets
            for item in budget.items
        ]
        with ratelimit_storage.batch(storage, windows, reads) as values:
            return self._spend(storage, windows), values

    @staticmethod
    def _spend(storage: Any, windows: list[tuple[RateLimitItem, str, bool]]) -> Window | None:
        counts = [storage.incr(key, item.get_expiry()) for item, key, _ in windows]
        binding: tuple[RateLimitItem, str, int] | None = None
        for (item, key, enforced), count in zip(windows, counts, strict=True):
            if not enforced:
                continue
            if count > item.amount:
                headers = Window(item.amount, 0, storage.get_expiry(key)).headers()
                headers["Retry-After"] = headers["RateLimit-Reset"]
                raise errors.RateLimited(
                    f"Rate limit exceeded: {item}. Retry later.", headers=headers
                )
            if binding is None or item.amount - count < binding[2]:
                binding = (item, key, item.amount - count)
        if binding is None:
            return None
        item, key, remaining = binding
        return Window(item.amount, remaining, storage.get_expiry(key))

    def peek(self, budget: Budget) -> Window:
        """The budget's first window as it stands, without spending."""
        item = budget.items[0]
        key = window_key(item, budget.identity)
        storage = self.limiter.storage
        count = storage.get(key)
        end = storage.get_expiry(key) if count else time.time() + item.get_expiry()
        return Window(item.amount, max(0, item.amount - count), end, count)


def rate_limiting(app: flask.Flask | None = None) -> RateLimiting:
    """The app's (default: the current app's) rate limiting."""
    return (app or flask.current_app).extensions[EXTENSION]


def current_limiter() -> Limiter:
    """The current app's ``flask_limiter.Limiter`` (for ``with current_limiter().limit(...)``
    inside a view, or ``current_limiter().current_limit``)."""
    return rate_limiting().limiter


def tenant_requests(tenant: Any) -> Window | None:
    """The tenant's current window (requests so far, its ceiling if any); None when disabled."""
    rates: RateLimiting | None = flask.current_app.extensions.get(EXTENSION)
    if rates is None or not rates.enabled:
        return None
    _, tenant_wide = tenant.rate_limits()
    return rates.peek(tenant_budget(tenant.id, _valid(tenant_wide)))


# Limits declared on routes ------------------------------------------------------------------


@dataclass(frozen=True)
class DeclaredLimit:
    """A route's limit, applied with ``Limiter.limit`` (or ``shared_limit``) of the app that
    serves the request."""

    value: str | Callable[[], str]
    key_func: Callable[[], str] | None
    scope: str | Callable[[str], str] | None
    shared: bool
    options: tuple[tuple[str, Any], ...]

    def bind(self, limiter: Limiter, fn: Callable[..., Any]) -> Callable[..., Any]:
        options = dict(self.options)
        if self.shared:
            assert self.scope is not None
            decorator = limiter.shared_limit(
                self.value, self.scope, key_func=self.key_func, **options
            )
        else:
            decorator = limiter.limit(
                self.value, key_func=self.key_func, scope=self.scope, **options
            )
        return decorator(fn)


LIMITS_ATTR = "_ctxcloud_limits"


def limit(
    value: str | Callable[[], str],
    *,
    key_func: Callable[[], str] | None = None,
    scope: str | Callable[[str], str] | None = None,
    methods: list[str] | None = None,
    per_method: bool = False,
    cost: int | Callable[[], int] = 1,
    error_message: str | None = None,
    exempt_when: Callable[[], bool] | None = None,
) -> Callable[[F], F]:
    """Limit a route (or a view method): flask-limiter's ``Limiter.limit`` on the limiter of
    the app serving the request, so a module-level route works in every app.

    `value` is a limit string ("10/minute", "5/second;100/hour") or a callable returning one
    (read per request); `key_func` returns the key to count under (default:
    ``client_address``); `scope` names the window beside the route's endpoint; `methods`,
    `per_method`, `cost`, `error_message` and `exempt_when` are flask-limiter's. Such a limit
    comes on top of the caller's budget, is checked when the view is called (after the
    request pipeline) and answers 429 ``rate_limited`` with ``Retry-After`` once spent.
    Stack several to count under several keys.
    """
    return _declare(
        DeclaredLimit(
            value,
            key_func,
            scope,
            False,
            _options(methods, per_method, cost, error_message, exempt_when),
        )
    )


def shared_limit(
    value: str | Callable[[], str],
    scope: str | Callable[[str], str],
    *,
    key_func: Callable[[], str] | None = None,
    methods: list[str] | None = None,
    per_method: bool = False,
    cost: int | Callable[[], int] = 1,
    error_message: str | None = None,
    exempt_when: Callable[[], bool] | None = None,
) -> Callable[[F], F]:
    """One limit shared by every route decorated with the same `scope`
    (``Limiter.shared_limit`` of the app serving the request)."""
    return _declare(
        DeclaredLimit(
            value,
            key_func,
            scope,
            True,
            _options(methods, per_method, cost, error_message, exempt_when),
        )
    )


def _options(*values: Any) -> tuple[tuple[str, Any], ...]:
    names = ("methods", "per_method", "cost", "error_message", "exempt_when")
    return tuple(zip(names, values, strict=True))


def _declare(declared: DeclaredLimit) -> Callable[[F], F]:
    def decorator(fn: F) -> F:
        existing = getattr(fn, LIMITS_ATTR, None)
        if existing is not None:  # another limit on the same function: one wrapper for all
            existing.insert(0, declared)
            return fn
        declarations = [declared]
        bound: weakref.WeakKeyDictionary[Limiter, Callable[..., Any]] = weakref.WeakKeyDictionary()
        lock = threading.Lock()

        @functools.wraps(fn)
        def limited(*args: Any, **kwargs: Any) -> Any:
            rates: RateLimiting | None = flask.current_app.extensions.get(EXTENSION)
            if rates is None or not rates.enabled:
                return fn(*args, **kwargs)
            call = bound.get(rates.limiter)
            if call is None:
                with lock:
                    call = bound.get(rates.limiter)
                    if call is None:
                        call = fn
                        for one in reversed(declarations):  # the first declared, outermost
                            call = one.bind(rates.limiter, call)
                        bound[rates.limiter] = call
            return call(*args, **kwargs)

        setattr(limited, LIMITS_ATTR, declarations)
        return limited  # type: ignore[return-value]

    return decorator


def count_attempt(limit: str, *identity: str) -> None:
    """Deprecated: declare the limit on the route with ``ctxcloud.limit`` instead.

    Spends one attempt of a named budget on the app's limiter; 429 when spent.
    """
    warnings.warn(
        "ctxcloud.count_attempt is deprecated: declare the limit with ctxcloud.limit",
        DeprecationWarning,
        stacklevel=2,
    )
    rates: RateLimiting | None = flask.current_app.extensions.get(EXTENSION)
    if rates is not None and rates.enabled:
        rates.spend([Budget(parse_limit(limit), ("attempt", *identity))])


# The app's limiter --------------------------------------------------------------------------


def _from_limit_exceeded(exc: RateLimitExceeded) -> flask.Response:
    """A route limit is spent: 429 ``rate_limited`` with that window's headers."""
    breached = rate_limiting().limiter.current_limit
    headers: dict[str, str] = {}
    if breached is not None:
        reset_at, remaining = breached.window
        headers = Window(breached.limit.amount, remaining, reset_at).headers()
        headers["Retry-After"] = headers["RateLimit-Reset"]
    detail = (
        exc.description
        if exc.limit.error_message
        else f"Rate limit exceeded: {exc.limit.limit}. Retry later."
    )
    return errors.problem_response(429, "rate_limited", detail, headers=headers)


def _check_config(config: flask.Config, redis_configured: bool) -> None:
    for name in ("RATE_LIMIT_DEFAULT", "RATE_LIMIT_LOGIN"):
        if not is_limit(str(config[name])):
            raise ConfigError(
                f"CTXCLOUD_{name}={config[name]!r} is not a rate limit such as '600/minute'"
            )
    for name in FOREIGN_LIMITS:
        if config.get(name):
            raise ConfigError(
                f"CTXCLOUD_{name} is not used: a caller's budget is CTXCLOUD_RATE_LIMIT_DEFAULT "
                "(or the tenant's rate_limit quota), and a route declares its own with "
                "ctxcloud.limit"
            )
    strategy = config.get("RATELIMIT_STRATEGY") or "fixed-window"
    if strategy != "fixed-window":
        raise ConfigError(
            f"CTXCLOUD_RATELIMIT_STRATEGY={strategy!r}: ctxcloud's windows are fixed windows "
            "('fixed-window')"
        )
    uri = str(config.get("RATELIMIT_STORAGE_URI") or "")
    if uri.startswith("ctxcloud-redis:") and not redis_configured:
        raise ConfigError("CTXCLOUD_RATELIMIT_STORAGE_URI=ctxcloud-redis:// needs REDIS_URL")


def init_rate_limiting(app: flask.Flask) -> RateLimiting:
    """Build this app's flask-limiter Limiter from ctxcloud's settings; a malformed limit stops
    the start.

    ``RATE_LIMIT_ENABLED`` is passed on as flask-limiter's ``RATELIMIT_ENABLED`` (either name
    may be set); the storage is ``RATELIMIT_STORAGE_URI`` when set (any ``limits`` storage),
    else ours: in Redis with ``REDIS_URL`` (under ``REDIS_KEY_PREFIX`` + ``rl:``), else in
    process memory.
    """
    config = app.config
    client = app.extensions["ctxcloud"].redis
    _check_config(config, client is not None)
    if "RATELIMIT_ENABLED" in config:  # flask-limiter's name for the same switch
        config["RATE_LIMIT_ENABLED"] = config["RATELIMIT_ENABLED"]
    config["RATELIMIT_ENABLED"] = bool(config["RATE_LIMIT_ENABLED"])
    config["RATELIMIT_STRATEGY"] = "fixed-window"
    uri = config.get("RATELIMIT_STORAGE_URI") or (
        "ctxcloud-redis://" if client is not None else "ctxcloud-memory://"
    )
    options: dict[str, Any] = {}
    if uri.startswith("ctxcloud-redis:"):
        options = {"client": client, "key_prefix": f"{config['REDIS_KEY_PREFIX']}rl:"}
    limiter = Limiter(
        client_address,
        storage_uri=uri,
        storage_options=options,
        strategy="fixed-window",
        headers_enabled=False,  # ctxcloud writes the RateLimit-* headers (delta seconds)
    )
    # flask-limiter registers its before/after/teardown-request hooks only for a limiter not
    # yet listed here. They would walk its registry on every request for limits ctxcloud
    # never gives it (no default or application limits): listed first, the limiter is
    # configured without them; route limits check themselves when their view is called.
    app.extensions.setdefault("limiter", set()).add(limiter)
    limiter.init_app(app)
    rates = app.extensions[EXTENSION] = RateLimiting(limiter)
    app.register_error_handler(RateLimitExceeded, _from_limit_exceeded)
    return rates
