"""Start ctxcloud (or any WSGI app) under gunicorn on a free loopback port; stop it by PID."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """A port nobody listens on now (the OS picks it; other processes share this machine)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def worker_pids(self) -> list[int]:
        """PIDs of the gunicorn workers (children of the master)."""
        import psutil

        return [child.pid for child in psutil.Process(self.process.pid).children()]


def cli(
    env: Mapping[str, str], *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess:
    """Run the installed `ctxcloud` command line with `env` added to the environment."""
    return subprocess.run(
        [str(Path(sys.executable).with_name("ctxcloud")), *args],
        env={**os.environ, **env},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )


@contextmanager
def gunicorn(
    env: Mapping[str, str],
    log_dir: Path,
    *,
    workers: int = 2,
    threads: int = 4,
    app: str = "wsgi:app",
    extra_args: tuple[str, ...] = (),
    ready_path: str = "/api/v1/health/live",
) -> Iterator[Server]:
    """Serve `app` with the project's gunicorn config on 127.0.0.1:<free port>, then stop it."""
    port = free_port()
    log_path = log_dir / f"gunicorn-{port}.log"
    log_dir.mkdir(parents=True, exist_ok=True)
    command = [
        str(Path(sys.executable).with_name("gunicorn")),
        "-c",
        str(ROOT / "config" / "gunicorn.conf.py"),
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--threads",
        str(threads),
        *extra_args,
        app,
    ]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command,
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,
        )
    server = Server(url=f"http://127.0.0.1:{port}", process=process, log_path=log_path)
    try:
        _wait_ready(server, ready_path)
        yield server
    finally:
        stop(process)


def _wait_ready(server: Server, path: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {server.process.returncode}:\n{server.log()}")
        try:
            if requests.get(server.url + path, timeout=2).status_code == 200:
                return
        except (requests.ConnectionError, requests.Timeout):  # not up, or still booting
            pass
        time.sleep(0.1)
    raise RuntimeError(f"gunicorn not ready after {timeout}s:\n{server.log()}")


def stop(process: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM the process group (graceful), SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=timeout)
    except ProcessLookupError:
        pass
