"""The limiter's storages (ctxcloud-memory://, ctxcloud-redis://): fixed windows with the same
answers through flask-limiter's own strategy; memory without a timer thread, Redis in one
round trip for all of a request's windows."""

from __future__ import annotations

import threading
import time

import pytest
import redis
from limits.storage import storage_from_string
from limits.strategies import FixedWindowRateLimiter

from ctxcloud import ratelimit_storage
from ctxcloud.ratelimit import parse_limit
from ctxcloud.ratelimit_storage import MemoryWindows, RedisWindows, batch


def exercise(storage) -> None:
    strategy = FixedWindowRateLimiter(storage)
    (item,) = parse_limit("2/minute")
    assert strategy.hit(item, "k") and strategy.hit(item, "k")
    assert not strategy.hit(item, "k")  # the third in the window is refused
    assert strategy.hit(item, "other")  # keys are independent
    reset_at, remaining = strategy.get_window_stats(item, "k")
    assert remaining == 0 and 59 <= reset_at - time.time() <= 60
    assert strategy.get_window_stats(item, "unused")[1] == 2


def test_storages_are_found_by_their_uri_scheme():
    assert isinstance(storage_from_string("ctxcloud-memory://"), MemoryWindows)
    client = redis.Redis()  # no connection is made
    found = storage_from_string("ctxcloud-redis://", client=client, key_prefix="p:")
    assert isinstance(found, RedisWindows) and found.key_prefix == "p:"


def test_memory_windows_start_no_thread():
    before = threading.active_count()
    storage = MemoryWindows()
    exercise(storage)
    assert threading.active_count() == before


def test_memory_windows_restart_when_they_end(monkeypatch):
    storage = MemoryWindows()
    (item,) = parse_limit("2/minute")
    strategy = FixedWindowRateLimiter(storage)
    for _ in range(3):
        strategy.hit(item, "k")
    later = time.time() + 61
    monkeypatch.setattr(ratelimit_storage.time, "time", lambda: later)
    assert strategy.hit(item, "k")
    assert strategy.get_window_stats(item, "k")[1] == 1


def test_memory_windows_drop_ended_windows_when_full(monkeypatch):
    storage = MemoryWindows()
    monkeypatch.setattr(MemoryWindows, "MAX_WINDOWS", 3)
    for key in ("a", "b", "c"):
        storage.incr(key, 1)
    later = time.time() + 2
    monkeypatch.setattr(ratelimit_storage.time, "time", lambda: later)
    storage.incr("d", 1)
    assert set(storage.windows) == {"d"}


class RoundTrips:
    """Redis round trips made by this thread (a request of the test client runs in it): each
    command, pipeline, transaction or script sent is one."""

    def __init__(self, monkeypatch) -> None:
        self.count = 0
        thread = threading.get_ident()
        send = redis.connection.AbstractConnection.send_packed_command

        def counted(connection, command, check_health=True):
            if threading.get_ident() == thread:
                self.count += 1
            return send(connection, command, check_health)

        monkeypatch.setattr(redis.connection.AbstractConnection, "send_packed_command", counted)


@pytest.mark.integration
def test_redis_windows(redis_client):
    storage = RedisWindows(client=redis_client, key_prefix="t:rl:")
    exercise(storage)
    (item,) = parse_limit("2/minute")
    assert 0 < redis_client.pttl("t:rl:" + item.key_for("k")) <= 60_000


@pytest.mark.integration
def test_a_batch_spends_every_window_in_one_round_trip(redis_client, monkeypatch):
    storage = RedisWindows(client=redis_client, key_prefix="t:rl:")
    minute, hour = parse_limit("3/minute")[0], parse_limit("100/hour")[0]
    windows = [(minute.key_for("cred"), 60), (hour.key_for("tnt"), 3600)]
    storage.incr("warm-up", 1)  # the script loaded into this Redis
    counting = RoundTrips(monkeypatch)
    with batch(storage, [(minute, windows[0][0]), (hour, windows[1][0])]):
        assert storage.incr(windows[0][0], 60) == 1
        assert storage.incr(windows[1][0], 3600) == 1
        assert storage.get(windows[0][0]) == 1
        assert 59 <= storage.get_expiry(windows[0][0]) - time.time() <= 60
        assert 3599 <= storage.get_expiry(windows[1][0]) - time.time() <= 3600
    assert counting.count == 1
    # Outside a batch each question is its own round trip, with the same answers.
    assert storage.get(windows[0][0]) == 1 and storage.incr(windows[1][0], 3600) == 2
    assert counting.count == 3
