"""ctxcloud under gunicorn on the embedded default (SQLite file + local objects in one data dir),
provisioned through the `ctxcloud` command line exactly as an operator would."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from tests.support.context import entry_url
from tests.support.server import Server, cli, gunicorn

SCOPES = "projects:read,projects:write,context:read,context:write"


@dataclass
class Served:
    server: Server
    data_dir: Path
    headers: dict[str, str]

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def objects_dir(self) -> Path:
        return self.data_dir / "objects"

    def object_files(self) -> set[str]:
        """Every stored object (the temp area excluded)."""
        root = self.objects_dir
        return {
            str(p.relative_to(root))
            for p in root.rglob("*")
            if p.is_file() and not p.relative_to(root).parts[0].startswith(".")
        }

    def temp_files(self) -> list[str]:
        return sorted(os.listdir(self.objects_dir / ".tmp"))

    def query(self, sql: str, *args) -> list[tuple]:
        """Read the server's SQLite database directly (read-only)."""
        db = sqlite3.connect(f"file:{self.data_dir / 'ctxcloud.sqlite3'}?mode=ro", uri=True)
        try:
            return db.execute(sql, args).fetchall()
        finally:
            db.close()

    def wait_for_log(self, needle: str, timeout: float = 60) -> str:
        """Poll the server log until `needle` shows up (a condition, not a fixed delay)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            log = self.server.log()
            if needle in log:
                return log
            time.sleep(0.05)
        raise AssertionError(f"{needle!r} never appeared in the server log:\n{self.server.log()}")


def provision(env: dict[str, str], slug: str = "racers") -> str:
    """Migrate, create a tenant and a key with the CLI; return the key's secret."""
    for args in (("db", "upgrade"), ("tenants", "create", slug, "--json")):
        result = cli(env, *args)
        assert result.returncode == 0, result.stderr
    result = cli(
        env, "api-keys", "create", "--tenant", slug, "--name", "tests", "--scopes", SCOPES, "--json"
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["key"]


@contextmanager
def served(
    root: Path, *, workers: int, threads: int, env: dict[str, str] | None = None
) -> Iterator[Served]:
    """The service on `root`, provisioned; `env` adds settings (CTXCLOUD_*, GUNICORN_*)."""
    data_dir = root / "data"
    extra = env or {}
    env = {
        "CTXCLOUD_DATA_DIR": str(data_dir),
        # The access log (INFO) tells the tests when the server finished a request.
        "CTXCLOUD_LOG_LEVEL": "INFO",
        # Hundreds of requests from one key: rate limits are not under test here.
        "CTXCLOUD_RATE_LIMIT_ENABLED": "false",
        **extra,
    }
    secret = provision(env)
    with gunicorn(env, root / "logs", workers=workers, threads=threads) as server:
        yield Served(server, data_dir, {"Authorization": f"Bearer {secret}"})


MiB = 1024 * 1024
T = TypeVar("T")


def wait_for(condition: Callable[[], T], what: str, timeout: float = 60) -> T:
    """Poll until `condition()` is truthy and return it; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


class RawUpload:
    """A PUT of `size` bytes to `project`/`path`, the body sent piece by piece on its own socket."""

    def __init__(self, server: Served, project: str, path: str, size: int) -> None:
        url = urlsplit(server.url)
        self.size, self.sent = size, 0
        self.digest = hashlib.sha256()
        self.sock = socket.create_connection((url.hostname, url.port), timeout=60)
        head = (
            f"PUT {entry_url(project, path)} HTTP/1.1\r\n"
            f"Host: {url.netloc}\r\n"
            f"Authorization: {server.headers['Authorization']}\r\n"
            "Content-Type: application/octet-stream\r\n"
            f"Content-Length: {size}\r\n"
            "Connection: close\r\n\r\n"
        )
        self.sock.sendall(head.encode())

    def send(self, count: int) -> None:
        while count:
            piece = os.urandom(min(count, MiB))
            self.sock.sendall(piece)
            self.digest.update(piece)
            self.sent += len(piece)
            count -= len(piece)

    def finish(self) -> int:
        """Send the rest of the body; the response's status."""
        self.send(self.size - self.sent)
        response = b""
        while chunk := self.sock.recv(65536):
            response += chunk
        self.close()
        return int(response.split(b" ", 2)[1])

    def close(self) -> None:
        self.sock.close()
