"""The app's Redis client: every wait bounded, and a cap on connections as a bulkhead.

redis-py waits forever by default: on connect, on every reply, and for a free pooled
connection. A Redis that accepts connections and never answers would then hold every thread
that touches it (nearly every request: rate limits and credential generations live there).
Here each socket operation has a timeout, and the pool is redis-py's BlockingConnectionPool
with at most a bulkhead's worth of connections (app/bulkhead.py): when that many threads are
stuck on a hung Redis, the next request waits ``REDIS_POOL_TIMEOUT`` seconds for one, then is
refused (503 ``unavailable``) and the worker's other threads stay free.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import redis

from ctxcloud.bulkhead import default_slots
from ctxcloud.settings import ConfigError

__all__ = ["open_redis"]


def _seconds(config: Mapping[str, Any], name: str) -> float:
    value = config[name]
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"CTXCLOUD_{name}={value!r} is not a number of seconds") from None
    if not 0 < seconds < float("inf"):
        raise ConfigError(f"CTXCLOUD_{name} must be a positive number of seconds")
    return seconds


def open_redis(config: Mapping[str, Any]) -> redis.Redis | None:
    """A client for REDIS_URL (None without one); no connection is made here."""
    url = config.get("REDIS_URL")
    if not url:
        return None
    connections = config.get("REDIS_MAX_CONNECTIONS") or default_slots()
    try:
        connections = int(connections)
    except (TypeError, ValueError):
        connections = 0
    if connections < 1:
        raise ConfigError("CTXCLOUD_REDIS_MAX_CONNECTIONS must be a whole number of at least 1")
    pool = redis.BlockingConnectionPool.from_url(
        str(url),
        max_connections=connections,
        timeout=_seconds(config, "REDIS_POOL_TIMEOUT"),
        socket_timeout=_seconds(config, "REDIS_SOCKET_TIMEOUT"),
        socket_connect_timeout=_seconds(config, "REDIS_CONNECT_TIMEOUT"),
        socket_keepalive=True,
        health_check_interval=30,
    )
    return redis.Redis(connection_pool=pool)
