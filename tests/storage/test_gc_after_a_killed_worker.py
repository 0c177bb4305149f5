"""`ctxcloud storage gc` on every cloud backend, after a gunicorn worker is killed mid-upload.

The service runs under gunicorn (one worker, SQLite in its data dir) on S3 (moto), GCS
(gcp-storage-emulator) and Azure (Azurite). One entry is committed; then the worker is
SIGKILLed while it holds two uploads:

- one cut mid-body: S3 has a multipart upload with parts, Azure uncommitted blocks; GCS a
  resumable session, which no API lists (it expires on its own) and which shows nothing;
- one whose object is stored but whose record is not: the test holds the database's write
  lock, so the worker waits to commit, and is killed as soon as the object is visible.

`storage gc` then finds exactly the orphaned object and the incomplete upload, removes them
with `--delete`, and leaves the committed entry, which still reads back byte for byte.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

import pytest
import requests

from ctxcloud import create_app
from ctxcloud.storage import StorageBackend
from tests import stack
from tests.integration.served import RawUpload, Served, served, wait_for
from tests.support.azurite import azurite
from tests.support.context import entry_url
from tests.support.gcs_emulator import gcs_emulator
from tests.support.server import cli

pytestmark = pytest.mark.server

KiB, MiB = 1024, 1024 * 1024
P = "crashes"


@contextmanager
def backend_settings(name: str, s3_server) -> Iterator[dict[str, Any]]:
    """App settings for an empty place on backend `name`, uploads staged in small pieces."""
    if name == "s3":
        yield s3_server.config(
            S3_PREFIX=f"t-{uuid.uuid4().hex[:8]}/",
            S3_MULTIPART_THRESHOLD=5 * MiB,
            S3_PART_SIZE=5 * MiB,
        )
    elif name == "gcs":
        with gcs_emulator() as gcs:
            bucket = gcs.create_bucket(f"t-{uuid.uuid4().hex[:20]}")
            yield gcs.config(bucket, GCS_CHUNK_SIZE=256 * KiB)
    else:
        with azurite() as azure:
            yield azure.config(AZURE_CONTAINER=azure.create_container(), AZURE_BLOCK_SIZE=64 * KiB)


@contextmanager
def looking_at(settings: dict[str, Any], data_dir) -> Iterator[StorageBackend]:
    """The service's backend, built by an app of the test's own, to look at the store."""
    app = create_app({"ENV": "testing", "DATA_DIR": str(data_dir), **settings})
    try:
        yield app.extensions["ctxcloud"].storage
    finally:
        stack.close(app)


@contextmanager
def database_write_lock(server: Served) -> Iterator[None]:
    """Hold the SQLite database's write lock: the service's commits wait (busy timeout 30 s)."""
    db = sqlite3.connect(server.data_dir / "ctxcloud.sqlite3", isolation_level=None, timeout=30)
    try:
        db.execute("BEGIN IMMEDIATE")
        yield
        db.execute("ROLLBACK")
    finally:
        db.close()


def gc(env: dict[str, str], *args: str) -> dict:
    result = cli(env, "storage", "gc", "--grace", "0", "--json", *args)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("backend", ["s3", "gcs", "azure"])
def test_gc_removes_what_a_killed_worker_left_and_nothing_else(backend, s3_server, tmp_path):
    with (
        backend_settings(backend, s3_server) as settings,
        looking_at(settings, tmp_path / "probe") as store,
    ):
        env = {
            **{f"CTXCLOUD_{k}": str(v) for k, v in settings.items() if v is not None},
            **(s3_server.env if backend == "s3" else {}),
            # One write of last_used_at per key (the first request): no other commit to wait on.
            "CTXCLOUD_API_KEY_LAST_USED_INTERVAL": "3600",
        }
        with (
            served(tmp_path / "served", workers=1, threads=4, env=env) as server,
            ExitStack() as sockets,
        ):
            env = {**env, "CTXCLOUD_DATA_DIR": str(server.data_dir)}
            url = server.url
            created = requests.post(
                f"{url}/api/v1/projects", json={"name": P, "slug": P}, headers=server.headers
            )
            assert created.status_code == 201, created.text
            kept = os.urandom(300 * KiB)
            put = requests.put(
                url + entry_url(P, "kept.bin"),
                data=kept,
                headers={**server.headers, "Content-Type": "application/octet-stream"},
            )
            assert put.status_code == 201, put.text
            (kept_key,) = set(store.list(""))

            # Cut mid-body: pieces staged on the store (seen there, except on GCS).
            cut = RawUpload(server, P, "cut.bin", 64 * MiB)
            sockets.callback(cut.close)
            cut.send(12 * MiB)
            if backend != "gcs":
                wait_for(lambda: list(store.incomplete_uploads()), "the staged upload")

            # Stored, never recorded: the object shows up while the commit waits on the lock.
            with database_write_lock(server):
                orphan = RawUpload(server, P, "orphan.bin", 200 * KiB)
                sockets.callback(orphan.close)
                orphan.send(200 * KiB)
                new = wait_for(lambda: set(store.list("")) - {kept_key}, "the orphan object")
                (worker,) = server.server.worker_pids()
                os.kill(worker, signal.SIGKILL)
                wait_for(lambda: worker not in server.server.worker_pids(), "the worker's death")
            (orphan_key,) = new

            staged = 0 if backend == "gcs" else 1
            seen = gc(env)
            assert (seen["in_use"]["count"], seen["orphaned"]["count"]) == (1, 1)
            assert seen["incomplete_uploads"]["count"] == staged
            assert set(store.list("")) == {kept_key, orphan_key}  # a dry run removes nothing

            swept = gc(env, "--delete")
            assert (swept["removed"]["count"], swept["aborted"]["count"]) == (1, staged)
            assert set(store.list("")) == {kept_key}
            assert list(store.incomplete_uploads()) == []

            # The replacement worker serves the committed entry; the killed ones never existed.
            wait_for(
                lambda: requests.get(f"{url}/api/v1/health/live", timeout=5).ok, "a new worker"
            )
            got = requests.get(url + entry_url(P, "kept.bin"), headers=server.headers)
            assert got.status_code == 200 and got.content == kept
            for lost in ("cut.bin", "orphan.bin"):
                gone = requests.get(url + entry_url(P, lost), headers=server.headers)
                assert gone.status_code == 404
