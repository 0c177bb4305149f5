"""The deployed shape: two gunicorn servers (2 workers each) on one PostgreSQL, Redis and S3.

S3 is a moto server over HTTP on a free loopback port, taken down mid-run to prove that a
storage outage is a clean 503 that leaves nothing half-written, and that service recovers.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator

import pytest
import redis
import requests

from tests.integration.test_auth_multiprocess import (
    REDIS_URL,
    Deployment,
    deployment,
    secrets_env,
)
from tests.stack import postgres_database
from tests.support import redisdb
from tests.support.factories import bearer, make_api_key, make_tenant
from tests.support.s3server import aws_environment, moto_s3

pytestmark = [pytest.mark.server, pytest.mark.integration]


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[tuple[Deployment, object]]:
    root = tmp_path_factory.mktemp("production-stack")
    flusher = redis.Redis.from_url(REDIS_URL)
    redisdb.flush(flusher)
    try:
        with moto_s3() as s3, aws_environment(s3.env), postgres_database() as database_url:
            env = {
                **secrets_env(),
                **s3.env,
                **{f"CTXCLOUD_{k}": str(v) for k, v in s3.config().items()},
                "CTXCLOUD_S3_MAX_ATTEMPTS": "1",
                "CTXCLOUD_S3_CONNECT_TIMEOUT": "2",
                "CTXCLOUD_DATABASE_URL": database_url,
                "CTXCLOUD_REDIS_URL": REDIS_URL,
                "CTXCLOUD_DATA_DIR": str(root / "data"),
            }
            with deployment(env, root / "logs") as deployed:
                yield deployed, s3
    finally:
        redisdb.flush(flusher)
        flusher.close()


@pytest.fixture(scope="module")
def auth(stack) -> dict[str, str]:
    deployed, _ = stack
    tenant = make_tenant(deployed.app, slug="prod")
    headers = bearer(make_api_key(deployed.app, tenant)[1])
    response = requests.post(
        deployed.a.url + "/api/v1/projects",
        json={"name": "Stack", "slug": "stack"},
        headers=headers,
        timeout=30,
    )
    assert response.status_code == 201, response.text
    return headers


def entry(server, path: str) -> str:
    return f"{server.url}/api/v1/projects/stack/context/entries/{path}"


def test_a_write_on_one_server_is_read_on_the_other(stack, auth):
    deployed, _ = stack
    data = os.urandom(3 * 1024 * 1024 + 17)  # several S3 parts' worth of segments
    put = requests.put(entry(deployed.a, "shared.bin"), data=data, headers=auth, timeout=60)
    assert put.status_code == 201, put.text
    got = requests.get(entry(deployed.b, "shared.bin"), headers=auth, timeout=60)
    assert got.status_code == 200
    assert hashlib.sha256(got.content).hexdigest() == hashlib.sha256(data).hexdigest()
    assert got.headers["ETag"] == put.headers["ETag"]


def test_revisions_stay_gap_free_with_writers_on_both_servers(stack, auth):
    deployed, _ = stack
    head = requests.get(f"{deployed.a.url}/api/v1/projects/stack", headers=auth, timeout=30)
    start = head.json()["revision"]
    failures: list[str] = []

    def writer(server, index: int) -> None:
        for n in range(4):
            response = requests.put(
                entry(server, f"race/{index}-{n}.txt"),
                data=f"{index}-{n}".encode(),
                headers=auth,
                timeout=60,
            )
            if response.status_code != 201:
                failures.append(f"{response.status_code} {response.text[:200]}")

    threads = [
        threading.Thread(target=writer, args=(server, i))
        for i, server in enumerate([deployed.a, deployed.b] * 4)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    listed = requests.get(
        f"{deployed.b.url}/api/v1/projects/stack/context/revisions",
        params={"page_size": 1000},
        headers=auth,
        timeout=30,
    ).json()
    numbers = sorted(r["revision"] for r in listed if r["revision"] > start)
    assert numbers == list(range(start + 1, start + 1 + 32))


def test_s3_outage_is_a_clean_503_and_service_recovers(stack, auth):
    deployed, s3 = stack
    before = requests.get(f"{deployed.a.url}/api/v1/projects/stack", headers=auth, timeout=30)
    s3.stop()
    try:
        for server in (deployed.a, deployed.b):
            ready = requests.get(server.url + "/api/v1/health/ready", timeout=30)
            assert ready.status_code == 503
            assert ready.json()["failing"] == ["storage"]
        put = requests.put(
            entry(deployed.a, "during-outage.txt"), data=b"x", headers=auth, timeout=60
        )
        assert put.status_code == 503
        assert put.json()["code"] == "unavailable"
        assert "Retry-After" in put.headers
        # Nothing half-written: no revision, no entry.
        during = requests.get(f"{deployed.b.url}/api/v1/projects/stack", headers=auth, timeout=30)
        assert during.json()["revision"] == before.json()["revision"]
    finally:
        s3.start()
    for server in (deployed.a, deployed.b):
        assert requests.get(server.url + "/api/v1/health/ready", timeout=30).status_code == 200
    again = requests.put(entry(deployed.b, "after-outage.txt"), data=b"y", headers=auth, timeout=60)
    assert again.status_code == 201
    assert (
        requests.get(entry(deployed.a, "during-outage.txt"), headers=auth, timeout=30).status_code
        == 404
    )
