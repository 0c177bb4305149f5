"""Concurrent misses of one manifest build it once; the others wait for that build."""

from __future__ import annotations

import threading
import time

from ctxcloud.plugins.context import manifest_cache as module
from ctxcloud.plugins.context.manifest_cache import ManifestCache


def test_concurrent_misses_of_one_etag_build_it_once():
    cache = ManifestCache(max_bytes=1 << 20)
    release = threading.Event()
    builds: list[int] = []
    answers: list[bytes] = []

    def build() -> bytes:
        builds.append(1)
        release.wait(5)
        return b'{"entries": []}'

    def ask() -> None:
        answers.append(cache.get_or_build('"m1"', build))

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for thread in threads:
        thread.start()
    # Every asker is in: one builds, seven wait on its event (the condition's waiters).
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        building = cache.building.get('"m1"')
        if building is not None and len(building._cond._waiters) == 7:
            break
    assert len(builds) == 1
    assert len(cache.building['"m1"']._cond._waiters) == 7
    release.set()
    for thread in threads:
        thread.join(10)
    assert builds == [1]
    assert answers == [b'{"entries": []}'] * 8
    assert cache.building == {}
    assert cache.get('"m1"') == b'{"entries": []}'


def test_a_failed_build_lets_the_waiters_build_their_own(monkeypatch):
    cache = ManifestCache(max_bytes=1 << 20)
    monkeypatch.setattr(module, "BUILD_WAIT", 5.0)
    started, release = threading.Event(), threading.Event()
    outcomes: list[object] = []

    def failing() -> bytes:
        started.set()
        release.wait(5)
        raise RuntimeError("the database went away")

    def leader() -> None:
        try:
            cache.get_or_build('"m2"', failing)
        except RuntimeError as exc:
            outcomes.append(exc)

    first = threading.Thread(target=leader)
    first.start()
    started.wait(5)
    second = threading.Thread(
        target=lambda: outcomes.append(cache.get_or_build('"m2"', lambda: b"own"))
    )
    second.start()
    release.set()
    first.join(10)
    second.join(10)
    assert any(isinstance(o, RuntimeError) for o in outcomes)
    assert b"own" in outcomes
    assert cache.building == {}


def test_a_body_too_large_to_keep_is_still_answered():
    cache = ManifestCache(max_bytes=16)
    assert cache.get_or_build('"m3"', lambda: b"x" * 100) == b"x" * 100
    assert cache.get('"m3"') is None
    assert cache.building == {}
