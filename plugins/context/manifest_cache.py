"""Serialized manifests by ETag, per process: a manifest names one revision, so it never changes.

The ETag is derived from the project id, the revision and the query, and a revision's
entries are immutable (pruning only removes revisions before `history_starts_at`, which are
refused before the cache is asked). Every request still resolves the project for its caller
and checks the revision, so the cache answers only what the caller may read. Only manifests
without inlined content are kept: no entry plaintext stays in memory. Bounded by bytes;
the least recently used go first.

Concurrent misses of one ETag build it once (``get_or_build``): the first request builds,
the others wait for it (at most ``BUILD_WAIT`` seconds; then, or if the body is too large
to keep, each builds its own). A cold 10,000-entry manifest asked by 16 clients at once is
then one build, not 16 competing for the same CPUs.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

import flask

from ctxcloud import StashKey, stash

# Seconds a request waits for another's build of the same manifest before building its own.
BUILD_WAIT = 10.0


class ManifestCache:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self.bodies: OrderedDict[str, bytes] = OrderedDict()
        self.building: dict[str, threading.Event] = {}
        self.lock = threading.Lock()

    def get_or_build(self, etag: str, build: Callable[[], bytes]) -> bytes:
        """The body for `etag`: kept, or built by `build` once however many ask at once."""
        with self.lock:
            body = self.bodies.get(etag)
            if body is not None:
                self.bodies.move_to_end(etag)
                return body
            building = self.building.get(etag)
            if building is None:
                building = self.building[etag] = threading.Event()
                leader = True
            else:
                leader = False
        if not leader:
            if building.wait(BUILD_WAIT):
                body = self.get(etag)
                if body is not None:
                    return body
            return build()  # the build failed, was too large to keep, or is slow
        try:
            body = build()
            self.put(etag, body)
            return body
        finally:
            with self.lock:
                self.building.pop(etag, None)
            building.set()

    def get(self, etag: str) -> bytes | None:
        with self.lock:
            body = self.bodies.get(etag)
            if body is not None:
                self.bodies.move_to_end(etag)
            return body

    def put(self, etag: str, body: bytes) -> None:
        if len(body) > self.max_bytes // 4:
            return
        with self.lock:
            if etag in self.bodies:
                return
            self.bodies[etag] = body
            self.size += len(body)
            while self.size > self.max_bytes:
                _, dropped = self.bodies.popitem(last=False)
                self.size -= len(dropped)


MANIFEST_CACHE = StashKey[ManifestCache]("context.manifest_cache")


def init_manifest_cache(app: flask.Flask) -> None:
    stash(app)[MANIFEST_CACHE] = ManifestCache(int(app.config["MANIFEST_CACHE_BYTES"]))


def manifest_cache() -> ManifestCache:
    return stash()[MANIFEST_CACHE]
