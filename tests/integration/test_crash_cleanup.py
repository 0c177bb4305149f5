"""A gunicorn worker killed (SIGKILL) mid-upload leaves a temp file; the worker that replaces
it removes that file at start, while an upload running in another worker goes on untouched.

The real service under gunicorn on the embedded stack (local storage under the data dir),
provisioned with the `ctxcloud` command line.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import time
from contextlib import ExitStack
from urllib.parse import urlsplit

import psutil
import pytest
import requests

from tests.integration.served import RawUpload, Served, served, wait_for
from tests.support.context import entry_url

pytestmark = pytest.mark.server

MiB = 1024 * 1024


def owner_of(server: Served, temp_file: str) -> int | None:
    """The worker holding `temp_file` open (its upload's writer), if any."""
    path = str(server.objects_dir / ".tmp" / temp_file)
    for pid in server.server.worker_pids():
        try:
            if any(f.path == path for f in psutil.Process(pid).open_files()):
                return pid
        except psutil.NoSuchProcess:
            continue
    return None


def start_upload(server: Served, path: str, size: int, known: set[str]) -> tuple[RawUpload, str]:
    """Start an upload and send its first MiB; return it with its temp file once it exists."""
    upload = RawUpload(server, "crashes", path, size)
    upload.send(MiB)
    new = wait_for(lambda: set(server.temp_files()) - known, f"the temp file of {path}")
    (temp_file,) = new
    return upload, temp_file


def accepting_worker(server: Served, sock: socket.socket) -> int | None:
    """The worker that accepted our connection `sock` (None while it is still queued)."""
    port = sock.getsockname()[1]
    for pid in server.server.worker_pids():
        try:
            connections = psutil.Process(pid).net_connections(kind="tcp")
        except psutil.NoSuchProcess:
            continue
        if any(c.raddr and c.raddr.port == port for c in connections):
            return pid
    return None


def wait_until_serving(server: Served, pid: int, timeout: float = 60) -> None:
    """Until worker `pid` accepts connections: a gunicorn worker builds the app (whose storage
    backend sweeps the temp area) before it accepts any."""
    url = urlsplit(server.url)
    deadline = time.monotonic() + timeout
    held: list[socket.socket] = []
    try:
        while True:
            assert time.monotonic() < deadline, f"worker {pid} never accepted a connection"
            sock = socket.create_connection((url.hostname, url.port), timeout=10)
            held.append(sock)  # kept open, so the next connection may go to the other worker
            if wait_for(lambda s=sock: accepting_worker(server, s), "an accept") == pid:
                return
    finally:
        for sock in held:
            sock.close()


def test_a_killed_uploads_temp_file_goes_when_its_worker_is_replaced(tmp_path):
    with served(tmp_path, workers=2, threads=4) as server, ExitStack() as uploads:
        # Sockets closed before the server stops, so a failure never waits on its graceful stop.
        requests.post(
            f"{server.url}/api/v1/projects",
            json={"name": "crashes", "slug": "crashes"},
            headers=server.headers,
        ).raise_for_status()
        assert server.temp_files() == []

        doomed, doomed_file = start_upload(server, "big.bin", 100 * MiB, set())
        uploads.callback(doomed.close)
        doomed.send(3 * MiB)
        victim = wait_for(lambda: owner_of(server, doomed_file), "the doomed upload's worker")

        # An upload in the other worker (connections go to either: retry until one does).
        for _ in range(40):
            survivor, survivor_file = start_upload(server, "kept.bin", 8 * MiB, {doomed_file})
            uploads.callback(survivor.close)
            survivor_worker = wait_for(
                lambda f=survivor_file: owner_of(server, f), "the surviving upload's worker"
            )
            if survivor_worker != victim:
                break
            survivor.close()  # same worker: the server drops this upload and its temp file
            wait_for(lambda f=survivor_file: f not in server.temp_files(), "a dropped upload")
        else:
            pytest.fail("no upload ever went to the other worker")

        workers_before = set(server.server.worker_pids())
        os.kill(victim, signal.SIGKILL)
        replacement = wait_for(
            lambda: set(server.server.worker_pids()) - workers_before - {victim},
            "gunicorn to boot a replacement worker",
        ).pop()
        wait_until_serving(server, replacement)
        assert requests.get(f"{server.url}/api/v1/health/live", timeout=10).status_code == 200

        assert doomed_file not in server.temp_files()  # removed at once, not after a day
        assert server.temp_files() == [survivor_file]  # the live upload's file is untouched
        assert survivor.finish() == 201
        got = requests.get(server.url + entry_url("crashes", "kept.bin"), headers=server.headers)
        assert got.status_code == 200
        assert hashlib.sha256(got.content).digest() == survivor.digest.digest()
        assert server.temp_files() == []
        lost = requests.get(server.url + entry_url("crashes", "big.bin"), headers=server.headers)
        assert lost.status_code == 404  # the killed upload left no entry either
        assert "local storage: removed temp files of uploads that died" in server.server.log()
