"""Small objects' ciphertext kept per process (app/object_cache.py): a hot small entry is read
from storage once, every read is still authenticated, and nothing unverified is kept."""

from __future__ import annotations

import pytest

from tests.support.context import (
    create_project,
    entry_url,
    object_file,
    object_key_of,
    put_entry,
    storage,
)
from tests.support.factories import bearer, make_api_key

# Runs again on each cloud storage backend (tests/stack.py, CTXCLOUD_TEST_STORAGE).
pytestmark = pytest.mark.every_backend

SMALL = b"a hot small entry\n" * 200


@pytest.fixture
def auth(app, tenant) -> dict:
    return bearer(make_api_key(app, tenant)[1])


@pytest.fixture
def project(client, auth) -> dict:
    return create_project(client, auth, name="Hot", slug="hot")


@pytest.fixture
def backend_reads(app, monkeypatch) -> list[str]:
    """The keys the storage backend is asked for, read by read."""
    backend = storage(app)
    asked: list[str] = []
    original = backend.get

    def get(key, *args, **kwargs):
        asked.append(key)
        return original(key, *args, **kwargs)

    monkeypatch.setattr(backend, "get", get)
    return asked


def read(client, auth, path="a.txt", **headers):
    return client.get(entry_url("hot", path), headers={**auth, **headers})


def test_a_small_entry_is_fetched_from_storage_once(client, auth, project, backend_reads):
    put_entry(client, auth, "hot", "a.txt", SMALL, expect=201)
    answers = [read(client, auth) for _ in range(5)]
    assert [a.status_code for a in answers] == [200] * 5
    assert all(a.get_data() == SMALL for a in answers)
    assert len(backend_reads) == 1


def test_ranges_are_served_from_the_kept_ciphertext(client, auth, project, backend_reads):
    put_entry(client, auth, "hot", "a.txt", SMALL, expect=201)
    assert read(client, auth).status_code == 200
    part = read(client, auth, Range="bytes=10-99")
    assert part.status_code == 206
    assert part.get_data() == SMALL[10:100]
    assert len(backend_reads) == 1


def test_a_range_alone_keeps_nothing(client, auth, project, backend_reads):
    put_entry(client, auth, "hot", "a.txt", SMALL, expect=201)
    assert read(client, auth, Range="bytes=0-9").get_data() == SMALL[:10]
    assert read(client, auth).get_data() == SMALL
    assert read(client, auth).get_data() == SMALL
    assert len(backend_reads) == 2  # the range's segments, then the whole object once


def test_a_tampered_object_is_refused_and_not_kept(app, client, auth, project, backend_reads):
    put_entry(client, auth, "hot", "a.txt", SMALL, expect=201)
    stored = object_file(app, object_key_of(app, project["id"], "a.txt"))
    good = stored.read_bytes()
    stored.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    asked = len(backend_reads)
    assert read(client, auth).status_code == 500
    assert read(client, auth).status_code == 500
    assert len(backend_reads) == asked + 2  # refused twice, from storage both times
    stored.write_bytes(good)  # repaired by the operator
    assert read(client, auth).get_data() == SMALL


def test_a_large_entry_is_not_kept(client, auth, project, backend_reads, app):
    limit = app.extensions["ctxcloud"].object_cache.max_object
    big = b"x" * (limit + 1)
    put_entry(client, auth, "hot", "big.bin", big, expect=201)
    assert read(client, auth, "big.bin").get_data() == big
    assert read(client, auth, "big.bin").get_data() == big
    assert len(backend_reads) == 2


def test_a_new_version_is_read_under_its_own_key(client, auth, project):
    put_entry(client, auth, "hot", "a.txt", SMALL, expect=201)
    assert read(client, auth).get_data() == SMALL
    put_entry(client, auth, "hot", "a.txt", b"changed", expect=200)
    assert read(client, auth).get_data() == b"changed"


def test_the_cache_can_be_turned_off(client, auth, project, backend_reads, app):
    app.extensions["ctxcloud"].object_cache.max_bytes = 0
    put_entry(client, auth, "hot", "a.txt", SMALL, expect=201)
    for _ in range(3):
        assert read(client, auth).get_data() == SMALL
    assert len(backend_reads) == 3
