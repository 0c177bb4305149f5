"""Credential generations with Redis: read from this process's mirror, which a subscriber keeps
current, and trusted only while the subscriber has heard from Redis recently enough."""

from __future__ import annotations

import time

import pytest
import redis

from ctxcloud.tenancy.credentials import GenerationMirror, RedisGenerations
from tests.support import redisdb


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def mirror_on(clock: Clock) -> GenerationMirror:
    mirror = GenerationMirror(max_delay=0.5)
    mirror.clock = clock
    return mirror


def test_the_mirror_is_trusted_only_while_it_has_heard_recently(clock):
    mirror = mirror_on(clock)
    mirror.subscribed(sent_at=clock.now)
    mirror.learn("tnt_a", 3, mirror.epoch)
    assert mirror.get("tnt_a") == 3
    clock.now += 0.6  # no answer to a ping sent in the last 0.5 s: it may be behind
    assert mirror.get("tnt_a") is None
    mirror.heard(sent_at=clock.now - 0.1)
    assert mirror.get("tnt_a") == 3


def test_a_value_read_while_something_changed_is_not_learned(clock):
    mirror = mirror_on(clock)
    mirror.subscribed(sent_at=clock.now)
    epoch = mirror.epoch  # a read starts...
    mirror.forget("tnt_b")  # ...a raise is heard meanwhile (of any scope)
    mirror.learn("tnt_a", 3, epoch)
    assert mirror.get("tnt_a") is None
    epoch = mirror.epoch
    mirror.subscribed(sent_at=clock.now)  # ...or the subscription started again
    mirror.learn("tnt_a", 3, epoch)
    assert mirror.get("tnt_a") is None


def test_a_lost_subscription_forgets_everything(clock):
    mirror = mirror_on(clock)
    mirror.subscribed(sent_at=clock.now)
    mirror.learn("tnt_a", 3, mirror.epoch)
    mirror.lost()
    assert mirror.get("tnt_a") is None
    mirror.learn("tnt_a", 3, mirror.epoch)  # not while unsubscribed
    mirror.subscribed(sent_at=clock.now)
    assert mirror.get("tnt_a") is None


class CountingGets:
    def __init__(self, client: redis.Redis) -> None:
        self.client, self.gets = client, 0

    def get(self, name):
        self.gets += 1
        return self.client.get(name)

    def __getattr__(self, name):
        return getattr(self.client, name)


def poll_until(condition, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.005)


@pytest.mark.integration
def test_reads_come_from_the_mirror_and_raises_reach_it(redis_client):
    counting = CountingGets(redis_client)
    # A long delay bound: a busy machine must not make the mirror distrusted mid-test.
    here = RedisGenerations(counting, "t:", max_delay=30)  # this process
    there = RedisGenerations(redis_client, "t:", max_delay=30)  # as another process would
    assert here.current("tnt_a") == 0  # read from Redis (the subscriber is starting)
    poll_until(lambda: here.mirror.synced)
    here.current("tnt_a")
    reads = counting.gets
    assert [here.current("tnt_a") for _ in range(20)] == [0] * 20
    assert counting.gets == reads  # from memory
    there.bump("tnt_a")
    # Heard through the subscription (within REVOCATION_MAX_DELAY, usually at once).
    poll_until(lambda: here.current("tnt_a") == 1)
    here.bump("tnt_a")
    assert here.current("tnt_a") == 2  # the process that raised it knows at once


@pytest.mark.integration
def test_a_mirror_that_may_be_behind_is_not_used(redis_client):
    counting = CountingGets(redis_client)
    generations = RedisGenerations(counting, "t:")
    generations.current("tnt_a")
    poll_until(lambda: generations.mirror.synced)
    generations.current("tnt_a")
    reads = counting.gets
    # As if no ping had been answered for a minute (the subscriber hears none from now).
    generations.mirror.heard = lambda sent_at: None
    generations.mirror.heard_at -= 60
    redis_client.incr("t:credgen:tnt_a")  # raised without a message reaching this process
    assert generations.current("tnt_a") == 1
    assert counting.gets == reads + 1


@pytest.mark.parametrize("delay", [0, -1, "soon"])
def test_the_delay_bound_must_be_a_positive_number(app_config, delay):
    from ctxcloud import create_app
    from ctxcloud.settings import ConfigError

    config = {**app_config, "REDIS_URL": redisdb.url(), "REVOCATION_MAX_DELAY": delay}
    with pytest.raises(ConfigError, match="CTXCLOUD_REVOCATION_MAX_DELAY"):
        create_app(config)
