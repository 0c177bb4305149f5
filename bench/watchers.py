"""Watchers beside normal traffic: 200 long-polling clients must not starve the manifest reads.

Usage: python -m bench.watchers [--watchers 200] [--duration 10] [--runs 3] [--smoke]
       [--no-production] [--out bench/results]

For each server shape (gunicorn with the service's settings: `default`, 2 workers x 8 threads,
so WATCH_MAX_WAITERS is 2 per worker; and `sized`, 2 workers x 128 threads with
WATCH_MAX_WAITERS=100, so all 200 watchers wait at once), on the embedded default:

- normal traffic: wrk reads the 20-entry manifest of project `bench` on 16 connections, first
  with no watchers, then with `--watchers` client threads long-polling project `watched`
  (`GET .../changes?since=N&wait=30`; a 503 is honoured: the thread sleeps Retry-After
  seconds, with jitter); in both runs a writer commits to `watched` once a second, so every
  waiting watcher wakes and asks again each second;
- reported: normal traffic p99 (and p50, req/s) with and without watchers, and their ratio
  (target: within 2x), with how many watcher answers were changes, empty, or 503.

Then the wake latency across processes: two gunicorn servers of one worker each on one data
directory (the signal file; and, unless --no-production, PostgreSQL + Redis pub/sub); a watcher
on server A, a commit through server B; the time from the commit's answer to the watcher's.
Everything started listens on loopback and is stopped by PID; data lives in a temporary
directory. Writes <out>/watchers.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402

from bench.run import repeated, service_env, wrk  # noqa: E402
from bench.streaming import provision  # noqa: E402
from tests.support.server import gunicorn  # noqa: E402

SIZED = {"CTXCLOUD_WATCH_MAX_WAITERS": "100"}
# Server shape, and how often the writer commits to the watched project (every waiting
# watcher wakes then, takes its answer and asks again).
SHAPES = {
    "default": {"workers": 2, "threads": 8, "env": {}, "commit_every": 1.0},
    "sized": {"workers": 2, "threads": 128, "env": SIZED, "commit_every": 1.0},
    "sized_quiet": {"workers": 2, "threads": 128, "env": SIZED, "commit_every": 10.0},
}
WAIT = 30


def seed(url: str, key: str) -> None:
    auth = {"Authorization": f"Bearer {key}"}
    for name in ("bench", "watched"):
        requests.post(
            f"{url}/api/v1/projects", json={"name": name, "slug": name}, headers=auth, timeout=30
        ).raise_for_status()
    entries = [
        {"path": f"docs/note-{i:02d}.md", "content": f"# Note {i}\n" + "x" * 200} for i in range(20)
    ]
    requests.post(
        f"{url}/api/v1/projects/bench/context/commits",
        json={"message": "seed", "put": entries},
        headers=auth,
        timeout=30,
    ).raise_for_status()


class Writer(threading.Thread):
    """One commit a second to `watched`, until stopped."""

    def __init__(self, url: str, key: str, every: float) -> None:
        super().__init__(daemon=True)
        self.url, self.auth, self.every = url, {"Authorization": f"Bearer {key}"}, every
        self.stop = threading.Event()
        self.commits = 0

    def run(self) -> None:
        session = requests.Session()
        while not self.stop.wait(self.every):
            response = session.put(
                f"{self.url}/api/v1/projects/watched/context/entries/tick.txt",
                data=str(self.commits).encode(),
                headers=self.auth,
                timeout=30,
            )
            if response.ok:
                self.commits += 1


class Watchers:
    """`count` threads long-polling `watched`, honouring Retry-After on a 503."""

    def __init__(self, url: str, key: str, count: int) -> None:
        self.url, self.auth, self.count = url, {"Authorization": f"Bearer {key}"}, count
        self.stop = threading.Event()
        self.answers = {"changes": 0, "empty": 0, "refused": 0, "errors": 0}
        self.errors: dict[str, int] = {}
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.watch, daemon=True) for _ in range(count)]

    def count_answer(self, kind: str, error: str = "") -> None:
        with self.lock:
            self.answers[kind] += 1
            if error:
                self.errors[error] = self.errors.get(error, 0) + 1

    def watch(self) -> None:
        session = requests.Session()
        since = None
        while not self.stop.is_set():
            try:
                if since is None:
                    head = session.get(
                        f"{self.url}/api/v1/projects/watched", headers=self.auth, timeout=30
                    )
                    since = head.json()["revision"]
                response = session.get(
                    f"{self.url}/api/v1/projects/watched/context/changes",
                    params={"since": since, "wait": WAIT},
                    headers=self.auth,
                    timeout=WAIT + 30,
                )
            except requests.RequestException as exc:
                self.count_answer("errors", type(exc).__name__)
                self.stop.wait(1.0)
                continue
            if response.status_code == 503:
                self.count_answer("refused")
                retry = float(response.headers.get("Retry-After", "5"))
                self.stop.wait(retry * random.uniform(0.8, 1.2))
            elif response.ok:
                body = response.json()
                self.count_answer("changes" if body["changes"] else "empty")
                since = body["revision"]
            else:
                self.count_answer("errors", str(response.status_code))
                self.stop.wait(1.0)

    def __enter__(self) -> Watchers:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()


def normal_traffic(shape: str, watchers: int, duration: float, runs: int) -> dict[str, object]:
    settings = SHAPES[shape]
    with tempfile.TemporaryDirectory(prefix="ctxcloud-bench-watch-") as tmp:
        work = Path(tmp)
        env = service_env(work / "data", settings["env"])
        key = provision(env)
        with gunicorn(
            env, work / "logs", workers=settings["workers"], threads=settings["threads"]
        ) as server:
            seed(server.url, key)
            pids = server.worker_pids()
            manifest = f"{server.url}/api/v1/projects/bench/context"
            headers = {"Authorization": f"Bearer {key}"}
            writer = Writer(server.url, key, settings["commit_every"])
            writer.start()
            try:
                alone = repeated(runs, lambda: wrk(manifest, 16, duration, headers, pids=pids))
                with Watchers(server.url, key, watchers) as crowd:
                    time.sleep(min(3.0, duration))  # the watchers settle into waiting
                    beside = repeated(runs, lambda: wrk(manifest, 16, duration, headers, pids=pids))
                    answers, errors = dict(crowd.answers), dict(crowd.errors)
            finally:
                writer.stop.set()
    ratio = beside["p99_ms"]["median"] / alone["p99_ms"]["median"]
    return {
        "shape": f"{settings['workers']} workers x {settings['threads']} threads"
        + (f", WATCH_MAX_WAITERS={settings['env']['CTXCLOUD_WATCH_MAX_WAITERS']}"
           if settings["env"] else ", WATCH_MAX_WAITERS default (threads/4)"),
        "watchers": watchers,
        "without_watchers": alone,
        "with_watchers": beside,
        "p99_ratio": round(ratio, 2),
        "within_2x": ratio <= 2.0,
        "commit_every_s": settings["commit_every"],
        "watcher_answers": answers,
        "watcher_errors": errors,
        "commits": writer.commits,
    }  # fmt: skip


def wake_latency(env: dict[str, str], work: Path, samples: int) -> dict[str, float]:
    """Seconds from a commit's answer (server B) to a waiting watcher's answer (server A)."""
    key = provision(env)
    auth = {"Authorization": f"Bearer {key}"}
    with (
        gunicorn(env, work / "logs", workers=1, threads=8) as a,
        gunicorn(env, work / "logs", workers=1, threads=8) as b,
    ):
        seed(b.url, key)
        found = []
        for n in range(samples):
            since = requests.get(f"{a.url}/api/v1/projects/watched", headers=auth, timeout=30)
            since = since.json()["revision"]
            answer: dict[str, float] = {}

            def watch(since=since, answer=answer) -> None:
                requests.get(
                    f"{a.url}/api/v1/projects/watched/context/changes",
                    params={"since": since, "wait": WAIT},
                    headers=auth,
                    timeout=WAIT + 30,
                ).raise_for_status()
                answer["at"] = time.monotonic()

            thread = threading.Thread(target=watch)
            thread.start()
            time.sleep(0.3)  # the bench may sleep: the watcher is waiting by then
            requests.put(
                f"{b.url}/api/v1/projects/watched/context/entries/tick.txt",
                data=str(n).encode(),
                headers=auth,
                timeout=30,
            ).raise_for_status()
            committed = time.monotonic()
            thread.join(WAIT + 30)
            found.append(max(0.0, answer["at"] - committed))
    found.sort()
    return {
        "samples": samples,
        "median_ms": round(1000 * statistics.median(found), 1),
        "p90_ms": round(1000 * found[int(0.9 * (len(found) - 1))], 1),
        "max_ms": round(1000 * found[-1], 1),
    }


def latencies(samples: int, production: bool) -> dict[str, object]:
    found: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="ctxcloud-bench-wake-") as tmp:
        work = Path(tmp)
        found["embedded (signal file, WATCH_POLL_INTERVAL=0.05)"] = wake_latency(
            service_env(work / "embedded", {}), work, samples
        )
        if production:
            import redis

            from tests.stack import postgres_database
            from tests.support import redisdb

            with ExitStack() as stack:
                database_url = stack.enter_context(postgres_database())
                url = redisdb.url()
                client = redis.Redis.from_url(url)
                redisdb.flush(client)
                stack.callback(client.close)
                stack.callback(redisdb.flush, client)
                env = service_env(
                    work / "production",
                    {"CTXCLOUD_DATABASE_URL": database_url, "CTXCLOUD_REDIS_URL": url},
                )
                found["production (Redis pub/sub)"] = wake_latency(env, work, samples)
    return found


def table(results: dict[str, object]) -> str:
    lines = [
        "| shape | watchers | commit every | p99 without (ms) | p99 with (ms) | ratio "
        "| p50 without / with (ms) | req/s without / with | watcher answers |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in results["normal_traffic"]:
        alone, beside = row["without_watchers"], row["with_watchers"]
        answers = ", ".join(f"{k} {v}" for k, v in row["watcher_answers"].items())
        if row["watcher_errors"]:
            answers += " (" + ", ".join(f"{k} {v}" for k, v in row["watcher_errors"].items()) + ")"
        lines.append(
            f"| {row['shape']} | {row['watchers']} | {row['commit_every_s']} s "
            f"| {alone['p99_ms']['median']} "
            f"| {beside['p99_ms']['median']} | {row['p99_ratio']} "
            f"| {alone['p50_ms']['median']} / {beside['p50_ms']['median']} "
            f"| {alone['rps']['median']} / {beside['rps']['median']} | {answers} |"
        )
    lines += ["", "| wake across processes | samples | median (ms) | p90 (ms) | max (ms) |"]
    lines.append("|---|---|---|---|---|")
    for name, value in results["wake_latency"].items():
        lines.append(
            f"| {name} | {value['samples']} | {value['median_ms']} | {value['p90_ms']} "
            f"| {value['max_ms']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--watchers", type=int, default=200)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--shapes", default="default,sized,sized_quiet")
    parser.add_argument("--smoke", action="store_true", help="10 watchers, 1 run of 1 s")
    parser.add_argument("--no-production", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    if args.smoke:
        args.watchers, args.duration, args.runs, args.samples = 10, 1.0, 1, 3
        args.shapes, args.no_production = "default", True
    results = {
        "normal_traffic": [
            normal_traffic(shape, args.watchers, args.duration, args.runs)
            for shape in args.shapes.split(",")
        ],
        "wake_latency": latencies(args.samples, production=not args.no_production),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "watchers.json").write_text(json.dumps(results, indent=2) + "\n")
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
