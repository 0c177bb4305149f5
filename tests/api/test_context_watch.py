"""Long-polls: `wait` on the changes feed and on the manifest, woken by commits, within a cap.

No timing is asserted: a waiter must come back with the change (a generous bound only guards
against a hang), and a short wait must come back empty. Waking through the cross-process signal
(the data directory's file on the embedded tier, Redis pub/sub on the production tier) is
tested with a second app on the same database and signal, as another process would be.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from ctxcloud import create_app
from ctxcloud.plugins.context.watch import WATCH, RedisSignal, Watch, default_max_waiters
from tests import stack
from tests.support.context import context_url, create_project, put_entry
from tests.support.factories import bearer
from tests.support.server import free_port

GUARD = 30  # seconds: only a hung waiter takes this long


@pytest.fixture
def auth(owner_key):
    return bearer(owner_key)


def watch_of(app):
    return app.extensions["ctxcloud"].stash[WATCH]


def changes_url(project: str, **query) -> str:
    return f"{context_url(project)}/changes?" + "&".join(f"{k}={v}" for k, v in query.items())


def until(condition, what: str) -> None:
    """Wait for a condition of the server's state (never for time to pass)."""
    deadline = time.monotonic() + GUARD
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.005)


def waiting_on(app, project_id: str, count: int = 1):
    return lambda: watch_of(app).watched().count(project_id) and watch_of(app).waiting >= count


@pytest.fixture
def pool():
    with ThreadPoolExecutor(max_workers=4) as executor:
        yield executor


def test_a_waiter_gets_the_change_as_soon_as_it_commits(app, client, auth, pool):
    project = create_project(client, auth, slug="p")
    put_entry(client, auth, "p", "a.md", b"one", expect=201)
    waiter = pool.submit(
        app.test_client().get, changes_url("p", since=1, wait=GUARD * 2), headers=auth
    )
    until(waiting_on(app, project["id"]), "the request waits")
    started = time.monotonic()
    put_entry(client, auth, "p", "b.md", b"two", expect=201)
    response = waiter.result(timeout=GUARD)
    assert time.monotonic() - started < GUARD  # a guard, not a measure (bench/watchers.py)
    assert response.status_code == 200
    body = response.get_json()
    assert body["from_revision"] == 1 and body["revision"] == 2
    assert [(c["path"], c["action"]) for c in body["changes"]] == [("b.md", "put")]
    assert watch_of(app).waiting == 0 and watch_of(app).watched() == []


def test_every_write_path_wakes_waiters(app, client, auth, pool):
    project = create_project(client, auth, slug="p")
    put_entry(client, auth, "p", "a.md", b"one", expect=201)  # r1
    writes = [
        lambda: put_entry(client, auth, "p", "a.md", b"two", expect=200),
        lambda: client.post(
            context_url("p") + "/commits",
            json={"put": [{"path": "c.md", "content": "c"}]},
            headers=auth,
        ),
        lambda: client.delete(context_url("p") + "/entries/c.md", headers=auth),
    ]
    for since, write in enumerate(writes, start=1):
        waiter = pool.submit(
            app.test_client().get, changes_url("p", since=since, wait=GUARD * 2), headers=auth
        )
        until(waiting_on(app, project["id"]), "the request waits")
        write()
        body = waiter.result(timeout=GUARD).get_json()
        assert body["revision"] == since + 1 and len(body["changes"]) == 1


def test_a_short_wait_ends_empty(client, auth):
    create_project(client, auth, slug="p")
    put_entry(client, auth, "p", "a.md", b"one", expect=201)
    response = client.get(changes_url("p", since=1, wait=0.2), headers=auth)
    assert response.status_code == 200
    assert response.get_json() == {
        "from_revision": 1,
        "revision": 1,
        "history_starts_at": 0,
        "changes": [],
    }


def test_wait_answers_at_once_when_the_project_already_moved(app, client, auth):
    create_project(client, auth, slug="p")
    put_entry(client, auth, "p", "a.md", b"one", expect=201)
    app.config["WATCH_MAX_WAITERS"] = 1
    watch_of(app).max_waiters = 0  # nobody may wait: an answer that needs no wait still comes
    response = client.get(changes_url("p", since=0, wait=60), headers=auth)
    assert response.status_code == 200 and len(response.get_json()["changes"]) == 1


def test_waiters_past_the_cap_are_answered_at_once_with_retry_after(app, client, auth, pool):
    project = create_project(client, auth, slug="p")
    watch = watch_of(app)
    watch.max_waiters = 1
    first = pool.submit(
        app.test_client().get, changes_url("p", since=0, wait=GUARD * 2), headers=auth
    )
    until(waiting_on(app, project["id"]), "the first request waits")
    refused = client.get(changes_url("p", since=0, wait=GUARD * 2), headers=auth)
    assert refused.status_code == 503
    assert refused.get_json()["code"] == "too_many_watchers"
    assert int(refused.headers["Retry-After"]) == watch.retry_after >= 1
    manifest = client.get(context_url("p"), headers=auth)
    refused = client.get(
        context_url("p", wait=GUARD * 2),
        headers={**auth, "If-None-Match": manifest.headers["ETag"]},
    )
    assert refused.status_code == 503 and "Retry-After" in refused.headers
    # Requests that do not wait are served as ever, and the waiter is still there.
    assert client.get(changes_url("p", since=0), headers=auth).status_code == 200
    assert watch.waiting == 1
    put_entry(client, auth, "p", "a.md", b"one", expect=201)
    assert first.result(timeout=GUARD).get_json()["revision"] == 1
    assert watch.waiting == 0


def test_the_default_cap_is_a_quarter_of_the_threads(app, monkeypatch):
    assert default_max_waiters(8) == 2
    assert default_max_waiters(3) == 1
    assert default_max_waiters(64) == 16
    monkeypatch.setenv("CTXCLOUD_WORKER_THREADS", "40")
    assert default_max_waiters() == 10


def test_a_waiter_holds_no_database_connection(app, client, auth, pool):
    project = create_project(client, auth, slug="p")
    db = app.extensions["ctxcloud"].database
    waiter = pool.submit(
        app.test_client().get, changes_url("p", since=0, wait=GUARD * 2), headers=auth
    )
    until(waiting_on(app, project["id"]), "the request waits")
    until(lambda: not db._in_use, "the waiter's connection is back in the pool")
    put_entry(client, auth, "p", "a.md", b"one", expect=201)
    assert waiter.result(timeout=GUARD).status_code == 200


def test_the_manifest_waits_with_if_none_match(app, client, auth, pool):
    project = create_project(client, auth, slug="p")
    put_entry(client, auth, "p", "a.md", b"one", expect=201)
    first = client.get(context_url("p"), headers=auth)
    etag = first.headers["ETag"]
    # Nothing changes: 304 after the wait, with the same ETag.
    quiet = client.get(context_url("p", wait=0.2), headers={**auth, "If-None-Match": etag})
    assert quiet.status_code == 304 and quiet.headers["ETag"] == etag
    # A change: the new manifest as soon as it commits.
    waiter = pool.submit(
        app.test_client().get,
        context_url("p", wait=GUARD * 2),
        headers={**auth, "If-None-Match": etag},
    )
    until(waiting_on(app, project["id"]), "the manifest request waits")
    put_entry(client, auth, "p", "b.md", b"two", expect=201)
    response = waiter.result(timeout=GUARD)
    assert response.status_code == 200 and response.headers["ETag"] != etag
    assert response.get_json()["revision"] == 2
    assert [e["path"] for e in response.get_json()["entries"]] == ["a.md", "b.md"]
    # The ETag does not depend on `wait`; without If-None-Match, or with a stale one, no wait.
    assert (
        client.get(context_url("p", wait=60), headers=auth).headers["ETag"]
        == (response.headers["ETag"])
    )
    stale = client.get(context_url("p", wait=60), headers={**auth, "If-None-Match": etag})
    assert stale.status_code == 200
    # A past revision's manifest never changes: `wait` is ignored there.
    pinned = client.get(context_url("p", revision=1), headers=auth).headers["ETag"]
    again = client.get(
        context_url("p", revision=1, wait=60), headers={**auth, "If-None-Match": pinned}
    )
    assert again.status_code == 304 and watch_of(app).waiting == 0


@pytest.mark.parametrize("query", ["wait=0", "wait=61", "wait=x", "wait=-1", "wait=nan"])
def test_bad_manifest_waits_are_422(client, auth, query):
    create_project(client, auth, slug="p")
    put_entry(client, auth, "p", "a.md", b"one", expect=201)
    response = client.get(f"{context_url('p')}?{query}", headers=auth)
    assert response.status_code == 422
    assert response.get_json()["code"] == "validation_error"


def test_another_process_commit_wakes_the_waiter_through_the_signal(app, app_config, auth, pool):
    """A second app on the same database and signal (file or Redis) commits: only the
    cross-process signal can reach this app's waiter."""
    client = app.test_client()
    project = create_project(client, auth, slug="p")
    other = create_app(app_config)
    try:
        assert watch_of(other) is not watch_of(app)
        waiter = pool.submit(client.get, changes_url("p", since=0, wait=GUARD * 2), headers=auth)
        until(waiting_on(app, project["id"]), "the request waits")
        if stack.is_production:  # the subscription is up (else its first wake re-checks)
            until(watch_of(app).signal.subscribed.is_set, "subscribed")
        put_entry(other.test_client(), auth, "p", "a.md", b"one", expect=201)
        response = waiter.result(timeout=GUARD)
        assert response.status_code == 200
        assert [c["path"] for c in response.get_json()["changes"]] == ["a.md"]
    finally:
        stack.close(other)


def test_a_deleted_project_ends_the_wait_with_404(app, client, auth, pool):
    project = create_project(client, auth, slug="p")
    waiter = pool.submit(
        app.test_client().get, changes_url("p", since=0, wait=GUARD * 2), headers=auth
    )
    until(waiting_on(app, project["id"]), "the request waits")
    assert client.delete("/api/v1/projects/p", headers=auth).status_code == 204
    # Deleting raises no revision, so nothing signals it: the waiter ends at its deadline (or
    # on any wake of the project) and answers from the database. Wake it as a signal would.
    watch_of(app).wake(project["id"])
    assert waiter.result(timeout=GUARD).status_code == 404


def test_waiters_of_several_projects_each_get_their_own_change(app, client, auth, pool):
    project = create_project(client, auth, slug="p")
    second = create_project(client, auth, name="Second", slug="q")
    watch_of(app).max_waiters = 4
    waiters = [
        pool.submit(app.test_client().get, changes_url(ref, since=0, wait=GUARD * 2), headers=auth)
        for ref in ("p", "p", "q")
    ]
    until(lambda: watch_of(app).waiting == 3, "three requests wait")
    until(waiting_on(app, second["id"]), "the third registered")
    put_entry(client, auth, "q", "q.md", b"one", expect=201)
    assert waiters[2].result(timeout=GUARD).get_json()["changes"][0]["path"] == "q.md"
    assert watch_of(app).watched().count(project["id"]) == 1  # p's waiters still wait
    put_entry(client, auth, "p", "p.md", b"one", expect=201)
    for waiter in waiters[:2]:
        assert waiter.result(timeout=GUARD).get_json()["changes"][0]["path"] == "p.md"


def test_a_wait_past_watch_max_wait_is_shortened_not_refused(app, client, auth):
    create_project(client, auth, slug="p")
    watch_of(app).max_wait = 0.1  # WATCH_MAX_WAIT
    response = client.get(changes_url("p", since=0, wait=60), headers=auth)
    assert response.status_code == 200 and response.get_json()["changes"] == []


def test_a_lost_subscription_never_holds_a_waiter_past_its_deadline(app):
    """Redis unreachable: publishing fails quietly (the commit stands), the subscriber keeps
    retrying with its bounded backoff, and a waiter still ends at its deadline."""
    dead = redis.Redis(
        host="127.0.0.1", port=free_port(), socket_connect_timeout=0.2, socket_timeout=0.2
    )
    watch = Watch(max_waiters=1, retry_after=1)
    watch.signal = RedisSignal(watch, dead, "test:")
    with app.app_context():
        watch.changed("prj_nobody")  # no exception: logged, and the commit is not undone
        assert watch.wait_until("prj_nobody", lambda: False, time.monotonic() + 0.3) is False
    assert not watch.signal.subscribed.is_set()
    assert watch.waiting == 0 and watch.watched() == []


@pytest.mark.skipif(not stack.is_production, reason="Redis pub/sub: the production tier")
def test_the_subscriber_comes_back_after_its_connection_is_killed(app, app_config, auth, pool):
    """The subscription drops: the subscriber reconnects, wakes every waiter to re-read the
    database (a change may have been published meanwhile), and hears changes again."""
    client = app.test_client()
    project = create_project(client, auth, slug="p")
    watch = watch_of(app)
    rounds = []

    def moved() -> bool:
        rounds.append(1)
        return False

    waiter = pool.submit(_wait_in_app, app, watch, project["id"], moved)
    until(watch.signal.subscribed.is_set, "subscribed")
    server = app.extensions["ctxcloud"].redis
    name = watch.signal.client_name
    [mine] = [c for c in server.client_list(_type="pubsub") if c["name"] == name]
    before = len(rounds)
    server.client_kill_filter(_id=mine["id"])
    until(lambda: len(rounds) > before and watch.signal.subscribed.is_set(), "re-subscribed")
    assert waiter.done() is False  # woken to re-check, still waiting: nothing moved
    other = create_app(app_config)
    try:
        put_entry(other.test_client(), auth, "p", "a.md", b"one", expect=201)
    finally:
        stack.close(other)
    waiter.result(timeout=GUARD)  # the new subscription heard the other app's change


def _wait_in_app(app, watch, project_id, moved):
    """Wait for a publish of the project (moved() counts the re-checks) until woken by one."""
    heard = threading.Event()
    original = watch.wake

    def wake(woken: str) -> None:
        if woken == project_id:
            heard.set()
        original(woken)

    watch.wake = wake
    with app.app_context():
        deadline = time.monotonic() + GUARD
        watch.wait_until(project_id, lambda: heard.is_set() or moved(), deadline)
    assert heard.is_set()
