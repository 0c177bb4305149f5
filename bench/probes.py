"""Availability probes: slow, idle and hostile clients, and a hung store, against the service.

Usage: python -m bench.probes [--proxy] [--seconds 20] [--out bench/results/probes.md]

Runs the probes of the hardening work against ctxcloud under gunicorn (2 workers x 8
threads, the shipped config) on the embedded stack, and with --proxy also through the shipped
nginx configuration (rendered from the Helm chart). Each probe holds its attack open for
--seconds while it asks `/api/v1/health/live` and an authenticated manifest GET once a second
with a 1 s timeout, and reports how many answered, and how and when the attackers were cut.
Timings are this machine's; tests/integration/test_slow_clients.py, test_hung_dependencies.py
and tests/deploy/test_proxy.py assert the behaviour itself.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import socket
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, closing
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402

from bench.streaming import provision  # noqa: E402
from tests.support.blackhole import black_hole  # noqa: E402
from tests.support.server import gunicorn  # noqa: E402


@dataclass
class Target:
    name: str
    url: str
    key: str
    host: str = "127.0.0.1"

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@dataclass
class Outcome:
    probe: str
    answered: int = 0
    asked: int = 0
    cut: list[float] = field(default_factory=list)
    answers: dict[str, int] = field(default_factory=dict)
    note: str = ""

    def row(self) -> str:
        cut = ""
        if self.cut:
            cut = f"{len(self.cut)} cut after {min(self.cut):.1f}-{max(self.cut):.1f} s"
        answers = ", ".join(f"{k}: {v}" for k, v in sorted(self.answers.items()))
        return f"| {self.probe} | {self.answered}/{self.asked} | {cut} | {answers} | {self.note} |"


def ask(target: Target, outcome: Outcome) -> None:
    """Health and the manifest, 1 s each; counts how many answered 200."""
    for url, headers in (
        (f"{target.url}/api/v1/health/live", {}),
        (f"{target.url}/api/v1/projects/probes/context", target.auth),
    ):
        outcome.asked += 1
        try:
            if requests.get(url, headers=headers, timeout=1).status_code == 200:
                outcome.answered += 1
        except requests.RequestException:
            pass


def connect(target: Target, source: str = "127.0.0.1") -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((source, 0))
    sock.settimeout(10)
    sock.connect((target.host, target.port))
    return sock


def sources(count: int) -> list[str]:
    """Distinct loopback source addresses: many clients, as a per-address limit sees them."""
    return [f"127.0.{1 + n // 250}.{1 + n % 250}" for n in range(count)]


def watch(
    target: Target,
    outcome: Outcome,
    socks: list[socket.socket],
    seconds: float,
    trickle: bytes | None,
    started: float,
) -> None:
    """For `seconds`: ask once a second, send `trickle` on every open socket, note cuts."""
    open_socks = {sock.fileno(): sock for sock in socks}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        tick = time.monotonic()
        ask(target, outcome)
        for fd, sock in list(open_socks.items()):
            try:
                sock.setblocking(False)
                data = sock.recv(65536)
            except BlockingIOError:
                data = None
            except OSError:
                data = b""
            if data is not None:
                if data:
                    status = data.split(b" ", 2)[1].decode(errors="replace")
                    outcome.answers[status] = outcome.answers.get(status, 0) + 1
                outcome.cut.append(time.monotonic() - started)
                del open_socks[fd]
                continue
            if trickle:
                try:
                    sock.send(trickle)
                except OSError:
                    outcome.cut.append(time.monotonic() - started)
                    del open_socks[fd]
        time.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))
    outcome.note = f"{len(open_socks)} still open at the end"


def slow_bodies(target: Target, count: int, seconds: float) -> Outcome:
    outcome = Outcome(f"{count} PUTs declaring 10 MB, sending 1 KB/s")
    with ExitStack() as stack:
        socks = []
        for source in sources(count):
            sock = stack.enter_context(closing(connect(target, source)))
            sock.sendall(
                b"PUT /api/v1/projects/probes/context/entries/slow.bin HTTP/1.1\r\nHost: x\r\n"
                + f"Authorization: Bearer {target.key}\r\n".encode()
                + b"Content-Type: application/octet-stream\r\nContent-Length: 10000000\r\n\r\n"
            )
            socks.append(sock)
        watch(target, outcome, socks, seconds, b"x" * 1024, time.monotonic())
    return outcome


def slow_heads(target: Target, count: int, seconds: float) -> Outcome:
    outcome = Outcome(f"{count} sockets sending a request line, then a header byte a second")
    with ExitStack() as stack:
        socks = []
        for source in sources(count):
            sock = stack.enter_context(closing(connect(target, source)))
            sock.sendall(b"GET /api/v1/health/live HTTP/1.1\r\n")
            socks.append(sock)
        watch(target, outcome, socks, seconds, b"X", time.monotonic())
    return outcome


def idle(target: Target, count: int, seconds: float) -> Outcome:
    outcome = Outcome(f"{count} sockets that connect and send nothing")
    with ExitStack() as stack:
        socks = [stack.enter_context(closing(connect(target, s))) for s in sources(count)]
        watch(target, outcome, socks, seconds, None, time.monotonic())
    return outcome


def hung_store(work: Path, seconds: float) -> Outcome:
    """S3 that accepts and never answers: storage reads get 503, the rest keeps answering."""
    outcome = Outcome("S3 hung (accepts, never answers): 20 concurrent entry GETs")
    with black_hole() as hole:
        env = base_env(work / "hung")
        env.update(
            CTXCLOUD_STORAGE_BACKEND="s3",
            CTXCLOUD_S3_BUCKET="hung",
            CTXCLOUD_S3_REGION="us-east-1",
            CTXCLOUD_S3_ADDRESSING_STYLE="path",
            CTXCLOUD_S3_ENDPOINT_URL=f"http://127.0.0.1:{hole.port}",
            AWS_ACCESS_KEY_ID="probe",
            AWS_SECRET_ACCESS_KEY="probe-secret",
            AWS_EC2_METADATA_DISABLED="true",
        )
        key = provision(env)
        with gunicorn(env, work / "hung-logs", workers=2, threads=8) as server:
            target = Target("hung", server.url, key)
            make_project(target)
            # Writes, not reads: no object can be stored on a store that never answers.
            timings: list[tuple[int, float]] = []

            def put(n: int) -> None:
                started = time.monotonic()
                try:
                    status = requests.put(
                        f"{target.url}/api/v1/projects/probes/context/entries/e{n}.md",
                        data=b"# probe",
                        headers={**target.auth, "Content-Type": "text/markdown"},
                        timeout=120,
                    ).status_code
                except requests.RequestException:
                    status = 0
                timings.append((status, time.monotonic() - started))

            with ThreadPoolExecutor(max_workers=20) as pool:
                for n in range(20):
                    pool.submit(put, n)
                end = time.monotonic() + seconds
                while time.monotonic() < end and len(timings) < 20:
                    tick = time.monotonic()
                    ask(target, outcome)
                    time.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))
        for status, elapsed in timings:
            outcome.answers[str(status)] = outcome.answers.get(str(status), 0) + 1
            outcome.cut.append(elapsed)
        outcome.note = "storage writes: status counts; 'cut' is when each one answered"
    return outcome


def base_env(data_dir: Path) -> dict[str, str]:
    return {
        "CTXCLOUD_DATA_DIR": str(data_dir),
        "CTXCLOUD_RATE_LIMIT_ENABLED": "false",
        "CTXCLOUD_LOG_LEVEL": "WARNING",
    }


def make_project(target: Target) -> None:
    response = requests.post(
        f"{target.url}/api/v1/projects",
        json={"name": "Probes", "slug": "probes"},
        headers=target.auth,
        timeout=10,
    )
    if response.status_code != 201:
        raise RuntimeError(f"creating the probe project failed: {response.text}")


def run(args: argparse.Namespace) -> list[str]:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 20000), hard))
    rows = [
        "| probe | health + manifest answered (1 s each) | attackers cut | their answers | |",
        "|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory(prefix="ctxcloud-probes-") as tmp:
        work = Path(tmp)
        env = base_env(work / "data")
        key = provision(env)
        with gunicorn(env, work / "logs", workers=2, threads=8) as server:
            direct = Target("gunicorn", server.url, key)
            make_project(direct)
            targets = [direct]
            stack = ExitStack()
            if args.proxy:
                from tests.deploy.proxyconf import for_test, nginx, render_chart, workdir
                from tests.support.server import free_port

                port = free_port()
                directory = stack.enter_context(workdir())
                conf = for_test(
                    render_chart(), port=port, upstream=server.url[7:], workdir=directory
                )
                stack.enter_context(nginx(conf, directory, port))
                targets.append(Target("nginx", f"http://127.0.0.1:{port}", key))
            with stack:
                for target in targets:
                    rows.append(f"| **{target.name}** | | | | |")
                    for probe, count in (
                        (slow_bodies, 20 if target.name == "gunicorn" else 200),
                        (slow_heads, 40 if target.name == "gunicorn" else 200),
                        (idle, 500 if target.name == "gunicorn" else 1000),
                    ):
                        outcome = probe(target, count, args.seconds)
                        rows.append(outcome.row())
                        print(outcome.row(), flush=True)
        rows.append("| **gunicorn, S3 hung** | | | | |")
        outcome = hung_store(work, args.seconds)
        rows.append(outcome.row())
        print(outcome.row(), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--proxy", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    rows = run(args)
    text = "\n".join(rows) + "\n"
    if args.out:
        args.out.write_text(text)
    print(text)
    print(json.dumps({"machine_cpus": os.cpu_count(), "seconds": args.seconds}))


if __name__ == "__main__":
    main()
