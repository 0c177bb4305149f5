"""The context plugin's cached hot rows (plugins/context/hot_rows.py): a warm read asks the
database nothing (and, with Redis, makes one round trip: the rate limiter's script, which reads
the tenant's data generation too), and every write is read back by the very next request.

Statements are counted on the app's database object (`execute_sql`, every thread); Redis round
trips are the commands, pipelines and scripts sent from the test's thread, where the test
client runs each request (the credential subscriber's pings, on its own thread, are not the
request's). The caches' bounds are set far beyond the test's length, so no entry ages out
mid-test on a busy machine: only a change may make a read reach the database.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from ctxcloud.plugins.context.watch import WATCH
from ctxcloud.tenancy.data_cache import data_caches
from tests import stack
from tests.api.test_core import assert_problem
from tests.api.test_export_import import export, import_
from tests.support.context import (
    context_url,
    create_project,
    entry_url,
    project_url,
    put_entry,
)
from tests.support.factories import bearer
from tests.unit.test_ratelimit_counters import RoundTrips

GUARD = 30  # seconds: only a hung request takes this long
KiB = 1024


@pytest.fixture
def app_config(app_config):
    return {
        **app_config,
        "DATA_CACHE_TTL": 3600,
        "AUTH_CACHE_TTL": 3600,
        "API_KEY_LAST_USED_INTERVAL": 3600,
        # With Redis, a subscriber slowed down by a busy machine sends the credential checks
        # to Redis for a while (tests/unit/test_generation_mirror.py): not under test here.
        "REVOCATION_MAX_DELAY": 30,
    }


@pytest.fixture
def auth(owner_key):
    return bearer(owner_key)


class Statements:
    """SQL statements the app's database runs (any thread) while counting."""

    def __init__(self, app, monkeypatch) -> None:
        self.sql: list[str] = []
        db = app.extensions["ctxcloud"].database
        run = type(db).execute_sql

        def counted(database, sql, *args, **kwargs):
            if database is db:
                self.sql.append(sql)
            return run(database, sql, *args, **kwargs)

        monkeypatch.setattr(type(db), "execute_sql", counted)


def poll_until(condition, what: str) -> None:
    """Wait for a state of the app (never for time to pass)."""
    deadline = time.monotonic() + GUARD
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.005)


def warm(client, auth, url: str, times: int = 2):
    for _ in range(times):
        response = client.get(url, headers=auth)
        assert response.status_code == 200, response.get_data(as_text=True)
    return response


def test_a_warm_read_runs_no_sql(app, client, auth, monkeypatch):
    create_project(client, auth, slug="p")
    data = bytes(range(256)) * 16  # 4 KiB
    put_entry(client, auth, "p", "notes/a.md", data, expect=201)
    manifest = warm(client, auth, context_url("p"))
    warm(client, auth, entry_url("p", "notes/a.md"))
    statements = Statements(app, monkeypatch)
    for _ in range(3):
        again = client.get(context_url("p"), headers=auth)
        assert again.status_code == 200 and again.get_data() == manifest.get_data()
        entry = client.get(entry_url("p", "notes/a.md"), headers=auth)
        assert entry.status_code == 200 and entry.get_data() == data
    assert statements.sql == []


def test_a_cold_read_asks_the_database(app, client, auth, monkeypatch):
    """The counting above sees the reads it must: with the caches off, every read asks."""
    create_project(client, auth, slug="p")
    put_entry(client, auth, "p", "a.md", b"x", expect=201)
    warm(client, auth, context_url("p"))
    warm(client, auth, entry_url("p", "a.md"))
    for cache in data_caches(app).caches.values():
        monkeypatch.setattr(cache, "ttl", 0)  # as CTXCLOUD_DATA_CACHE_TTL=0
        cache.entries.clear()
    statements = Statements(app, monkeypatch)
    assert client.get(context_url("p"), headers=auth).status_code == 200
    assert len(statements.sql) == 1  # the project (the manifest itself is cached)
    assert client.get(entry_url("p", "a.md"), headers=auth).status_code == 200
    assert len(statements.sql) == 3  # the project, the entry's head version


@pytest.mark.skipif(not stack.is_production, reason="Redis: the production tier")
def test_a_warm_manifest_read_is_one_redis_round_trip(app, client, auth, monkeypatch):
    create_project(client, auth, slug="p")
    put_entry(client, auth, "p", "a.md", b"x" * 4 * KiB, expect=201)
    mirror = app.extensions["ctxcloud.credentials"].generations.mirror
    warm(client, auth, context_url("p"))
    poll_until(lambda: mirror.synced, "the credential subscriber is listening")
    warm(client, auth, context_url("p"))
    warm(client, auth, entry_url("p", "a.md"))
    trips = RoundTrips(monkeypatch)
    statements = Statements(app, monkeypatch)
    for _ in range(5):
        for url in (context_url("p"), entry_url("p", "a.md")):
            trips.count = 0
            response = client.get(url, headers=auth)
            assert response.status_code == 200 and "RateLimit-Limit" in response.headers
            assert trips.count == 1  # the rate limiter's script, the data generation read in it
    assert statements.sql == []


def test_a_write_is_read_back_at_once(client, auth):
    create_project(client, auth, slug="p")
    put_entry(client, auth, "p", "a.md", b"one", expect=201)
    first = warm(client, auth, context_url("p")).get_json()
    assert warm(client, auth, entry_url("p", "a.md")).get_data() == b"one"
    put_entry(client, auth, "p", "a.md", b"two", expect=200)
    assert client.get(entry_url("p", "a.md"), headers=auth).get_data() == b"two"
    manifest = client.get(context_url("p"), headers=auth).get_json()
    assert manifest["revision"] == first["revision"] + 1
    assert client.get(project_url("p"), headers=auth).get_json()["revision"] == 2


def test_every_entry_write_path_is_read_back_at_once(client, auth):
    create_project(client, auth, slug="p")
    put_entry(client, auth, "p", "a.md", b"one", expect=201)
    warm(client, auth, entry_url("p", "a.md"))
    warm(client, auth, context_url("p"))
    committed = client.post(
        context_url("p") + "/commits",
        json={"put": [{"path": "a.md", "content": "by commit"}]},
        headers=auth,
    )
    assert committed.status_code == 201, committed.get_data(as_text=True)
    assert client.get(entry_url("p", "a.md"), headers=auth).get_data() == b"by commit"
    assert client.get(context_url("p"), headers=auth).get_json()["revision"] == 2
    warm(client, auth, entry_url("p", "a.md"))
    assert client.delete(entry_url("p", "a.md"), headers=auth).status_code == 204
    assert_problem(client.get(entry_url("p", "a.md"), headers=auth), 404, "not_found")
    assert client.get(context_url("p"), headers=auth).get_json()["entries"] == []


def test_a_renamed_slug_moves_at_once(client, auth):
    project = create_project(client, auth, slug="p")
    put_entry(client, auth, "p", "a.md", b"one", expect=201)
    for url in (context_url("p"), entry_url("p", "a.md"), project_url(project["id"])):
        warm(client, auth, url)
    renamed = client.patch(project_url("p"), json={"slug": "q"}, headers=auth)
    assert renamed.status_code == 200, renamed.get_data(as_text=True)
    assert_problem(client.get(context_url("p"), headers=auth), 404, "not_found")
    assert_problem(client.get(entry_url("p", "a.md"), headers=auth), 404, "not_found")
    assert client.get(context_url("q"), headers=auth).status_code == 200
    assert client.get(entry_url("q", "a.md"), headers=auth).get_data() == b"one"
    assert client.get(project_url(project["id"]), headers=auth).get_json()["slug"] == "q"


def test_a_deleted_project_is_gone_at_once(client, auth):
    project = create_project(client, auth, slug="p")
    put_entry(client, auth, "p", "a.md", b"one", expect=201)
    for url in (context_url("p"), entry_url("p", "a.md"), project_url(project["id"])):
        warm(client, auth, url)
    assert client.delete(project_url("p"), headers=auth).status_code == 204
    for url in (context_url("p"), entry_url("p", "a.md"), project_url(project["id"])):
        assert_problem(client.get(url, headers=auth), 404, "not_found")


def test_a_project_created_after_a_miss_is_found_at_once(client, auth):
    for _ in range(2):
        assert_problem(client.get(context_url("later"), headers=auth), 404, "not_found")
    create_project(client, auth, slug="later")
    assert client.get(context_url("later"), headers=auth).status_code == 200
    assert client.get(project_url("later"), headers=auth).get_json()["slug"] == "later"


def test_a_long_poll_answers_the_new_revision_not_the_cached_one(app, client, auth):
    project = create_project(client, auth, slug="p")
    put_entry(client, auth, "p", "a.md", b"one", expect=201)
    before = warm(client, auth, context_url("p"))
    watch = app.extensions["ctxcloud"].stash[WATCH]
    with ThreadPoolExecutor(max_workers=1) as pool:
        waiter = pool.submit(
            app.test_client().get,
            context_url("p", wait=60),
            headers={**auth, "If-None-Match": before.headers["ETag"]},
        )
        poll_until(
            lambda: project["id"] in watch.watched() and watch.waiting >= 1, "the request waits"
        )
        writer = threading.Thread(
            target=put_entry, args=(app.test_client(), auth, "p", "a.md", b"two", 200)
        )
        writer.start()
        response = waiter.result(timeout=GUARD * 2)
        writer.join(GUARD)
    assert response.status_code == 200, response.status_code
    assert response.get_json()["revision"] == before.get_json()["revision"] + 1
    assert response.headers["ETag"] != before.headers["ETag"]


def test_an_imported_project_is_found_at_once(client, auth):
    create_project(client, auth, slug="p")
    put_entry(client, auth, "p", "a.md", b"one", expect=201)
    archive = export(client, auth, "p")
    for _ in range(2):
        assert_problem(client.get(context_url("copy"), headers=auth), 404, "not_found")
    imported = import_(client, auth, archive, slug="copy")
    assert imported.status_code == 201, imported.get_data(as_text=True)
    assert client.get(entry_url("copy", "a.md"), headers=auth).get_data() == b"one"


def test_a_pruned_history_is_read_at_once(app, client, auth):
    create_project(client, auth, slug="p")
    for i in range(3):
        put_entry(client, auth, "p", "a.md", f"v{i}".encode())
    warm(client, auth, project_url("p"))
    assert warm(client, auth, project_url("p")).get_json()["history_starts_at"] == 0
    result = app.test_cli_runner().invoke(args=["context", "prune", "--keep", "1"])
    assert result.exit_code == 0, result.output
    assert client.get(project_url("p"), headers=auth).get_json()["history_starts_at"] == 3
