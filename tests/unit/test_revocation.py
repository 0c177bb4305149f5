"""Credential generations and the verified-credential cache."""

from __future__ import annotations

import time

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from ctxcloud.errors import Unavailable
from ctxcloud.tenancy.credentials import (
    CredentialCache,
    FileGenerations,
    RedisGenerations,
    scope_of,
)


def test_file_generations_are_shared_by_every_opener(tmp_path):
    path = str(tmp_path / "gen" / "credential-generations")
    one, two = FileGenerations(path), FileGenerations(path)  # as two processes would
    assert one.current("tnt_a") == 0
    two.bump("tnt_a")
    two.bump("tnt_a")
    assert one.current("tnt_a") == 2
    assert FileGenerations(path).current("tnt_a") == 2  # a process started later
    assert (tmp_path / "gen" / "credential-generations").stat().st_mode & 0o077 == 0


def test_scopes_move_independently_except_when_they_share_a_slot(tmp_path):
    generations = FileGenerations(str(tmp_path / "g"))
    others = [f"tnt_{i}" for i in range(50)]
    generations.bump("tnt_x")
    moved = [s for s in others if generations.current(s) != 0]
    assert generations.current("tnt_x") == 1 and len(moved) <= 1
    assert scope_of(None) == "platform" and scope_of("tnt_x") == "tnt_x"


class FakeGenerations:
    def __init__(self):
        self.values = {}

    def current(self, scope):
        return self.values.get(scope, 0)

    def bump(self, scope):
        self.values[scope] = self.current(scope) + 1


def test_cache_entries_die_with_their_generation_or_age():
    generations = FakeGenerations()
    cache = CredentialCache(generations, ttl=30, max_entries=10)
    cache.put("k", "actor", "tnt_a", generations.current("tnt_a"), now=100.0)
    assert cache.get("k", 129.9).actor == "actor"
    assert cache.get("k", 130.0) is None  # too old
    generations.bump("tnt_b")
    assert cache.get("k", 101.0) is not None  # another tenant's change
    generations.bump("tnt_a")
    assert cache.get("k", 101.0) is None


def test_cache_is_bounded():
    cache = CredentialCache(FakeGenerations(), ttl=30, max_entries=3)
    for i in range(4):
        cache.put(f"k{i}", i, "s", 0, now=0.0)
    assert len(cache.entries) <= 3 and cache.get("k3", 1.0).actor == 3


def test_an_unreachable_redis_fails_closed():
    client = redis.Redis(
        host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0)
    )
    with pytest.raises(Unavailable):
        RedisGenerations(client, "ctxcloud:").current("tnt_a")
    with pytest.raises(Unavailable):
        RedisGenerations(client, "ctxcloud:").bump("tnt_a")


@pytest.mark.integration
def test_redis_generations_are_shared(redis_client):
    one, two = RedisGenerations(redis_client, "t:"), RedisGenerations(redis_client, "t:")
    assert one.current("tnt_a") == 0
    two.bump("tnt_a")
    assert two.current("tnt_a") == 1  # at once where it was raised
    # Elsewhere within REVOCATION_MAX_DELAY (tests/unit/test_generation_mirror.py).
    deadline = time.monotonic() + 10
    while one.current("tnt_a") != 1:
        assert time.monotonic() < deadline
        time.sleep(0.005)
    assert one.current("tnt_b") == 0
