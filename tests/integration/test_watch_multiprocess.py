"""Long-polls across processes: a watcher on one gunicorn server wakes on a commit made through
another, on the embedded default (two servers sharing one data directory: SQLite and the
signal file) and on the production shape (PostgreSQL and Redis pub/sub).

Server A has one worker that lets one request wait (WATCH_MAX_WAITERS=1), so the test can see
that its watcher waits: a probe with a short `wait` is refused (503 `too_many_watchers`) only
while the watcher holds the place. Then a commit goes through server B, and the watcher must
come back with it. No timing is asserted (bench/watchers.py measures); a generous bound only
guards against a hang.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest
import redis
import requests

from ctxcloud import create_app
from tests.stack import postgres_database
from tests.support import redisdb
from tests.support.factories import bearer, make_api_key, make_tenant
from tests.support.server import cli, gunicorn

pytestmark = [pytest.mark.server, pytest.mark.integration, pytest.mark.slow]

GUARD = 30  # seconds: only a hung watcher takes this long


def secrets_env() -> dict[str, str]:
    master = base64.b64encode(secrets.token_bytes(32)).decode()
    return {
        "CTXCLOUD_ENV": "testing",
        "CTXCLOUD_MASTER_KEYS": json.dumps({"k1": master}),
        "CTXCLOUD_API_KEY_PEPPER": secrets.token_urlsafe(48),
        "CTXCLOUD_RATE_LIMIT_DEFAULT": "100000/minute",
        "CTXCLOUD_WATCH_MAX_WAITERS": "1",
    }


@contextmanager
def deployment(env: dict[str, str], logs) -> Iterator[tuple]:
    migrated = cli(env, "db", "upgrade")
    assert migrated.returncode == 0, migrated.stderr
    config = {key.removeprefix("CTXCLOUD_"): value for key, value in env.items()}
    config["MASTER_KEYS"] = json.loads(config["MASTER_KEYS"])
    app = create_app(config)
    try:
        tenant = make_tenant(app, slug="acme")
        key = make_api_key(app, tenant)[1]
        with gunicorn(env, logs, workers=1) as a, gunicorn(env, logs, workers=2) as b:
            yield a, b, bearer(key)
    finally:
        ext = app.extensions["ctxcloud"]
        ext.database.close_all()
        if ext.redis is not None:
            ext.redis.close()


@pytest.fixture(params=["embedded", "production"])
def deployed(request, tmp_path):
    env = {**secrets_env(), "CTXCLOUD_DATA_DIR": str(tmp_path / "data")}
    if request.param == "embedded":
        with deployment(env, tmp_path / "logs") as servers:
            yield servers
        return
    url = redisdb.url()
    flusher = redis.Redis.from_url(url)
    redisdb.flush(flusher)
    try:
        with postgres_database() as database_url:
            env.update(CTXCLOUD_DATABASE_URL=database_url, CTXCLOUD_REDIS_URL=url)
            with deployment(env, tmp_path / "logs") as servers:
                yield servers
    finally:
        redisdb.flush(flusher)
        flusher.close()


def changes(server, auth, since: int, wait: float | None = None) -> requests.Response:
    url = f"{server.url}/api/v1/projects/p/context/changes?since={since}"
    if wait is not None:
        url += f"&wait={wait}"
    return requests.get(url, headers=auth, timeout=GUARD * 2)


def watching(server, auth, since: int) -> requests.Response:
    """A watcher that waits (taking the one place once a probe has left it)."""
    deadline = time.monotonic() + GUARD
    while True:
        response = changes(server, auth, since, wait=GUARD)
        if response.status_code != 503 or time.monotonic() > deadline:
            return response


def until_waiting(server, auth, since: int) -> None:
    """Probe until server A refuses a second waiter: its watcher holds the place."""
    deadline = time.monotonic() + GUARD
    while changes(server, auth, since, wait=0.05).status_code != 503:
        assert time.monotonic() < deadline, "the watcher never waited"


def test_a_watcher_wakes_on_a_commit_through_another_server(deployed):
    a, b, auth = deployed
    created = requests.post(
        f"{b.url}/api/v1/projects", json={"name": "P", "slug": "p"}, headers=auth, timeout=30
    )
    assert created.status_code == 201, created.text
    with ThreadPoolExecutor(max_workers=1) as pool:
        for since, path in enumerate(["a.md", "b.md"]):
            watcher = pool.submit(watching, a, auth, since)
            until_waiting(a, auth, since)
            put = requests.put(
                f"{b.url}/api/v1/projects/p/context/entries/{path}",
                data=b"hello",
                headers=auth,
                timeout=30,
            )
            assert put.status_code == 201, put.text
            response = watcher.result(timeout=GUARD * 2)
            assert response.status_code == 200, response.text
            body = response.json()
            assert body["from_revision"] == since and body["revision"] == since + 1
            assert [(c["path"], c["action"]) for c in body["changes"]] == [(path, "put")]
