"""Fixtures the unit tests share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from tests.support import redisdb


@pytest.fixture
def redis_client() -> Iterator[redis.Redis]:
    """A client of this run's Redis database, emptied before and after the test."""
    client = redis.Redis.from_url(redisdb.url())
    redisdb.flush(client)
    yield client
    redisdb.flush(client)
    client.close()
