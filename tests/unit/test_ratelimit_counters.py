"""Fixed-window counters: in process memory and in Redis, with the same answers."""

from __future__ import annotations

import pytest
import redis

from ctxcloud import ratelimit
from ctxcloud.ratelimit import ProcessCounters, RedisCounters, parse_limit
from tests.support import redisdb


def exercise(counters, monkeypatch) -> None:
    (item,) = parse_limit("2/minute")
    first = counters.hit(item, "k")
    assert (first.allowed, first.limit, first.remaining) == (True, 2, 1)
    assert 59 <= first.reset_at - ratelimit.time.time() <= 60
    assert counters.hit(item, "k").remaining == 0
    refused = counters.hit(item, "k")
    assert not refused.allowed and refused.remaining == 0
    assert counters.hit(item, "other").allowed  # keys are independent
    assert refused.headers()["RateLimit-Limit"] == "2"
    assert 1 <= int(refused.headers()["RateLimit-Reset"]) <= 60


def test_process_counters_restart_when_the_window_ends(monkeypatch):
    counters = ProcessCounters()
    exercise(counters, monkeypatch)
    (item,) = parse_limit("2/minute")
    later = ratelimit.time.time() + 61
    monkeypatch.setattr(ratelimit.time, "time", lambda: later)
    assert counters.hit(item, "k").allowed


def test_process_counters_drop_ended_windows_when_full(monkeypatch):
    counters = ProcessCounters()
    monkeypatch.setattr(ProcessCounters, "MAX_WINDOWS", 3)
    (item,) = parse_limit("1/second")
    for key in ("a", "b", "c"):
        counters.hit(item, key)
    later = ratelimit.time.time() + 2
    monkeypatch.setattr(ratelimit.time, "time", lambda: later)
    counters.hit(item, "d")
    assert set(counters.windows) == {"d"}


@pytest.mark.integration
def test_redis_counters(monkeypatch):
    client = redis.Redis.from_url(redisdb.url())
    redisdb.flush(client)
    try:
        exercise(RedisCounters(client), monkeypatch)
        assert 0 < client.pttl("k") <= 60_000
    finally:
        redisdb.flush(client)
        client.close()
