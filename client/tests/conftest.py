"""Fixtures of the client's unit tests: httpx mocked by respx, a fake clock and sleep.

These tests need nothing of the server (they run in `make test` from setup.cfg's testpaths,
and alone with `pytest client/tests` once `pip install ./client[test]`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import respx

from ctxcloud_client import Client

ROOT = "http://ctx.test"
API = ROOT + "/api/v1"


class FakeTime:
    """A monotonic clock that moves only when the client sleeps (or a test says so)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    """Every request to the API is mocked; one that no route matches fails the test."""
    with respx.mock(base_url=API, assert_all_called=False) as router:
        yield router


@pytest.fixture
def make_client(fake_time: FakeTime) -> Iterator[Callable[..., Client]]:
    made: list[Client] = []

    def make(**kwargs) -> Client:
        if not {"api_key", "token", "client_id"} & kwargs.keys():
            kwargs["api_key"] = "ctx_test_key"
        kwargs.setdefault("sleep", fake_time.sleep)
        kwargs.setdefault("clock", fake_time.clock)
        client = Client(ROOT, **kwargs)
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


@pytest.fixture
def client(make_client) -> Client:
    return make_client()
