"""Dependencies that hang (accept connections, never answer) cost a bounded wait and a 503,
never the whole service: health and the routes that do not need them keep answering.

Each hung dependency is a black hole on a free loopback port (tests/support/blackhole.py).
Client timeouts here are failure bounds: a request that should answer at once is given a
second, one that waits on a hung dependency is given far more than its configured bound.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from ctxcloud import create_app
from ctxcloud.plugins.auth_apikey.keys import KEY_EXAMPLE
from tests.integration.served import served
from tests.support.blackhole import black_hole

pytestmark = [pytest.mark.integration]

HUNG_S3 = {
    "CTXCLOUD_STORAGE_BACKEND": "s3",
    "CTXCLOUD_S3_BUCKET": "hung",
    "CTXCLOUD_S3_REGION": "us-east-1",
    "CTXCLOUD_S3_ADDRESSING_STYLE": "path",
    "CTXCLOUD_S3_CONNECT_TIMEOUT": "1",
    "AWS_ACCESS_KEY_ID": "hung-test",
    "AWS_SECRET_ACCESS_KEY": "hung-test-secret",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def put_entry(service, path: str, timeout: float) -> requests.Response:
    return requests.put(
        f"{service.url}/api/v1/projects/notes/context/entries/{path}",
        data=b"# hello",
        headers={**service.headers, "Content-Type": "text/markdown"},
        timeout=timeout,
    )


@pytest.mark.server
def test_with_storage_hung_database_routes_and_health_answer_and_storage_routes_get_503(
    tmp_path,
):
    """Storage that never answers (reads wait 60 s here): the storage bulkhead (2 of the
    worker's 4 threads) fills, every further storage request is refused at once with 503
    and Retry-After, and health and database-only routes answer throughout."""
    with black_hole() as hole:
        env = {
            **HUNG_S3,
            "CTXCLOUD_S3_ENDPOINT_URL": f"http://127.0.0.1:{hole.port}",
            "CTXCLOUD_S3_READ_TIMEOUT": "60",
            "CTXCLOUD_S3_RETRY_BUDGET": "120",
        }
        with served(tmp_path, workers=1, threads=4, env=env) as service:
            created = requests.post(
                f"{service.url}/api/v1/projects",
                json={"name": "Notes", "slug": "notes"},
                headers=service.headers,
                timeout=10,
            )
            assert created.status_code == 201, created.text
            stuck = ThreadPoolExecutor(max_workers=2)
            waiting = [stuck.submit(put_entry, service, f"stuck-{n}.md", 300) for n in range(2)]

            refused = None
            for attempt in range(20):  # until both slots are taken by hanging uploads
                try:
                    response = put_entry(service, f"late-{attempt}.md", 2)
                except requests.Timeout:
                    continue  # it took a slot before the others did: it hangs too
                if response.status_code == 503:
                    refused = response
                    break
            assert refused is not None
            assert refused.json()["code"] == "unavailable"
            assert int(refused.headers["Retry-After"]) > 0

            for _ in range(5):
                assert requests.get(f"{service.url}/api/v1/health/live", timeout=1).ok
                for route in ("/api/v1/projects", "/api/v1/projects/notes/context"):
                    answer = requests.get(service.url + route, headers=service.headers, timeout=1)
                    assert answer.status_code == 200, answer.text
                # ... and the slots are still taken: the checks ran while storage hung.
                assert put_entry(service, "another.md", 1).status_code == 503
            # The hang ends: the uploads that waited fail (503) and nothing was stored.
            hole.close()
            results = [future.result(timeout=120) for future in waiting]
            assert [r.status_code for r in results] == [503, 503]
            stuck.shutdown()
            manifest = requests.get(
                f"{service.url}/api/v1/projects/notes/context", headers=service.headers, timeout=5
            )
            assert manifest.json()["entries"] == []


@pytest.mark.server
def test_a_storage_call_on_a_hung_store_ends_within_its_retry_budget(tmp_path):
    """Reads wait 1 s and a call may take 4 s in all: a write to a store that never answers
    is a 503 well before the client's (generous) bound, and readiness names storage."""
    with black_hole() as hole:
        env = {
            **HUNG_S3,
            "CTXCLOUD_S3_ENDPOINT_URL": f"http://127.0.0.1:{hole.port}",
            "CTXCLOUD_S3_READ_TIMEOUT": "1",
            "CTXCLOUD_S3_RETRY_BUDGET": "4",
        }
        with served(tmp_path, workers=1, threads=4, env=env) as service:
            requests.post(
                f"{service.url}/api/v1/projects",
                json={"name": "Notes", "slug": "notes"},
                headers=service.headers,
                timeout=10,
            ).raise_for_status()
            answer = put_entry(service, "hung.md", timeout=30)
            assert answer.status_code == 503
            assert answer.json()["code"] == "unavailable"
            ready = requests.get(f"{service.url}/api/v1/health/ready", timeout=30)
            assert ready.status_code == 503
            assert ready.json()["failing"] == ["storage"]


def test_with_postgresql_hung_health_live_answers_and_database_routes_get_503(tmp_path):
    with black_hole() as hole:
        app = create_app(
            {
                "ENV": "testing",
                "DATA_DIR": str(tmp_path / "data"),
                "DATABASE_URL": f"postgresql://ctx@127.0.0.1:{hole.port}/ctx",
                "DATABASE_CONNECT_TIMEOUT": 2,
            }
        )
        client = app.test_client()
        assert client.get("/api/v1/health/live").status_code == 200
        ready = client.get("/api/v1/health/ready")
        assert ready.status_code == 503
        assert ready.json["failing"] == ["database"]
        # A well-formed key: finding it needs the database.
        listing = client.get("/api/v1/projects", headers={"Authorization": f"Bearer {KEY_EXAMPLE}"})
        assert listing.status_code == 503
        assert listing.json["code"] == "unavailable"
        assert listing.headers["Retry-After"]


def test_with_redis_hung_requests_get_503_and_only_a_few_threads_wait_on_it(tmp_path):
    """Redis answers nothing: each wait ends after its socket timeout; at most the pool's
    connections (2 here) wait on it at once, the other requests are refused after the short
    pool wait; health/live never touches it."""
    with black_hole() as hole:
        app = create_app(
            {
                "ENV": "testing",
                "DATA_DIR": str(tmp_path / "data"),
                "REDIS_URL": f"redis://127.0.0.1:{hole.port}/0",
                "REDIS_SOCKET_TIMEOUT": 2,
                "REDIS_MAX_CONNECTIONS": 2,
                "REDIS_POOL_TIMEOUT": 0.1,
            }
        )
        client = app.test_client()
        assert client.get("/api/v1/health/live").status_code == 200
        start = threading.Barrier(6)

        def call() -> int:
            start.wait()
            return app.test_client().get("/api/v1/projects").status_code

        with ThreadPoolExecutor(max_workers=6) as pool:
            assert list(pool.map(lambda _: call(), range(6))) == [503] * 6
        assert len(hole.held) <= 2  # never more connections waiting on it than the cap
        assert client.get("/api/v1/health/live").status_code == 200
        ready = client.get("/api/v1/health/ready")
        assert ready.status_code == 503 and ready.json["failing"] == ["cache"]
