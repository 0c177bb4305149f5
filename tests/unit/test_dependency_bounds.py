"""The bounds on waiting for dependencies: bulkheads, S3's retry budget, Redis and PostgreSQL
client settings."""

from __future__ import annotations

import threading

import pytest
import redis

from ctxcloud.bulkhead import Bulkhead, default_slots
from ctxcloud.db import postgres_bounds
from ctxcloud.plugins.storage_s3.backend import RetryBudget, S3Storage
from ctxcloud.plugins.storage_s3.settings import S3Settings
from ctxcloud.redis_client import open_redis
from ctxcloud.settings import ConfigError
from ctxcloud.storage import StorageUnavailable


class Refused(Exception):
    pass


@pytest.mark.parametrize(("threads", "slots"), [(1, 1), (2, 1), (4, 2), (8, 6), (16, 12)])
def test_a_bulkhead_leaves_a_reserve_of_threads(threads, slots):
    assert default_slots(threads) == slots


class WatchedSlots:
    """The bulkhead's semaphore, telling when a caller starts to wait for a slot."""

    def __init__(self, semaphore) -> None:
        self.semaphore = semaphore
        self.waiting = threading.Event()
        self.waits: list[float] = []

    def acquire(self, blocking: bool = True, timeout: float | None = None) -> bool:
        if timeout is not None:
            self.waits.append(timeout)
            self.waiting.set()
        return self.semaphore.acquire(blocking, timeout)

    def release(self) -> None:
        self.semaphore.release()


def hold_slots(bulkhead: Bulkhead, count: int) -> tuple[list[threading.Thread], threading.Event]:
    """`count` threads each holding a slot until the returned event is set."""
    release = threading.Event()
    entered = threading.Barrier(count + 1)

    def hold() -> None:
        with bulkhead.slot():
            entered.wait(10)
            release.wait(30)

    holders = [threading.Thread(target=hold) for _ in range(count)]
    for holder in holders:
        holder.start()
    entered.wait(10)
    return holders, release


def test_a_bulkhead_whose_holders_look_stuck_refuses_at_once(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr("ctxcloud.bulkhead.time.monotonic", lambda: clock[0])
    bulkhead = Bulkhead("storage", 2, Refused)
    bulkhead._free = watched = WatchedSlots(bulkhead._free)
    holders, release = hold_slots(bulkhead, 2)
    clock[0] += 5  # both holders have been inside for 5 s: the dependency hangs
    with pytest.raises(Refused, match="2 requests of this process are already waiting"):
        with bulkhead.slot():
            pass
    assert watched.waits == []  # refused without waiting for a slot
    assert bulkhead.refused == 1
    release.set()
    for holder in holders:
        holder.join(10)
    with bulkhead.slot():  # slots given back serve again
        pass


def test_a_bulkhead_whose_holders_are_busy_lets_a_call_wait_for_a_slot(monkeypatch):
    monkeypatch.setattr("ctxcloud.bulkhead.time.monotonic", lambda: 100.0)  # holders just entered
    bulkhead = Bulkhead("storage", 2, Refused)
    bulkhead._free = watched = WatchedSlots(bulkhead._free)
    holders, release = hold_slots(bulkhead, 2)
    freed = threading.Thread(target=lambda: watched.waiting.wait(10) and release.set())
    freed.start()
    with bulkhead.slot():  # waits, and gets the slot a finished holder gave back
        pass
    assert watched.waits and bulkhead.refused == 0
    for thread in [*holders, freed]:
        thread.join(10)


def test_a_waiting_call_is_refused_once_the_holders_come_to_look_stuck(monkeypatch):
    """A hang starts while a call waits: the call gives its thread back as soon as the
    holders look stuck, not after its whole wait (an hour here, so only that can end it)."""
    clock = [100.0]
    monkeypatch.setattr("ctxcloud.bulkhead.time.monotonic", lambda: clock[0])
    monkeypatch.setattr("ctxcloud.bulkhead.QUEUE_WAIT", 3600.0)
    bulkhead = Bulkhead("storage", 2, Refused)
    bulkhead._free = watched = WatchedSlots(bulkhead._free)
    holders, release = hold_slots(bulkhead, 2)
    outcome: list[object] = []

    def wait_for_a_slot() -> None:
        try:
            with bulkhead.slot():
                outcome.append("served")
        except Refused as refused:
            outcome.append(refused)

    waiter = threading.Thread(target=wait_for_a_slot)
    waiter.start()
    assert watched.waiting.wait(10)  # it waits: the holders are merely busy so far
    clock[0] += 5  # ... and now they have been inside for 5 s
    waiter.join(10)
    assert not waiter.is_alive() and isinstance(outcome[0], Refused)
    assert bulkhead.refused == 1
    release.set()
    for holder in holders:
        holder.join(10)


def test_a_guarded_iterator_holds_a_slot_only_while_it_steps():
    bulkhead = Bulkhead("storage", 1, Refused)
    closed = []

    def chunks():
        try:
            yield b"a"
            yield b"b"
        finally:
            closed.append(True)

    guarded = bulkhead.guard_iterator(chunks())
    assert next(guarded) == b"a"
    with bulkhead.slot():  # free between steps: the consumer is slow, not the dependency
        pass
    guarded.close()
    assert closed == [True]


def test_storage_refusals_are_the_503_kind(monkeypatch):
    monkeypatch.setattr("ctxcloud.bulkhead.QUEUE_WAIT", 0.0)
    bulkhead = Bulkhead("storage", 1, StorageUnavailable)
    holders, release = hold_slots(bulkhead, 1)
    with pytest.raises(StorageUnavailable), bulkhead.slot():
        pass
    release.set()
    holders[0].join(10)


def test_s3_retries_stop_when_another_attempt_could_pass_the_budget(monkeypatch):
    budget = RetryBudget(budget=20.0, attempt_bound=13.0)
    context: dict = {}
    now = [100.0]
    monkeypatch.setattr("ctxcloud.plugins.storage_s3.backend.time.monotonic", lambda: now[0])
    budget.started(context)
    request = {"context": context}
    # 1 s in: backoff (2 s) + a whole attempt (13 s) still fit in 20 s: botocore decides.
    now[0] = 101.0
    assert budget.may_retry(request_dict=request, attempts=1) is None
    # 6 s in: 6 + 2 + 13 > 20: no retry, whatever botocore's own handler would say.
    now[0] = 106.0
    assert budget.may_retry(request_dict=request, attempts=1) is False
    assert budget.may_retry(request_dict={"context": {}}, attempts=1) is None


def test_the_s3_budget_must_hold_one_attempt():
    with pytest.raises(ConfigError, match="CTXCLOUD_S3_RETRY_BUDGET"):
        S3Settings(bucket="bucket", connect_timeout=3, read_timeout=10, retry_budget=5)
    with pytest.raises(ConfigError, match="CTXCLOUD_S3_RETRY_BUDGET"):
        S3Settings(bucket="bucket", retry_budget=float("inf"))
    assert S3Settings(bucket="bucket").retry_budget >= S3Settings(bucket="bucket").attempt_bound


def test_the_s3_client_registers_its_retry_budget():
    client = S3Storage(S3Settings(bucket="bucket", endpoint_url="http://127.0.0.1:9")).client
    # The budget's handler answers first (a call that started long ago may not retry).
    _, response = client.meta.events.emit_until_response(
        "needs-retry.s3.GetObject",
        request_dict={"context": {RetryBudget.STARTED: 0.0}},
        attempts=1,
        response=None,
        endpoint=None,
        operation=None,
        caught_exception=None,
    )
    assert response is False


def test_redis_waits_are_bounded_and_its_pool_is_a_bulkhead():
    client = open_redis(
        {
            "REDIS_URL": "redis://127.0.0.1:6379/0",
            "REDIS_MAX_CONNECTIONS": 3,
            "REDIS_POOL_TIMEOUT": 0.25,
            "REDIS_SOCKET_TIMEOUT": 1.0,
            "REDIS_CONNECT_TIMEOUT": 1.5,
        }
    )
    pool = client.connection_pool
    assert isinstance(pool, redis.BlockingConnectionPool)
    assert (pool.max_connections, pool.timeout) == (3, 0.25)
    assert pool.connection_kwargs["socket_timeout"] == 1.0
    assert pool.connection_kwargs["socket_connect_timeout"] == 1.5
    assert open_redis({"REDIS_URL": None}) is None


@pytest.mark.parametrize(
    ("name", "value"),
    [("REDIS_SOCKET_TIMEOUT", 0), ("REDIS_POOL_TIMEOUT", "soon"), ("REDIS_MAX_CONNECTIONS", -1)],
)
def test_a_redis_bound_that_is_no_bound_stops_the_start(name, value):
    config = {
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "REDIS_MAX_CONNECTIONS": None,
        "REDIS_POOL_TIMEOUT": 0.25,
        "REDIS_SOCKET_TIMEOUT": 1.0,
        "REDIS_CONNECT_TIMEOUT": 1.0,
        name: value,
    }
    with pytest.raises(ConfigError, match=f"CTXCLOUD_{name}"):
        open_redis(config)


def test_postgresql_waits_are_bounded_and_the_url_may_say_otherwise():
    config = {
        "DATABASE_CONNECT_TIMEOUT": 3,
        "DATABASE_STATEMENT_TIMEOUT": 30,
        "DATABASE_LOCK_TIMEOUT": 10,
    }
    bounds = postgres_bounds(config, {})
    assert bounds["connect_timeout"] == 3
    assert bounds["tcp_user_timeout"] > 0 and bounds["keepalives"] == 1
    assert "-c statement_timeout=30000" in bounds["options"]
    assert "-c lock_timeout=10000" in bounds["options"]
    mine = postgres_bounds(config, {"connect_timeout": "10", "options": "-c statement_timeout=0"})
    assert "connect_timeout" not in mine  # the URL's own value stays
    assert mine["options"].endswith("-c statement_timeout=0")  # later settings win in libpq


def test_a_slow_client_body_holds_no_slot_while_it_is_awaited(monkeypatch):
    """The backend pulls the body through `outside` while it holds a slot: the slot is free
    whenever the body's next chunk is awaited, and held again while the backend works."""
    monkeypatch.setattr("ctxcloud.bulkhead.QUEUE_WAIT", 0.0)
    bulkhead = Bulkhead("storage", 1, Refused)
    seen = []

    def client_body():
        for chunk in (b"a", b"b"):
            with bulkhead.slot():  # another request can take the slot meanwhile
                seen.append("free while awaited")
            yield chunk

    with bulkhead.slot():
        for chunk in bulkhead.outside(client_body()):
            with pytest.raises(Refused):  # held again while the backend has the chunk
                with bulkhead.slot():
                    pass
            seen.append(chunk)
    assert seen == ["free while awaited", b"a", "free while awaited", b"b"]
    with bulkhead.slot():  # and given back in the end, exactly once
        pass


def test_a_body_that_fails_while_awaited_leaves_the_slot_free():
    bulkhead = Bulkhead("storage", 1, Refused)

    def failing():
        yield b"a"
        raise TimeoutError("the client stopped")

    with pytest.raises(TimeoutError), bulkhead.slot():
        for _ in bulkhead.outside(failing()):
            pass
    with bulkhead.slot():
        pass
