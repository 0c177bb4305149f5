"""Generation checks that ride along with the rate limiter's Redis round trip."""

from __future__ import annotations

import flask

from ctxcloud.auth import deferring_credential_checks
from ctxcloud.tenancy.credentials import CredentialCache


class CountingRedisGenerations:
    """Looks like RedisGenerations to the cache: a key per scope, and counted reads."""

    def __init__(self) -> None:
        self.values: dict[str, int] = {}
        self.reads = 0

    def redis_key(self, scope: str) -> str:
        return f"credgen:{scope}"

    def current(self, scope: str) -> int:
        self.reads += 1
        return self.values.get(scope, 0)


def test_a_deferred_check_is_left_to_the_caller_and_can_forget_the_entry():
    generations = CountingRedisGenerations()
    cache = CredentialCache(generations, ttl=60, max_entries=10)
    entry = cache.put("digest", "actor", "tnt_a", 0, now=0)
    with flask.Flask(__name__).test_request_context():
        with deferring_credential_checks() as checks:
            assert cache.get("digest", now=1) is entry
        assert generations.reads == 0
        (check,) = checks
        assert (check.redis_key, check.expected) == ("credgen:tnt_a", 0)
        check.forget()  # the generation moved: the next use verifies from scratch
        assert cache.get("digest", now=1) is None


def test_outside_the_block_the_generation_is_read_at_once():
    generations = CountingRedisGenerations()
    cache = CredentialCache(generations, ttl=60, max_entries=10)
    cache.put("digest", "actor", "tnt_a", 0, now=0)
    with flask.Flask(__name__).test_request_context():
        assert cache.get("digest", now=1) is not None
        generations.values["tnt_a"] = 1
        assert cache.get("digest", now=1) is None
    assert generations.reads == 2
