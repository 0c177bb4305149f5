"""A Redis database of this test run's own, so two runs on one machine never disturb each other.

The suite's Redis tests (the production tier's stack, the multi-process auth and quota tests,
the Redis counters) share one database index per run, claimed at first use: the first index
from 1 to 15 whose claim key this run could set (SET NX with an expiry). Flushing keeps the
claim (one MULTI: FLUSHDB then SET), and the claim is dropped when the run ends; a run that
was killed loses its claim when the key expires.
"""

from __future__ import annotations

import atexit
import os
import secrets
import socket

import redis

BASE_URL = os.environ.get("CTXCLOUD_TEST_REDIS", "redis://127.0.0.1:6379")
CLAIM_KEY = "ctxcloud-tests:claimed-by"
CLAIM_SECONDS = 3600
INDEXES = range(1, 16)

_claimed: dict[str, object] = {}


def _token() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def index() -> int:
    """This run's database index, claimed on first use (RuntimeError when all are taken)."""
    if "index" in _claimed:
        return _claimed["index"]  # type: ignore[return-value]
    token = _token()
    for number in INDEXES:
        client = redis.Redis.from_url(f"{BASE_URL}/{number}", socket_connect_timeout=5)
        try:
            if client.set(CLAIM_KEY, token, nx=True, ex=CLAIM_SECONDS):
                _claimed.update(index=number, token=token)
                atexit.register(_release)
                return number
        finally:
            client.close()
    raise RuntimeError(
        f"every Redis database {INDEXES.start}-{INDEXES.stop - 1} at {BASE_URL} is claimed by "
        f"another test run (key {CLAIM_KEY}); wait for them, or delete stale claims"
    )


def url() -> str:
    """The URL of this run's database (CTXCLOUD_TEST_REDIS, then the claimed index)."""
    return f"{BASE_URL}/{index()}"


def flush(client: redis.Redis) -> None:
    """Empty this run's database, keeping (and renewing) the run's claim on it."""
    pipe = client.pipeline(transaction=True)
    pipe.flushdb()
    pipe.set(CLAIM_KEY, _claimed.get("token") or _token(), ex=CLAIM_SECONDS)
    pipe.execute()


def _release() -> None:
    token = _claimed.get("token")
    if token is None:
        return
    client = redis.Redis.from_url(url(), socket_connect_timeout=5)
    try:
        if client.get(CLAIM_KEY) == str(token).encode():
            client.flushdb()
    except redis.RedisError:
        pass  # the claim expires on its own
    finally:
        client.close()
