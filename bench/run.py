"""The benchmark harness: every scenario beside its baseline, in one run on this machine.

Usage: python -m bench.run [--quick | --smoke] [--duration 5] [--runs 3] [--big-mib 1024]
       [--no-production] [--no-streaming] [--no-cloud] [--big-entries 10000]
       [--out bench/results]    (`make bench`)

Starts what it needs on loopback (gunicorn for the service and for a bare Flask app, moto
for S3), drives load with wrk (Debian package `wrk`), stops everything by PID, and writes
<out>/latest.json and <out>/latest.md. Each figure is the median of --runs runs (min-max).
Absolute numbers drift on shared machines; the ratios to the baselines are the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402

from bench.streaming import provision  # noqa: E402
from tests.support.server import cli, gunicorn  # noqa: E402

WRK_SCRIPT = ROOT / "bench" / "wrk" / "scenario.lua"
# The service's own gunicorn settings (config/gunicorn.conf.py defaults on a 2-CPU machine),
# used for the service and the bare ceiling alike.
WORKERS = int(os.environ.get("GUNICORN_WORKERS", 2))
THREADS = int(os.environ.get("GUNICORN_THREADS", 8))


def require_wrk() -> str:
    found = shutil.which("wrk")
    if not found:
        raise SystemExit("wrk is missing: install it with `apt-get install -y wrk` (Debian)")
    return found


def wrk(
    url: str,
    connections: int,
    duration: float,
    headers: dict[str, str],
    method: str = "GET",
    body_bytes: int = 0,
    pids: list[int] | None = None,
) -> dict[str, float]:
    """One wrk run; its JSON summary, plus the CPU the `pids` spent per request.

    CPU per request is the steadier figure on a shared machine: other load slows req/s
    down, but hardly changes how much work one request is.
    """
    threads = max(1, min(2, connections))
    command = [
        require_wrk(),
        "-t",
        str(threads),
        "-c",
        str(connections),
        "-d",
        f"{max(1, round(duration))}s",  # wrk takes whole seconds
        "--timeout",
        "10s",
        "-s",
        str(WRK_SCRIPT),
    ]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    command.append(url)
    env = {**os.environ, "WRK_METHOD": method, "WRK_BODY_BYTES": str(body_bytes)}
    each_before = [cpu_seconds([pid]) for pid in pids or []]
    output = subprocess.run(
        command, capture_output=True, text=True, env=env, check=True, timeout=duration + 60
    ).stdout
    each = [
        cpu_seconds([pid]) - before for pid, before in zip(pids or [], each_before, strict=True)
    ]
    cpu = sum(each)
    line = next(line for line in output.splitlines() if line.startswith("WRK_JSON "))
    summary = json.loads(line.removeprefix("WRK_JSON "))
    if pids and summary["requests"]:
        summary["cpu_ms_per_req"] = 1000 * cpu / summary["requests"]
    if len(each) > 1 and cpu > 0:
        # How evenly the load fell on the workers: the busiest one's share of their CPU
        # (1 / workers when even; a worker's CPU follows the requests it served).
        summary["busiest_worker_share"] = max(each) / cpu
    return summary


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of these processes so far (Linux /proc)."""
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def spread(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 2),
        "min": round(min(values), 2),
        "max": round(max(values), 2),
    }


def repeated(runs: int, measure) -> dict[str, object]:
    """Median and min-max of each figure over `runs` runs."""
    samples = [measure() for _ in range(runs)]
    summary: dict[str, object] = {}
    for key in ("rps", "p50_ms", "p99_ms", "cpu_ms_per_req", "busiest_worker_share"):
        values = [s[key] for s in samples if key in s]
        if values:
            summary[key] = spread(values)
    summary["non_2xx"] = sum(s["non_2xx"] for s in samples)
    summary["socket_errors"] = sum(s["socket_errors"] for s in samples)
    return summary


class Service:
    """A provisioned ctxcloud: schema, tenant, API key, user login, a project of 20 entries."""

    def __init__(self, env: dict[str, str], big_entries: int = 0) -> None:
        self.env = env
        self.key = ""
        self.jwt = ""
        # A second project, "big", of this many entries (and the same 4 KiB small.txt): the
        # read scenarios at scale. 0: none.
        self.big_entries = big_entries

    def provision(self) -> None:
        def run(*args: str, stdin: str | None = None) -> str:
            result = cli(self.env, *args, stdin=stdin)
            if result.returncode != 0:
                raise RuntimeError(f"ctxcloud {' '.join(args)}: {result.stderr[-2000:]}")
            return result.stdout

        self.key = provision(self.env)  # schema, tenant "bench", a full-scope API key
        self.password = "bench-password-" + os.urandom(8).hex()
        run(
            "users",
            "create",
            "--tenant",
            "bench",
            "--username",
            "bench",
            "--role",
            "owner",
            "--password-stdin",
            "--json",
            stdin=self.password + "\n",
        )

    def seed(self, url: str) -> None:
        auth = {"Authorization": f"Bearer {self.key}"}
        response = requests.post(
            f"{url}/api/v1/projects", json={"name": "bench"}, headers=auth, timeout=30
        )
        response.raise_for_status()
        entries = [
            {"path": f"docs/note-{i:02d}.md", "content": f"# Note {i}\n" + "x" * 200}
            for i in range(20)
        ]
        requests.post(
            f"{url}/api/v1/projects/bench/context/commits",
            json={"message": "seed", "put": entries},
            headers=auth,
            timeout=30,
        ).raise_for_status()
        requests.put(
            f"{url}/api/v1/projects/bench/context/entries/small.txt",
            data=b"s" * 4096,
            headers=auth,
            timeout=30,
        ).raise_for_status()
        if self.big_entries:
            self.seed_big(url)
        token = requests.post(
            f"{url}/api/v1/auth/token",
            json={"tenant": "bench", "username": "bench", "password": self.password},
            timeout=30,
        )
        token.raise_for_status()
        self.jwt = token.json()["access_token"]

    def seed_big(self, url: str) -> None:
        """Project "big": `big_entries` entries of ~210 bytes (commits of 1000, the most one
        commit takes) and a 4 KiB small.txt."""
        auth = {"Authorization": f"Bearer {self.key}"}
        with requests.Session() as session:
            session.post(
                f"{url}/api/v1/projects", json={"name": "big"}, headers=auth, timeout=30
            ).raise_for_status()
            for start in range(0, self.big_entries, 1000):
                put = [
                    {
                        "path": f"docs/n{i // 100:03d}/note-{i:05d}.md",
                        "content": f"# {i}\n" + "x" * 200,
                    }
                    for i in range(start, min(self.big_entries, start + 1000))
                ]
                session.post(
                    f"{url}/api/v1/projects/big/context/commits",
                    json={"message": "seed", "put": put},
                    headers=auth,
                    timeout=600,
                ).raise_for_status()
            session.put(
                f"{url}/api/v1/projects/big/context/entries/small.txt",
                data=b"s" * 4096,
                headers=auth,
                timeout=30,
            ).raise_for_status()


def service_env(data_dir: Path, extra: dict[str, str]) -> dict[str, str]:
    return {
        "CTXCLOUD_ENV": "development",
        "CTXCLOUD_DATA_DIR": str(data_dir),
        # The service's default: one access line per request (to the server's log file).
        "CTXCLOUD_LOG_LEVEL": "INFO",
        # The limiter stays on (its cost is measured) but must not cap the load itself.
        "CTXCLOUD_RATE_LIMIT_DEFAULT": "100000000/minute",
        **extra,
    }


def scenarios(
    server, service: Service, connections: list[int], duration: float, runs: int
) -> dict[str, object]:
    """Scenario 2 (manifest with an API key and with a JWT) and 3 (4 KiB entry GET and PUT)."""
    pids = server.worker_pids()
    key = {"Authorization": f"Bearer {service.key}"}
    jwt = {"Authorization": f"Bearer {service.jwt}"}
    manifest = f"{server.url}/api/v1/projects/bench/context"
    small = f"{server.url}/api/v1/projects/bench/context/entries/small.txt"

    def load(url, c, headers, **options):
        return repeated(runs, lambda: wrk(url, c, duration, headers, pids=pids, **options))

    found: dict[str, object] = {}
    for c in connections:
        found[f"manifest_apikey_c{c}"] = load(manifest, c, key)
        found[f"manifest_jwt_c{c}"] = load(manifest, c, jwt)
    # The manifest revalidated: If-None-Match with its current ETag, answered 304 (no body).
    # (Before the PUTs, beside the manifest; the head must hold still for the ETag.)
    for _ in range(50):
        etag = requests.get(manifest, headers=key, timeout=30).headers["ETag"]
        revalidate = {**key, "If-None-Match": etag}
        answer = requests.get(manifest, headers=revalidate, timeout=30)
        if answer.status_code == 304:
            break
        time.sleep(0.1)
    else:
        raise RuntimeError(f"If-None-Match with the manifest's ETag: {answer.status_code}")
    found["manifest_304_c16"] = load(manifest, 16, revalidate)
    found["small_get_c16"] = load(small, 16, key)
    found["small_put_c16"] = load(small, 16, key, method="PUT", body_bytes=4096)
    if service.big_entries:
        big = f"{server.url}/api/v1/projects/big/context"
        warm_manifest(big, key)
        found["big_manifest_apikey_c16"] = load(big, 16, key)
        found["big_small_get_c16"] = load(f"{big}/entries/small.txt", 16, key)
    return found


def warm_manifest(url: str, headers: dict[str, str], tries: int = 20) -> None:
    """Fill every worker's manifest cache before the load: GETs on new connections (each
    lands on some worker) until 4 in a row are fast next to the first (a build).

    Cold, 16 connections at once all miss and all build: with 10,000 entries (~0.7 s of CPU
    each here) the workers answered nothing within 3 runs of 3 s, so the scenario measures
    the warm manifest; its build is timed on its own (manifest_at_scale)."""
    started = time.perf_counter()
    requests.get(url, headers=headers, timeout=120).raise_for_status()
    first, fast = time.perf_counter() - started, 0
    for _ in range(tries):
        started = time.perf_counter()
        requests.get(url, headers=headers, timeout=120).raise_for_status()
        fast = fast + 1 if time.perf_counter() - started < max(first / 4, 0.001) else 0
        if fast >= 4:
            return


def manifest_at_scale(
    server, service: Service, figures: dict[str, dict], runs: int, prefix: str = ""
) -> dict[str, object]:
    """The manifest of 20 entries beside the one of `big_entries`: bytes per response and CPU
    per request (cost growth over size growth: <= 1 means the cost grows no faster than the
    response), and a cache-miss build of the big manifest timed `runs` times (a commit moves
    the head, then one GET builds the new manifest; a second GET on the same connection,
    hence the same worker, is the cache hit beside it)."""
    key = {"Authorization": f"Bearer {service.key}"}
    pids = server.worker_pids()
    small_url = f"{server.url}/api/v1/projects/bench/context"
    big_url = f"{server.url}/api/v1/projects/big/context"
    small_bytes = len(requests.get(small_url, headers=key, timeout=30).content)
    big_bytes = len(requests.get(big_url, headers=key, timeout=60).content)
    found: dict[str, object] = {
        "entries": service.big_entries,
        "small_manifest_bytes": small_bytes,
        "big_manifest_bytes": big_bytes,
    }
    small_cpu = figures.get(f"{prefix}manifest_apikey_c16", {}).get("cpu_ms_per_req")
    big_cpu = figures.get(f"{prefix}big_manifest_apikey_c16", {}).get("cpu_ms_per_req")
    if small_cpu and big_cpu:
        cost = big_cpu["median"] / small_cpu["median"]
        size = big_bytes / small_bytes
        found.update(
            small_cpu_us_per_kib=round(1000 * small_cpu["median"] / (small_bytes / 1024), 2),
            big_cpu_us_per_kib=round(1000 * big_cpu["median"] / (big_bytes / 1024), 2),
            cost_growth=round(cost, 2),
            size_growth=round(size, 2),
            cost_over_size_growth=round(cost / size, 3),
        )
    miss_ms, miss_cpu_ms, hit_ms = [], [], []
    with requests.Session() as session:
        for round_ in range(runs):
            session.put(
                f"{big_url}/entries/miss.txt",
                data=f"round {round_} {time.time()}".encode(),
                headers=key,
                timeout=30,
            ).raise_for_status()
            cpu_before, started = cpu_seconds(pids), time.perf_counter()
            session.get(big_url, headers=key, timeout=120).raise_for_status()
            miss_ms.append(1000 * (time.perf_counter() - started))
            miss_cpu_ms.append(1000 * (cpu_seconds(pids) - cpu_before))
            started = time.perf_counter()
            session.get(big_url, headers=key, timeout=120).raise_for_status()
            hit_ms.append(1000 * (time.perf_counter() - started))
    found["cache_miss_build_ms"] = spread(miss_ms)
    found["cache_miss_build_worker_cpu_ms"] = spread(miss_cpu_ms)
    found["cache_hit_ms"] = spread(hit_ms)
    return found


def ceiling(work: Path, connections: list[int], duration: float, runs: int) -> dict[str, object]:
    """Scenario 1: a bare Flask "hello JSON" under the service's gunicorn settings."""
    with gunicorn(
        {}, work / "logs", workers=WORKERS, threads=THREADS, app="bench.bare_app:app"
    ) as bare:
        pids = bare.worker_pids()
        return {
            f"ceiling_c{c}": repeated(
                runs, lambda c=c: wrk(f"{bare.url}/hello", c, duration, {}, pids=pids)
            )
            for c in connections
        }


def ratios(figures: dict[str, dict]) -> dict[str, dict[str, float]]:
    """Each scenario beside the ceiling at its connection count: req/s and CPU per request
    (the ceiling's CPU per request over the scenario's: the steadier of the two)."""
    found = {}
    for name, value in figures.items():
        if name.startswith("ceiling") or "_1worker" in name:
            continue
        base = figures.get(f"ceiling_c{name.rpartition('_c')[2]}")
        if base is None:
            continue
        entry = {"rps": round(value["rps"]["median"] / base["rps"]["median"], 3)}
        if "cpu_ms_per_req" in value and "cpu_ms_per_req" in base:
            entry["cpu"] = round(
                base["cpu_ms_per_req"]["median"] / value["cpu_ms_per_req"]["median"], 3
            )
        found[name] = entry
    for name in [k for k in figures if k.endswith("_1worker")]:
        one, two = figures[name], figures.get(name.removesuffix("_1worker"))
        if two:
            found["scaling_2_vs_1_worker"] = {
                "rps": round(two["rps"]["median"] / one["rps"]["median"], 3)
            }
    return found


def targets(results: dict) -> list[dict[str, object]]:
    """The issue's targets, each with the figure it is judged on and whether it is met."""
    figures, found = results["figures"], results["ratios"]
    checks: list[tuple[str, float | None, str, float]] = []
    # Issue 20's targets (ratio to the bare ceiling at the same connections, req/s).
    for c in (16, 64):
        for credential in ("apikey", "jwt"):
            name = f"manifest_{credential}_c{c}"
            checks.append((f"{name} / ceiling (embedded)", _get(found, name, "rps"), ">=", 0.6))
            prod = f"production_{name}"
            checks.append((f"{prod} / ceiling", _get(found, prod, "rps"), ">=", 0.4))
    for name, embedded_goal, production_goal in (
        ("small_get_c16", 0.35, 0.15),
        ("small_put_c16", 0.12, 0.06),
        ("manifest_304_c16", 0.7, 0.7),
    ):
        checks.append(
            (f"{name} / ceiling (embedded)", _get(found, name, "rps"), ">=", embedded_goal)
        )
        prod = f"production_{name}"
        checks.append((f"{prod} / ceiling", _get(found, prod, "rps"), ">=", production_goal))
    for prefix in ("", "production_"):
        for credential in ("apikey", "jwt"):
            name = f"{prefix}manifest_{credential}_c64"
            p99 = figures.get(name, {}).get("p99_ms", {}).get("median")
            checks.append((f"{name} p99 ms", p99, "<", 60))
    for place, scale in results.get("manifest_at_scale", {}).items():
        checks.append(
            (
                f"manifest cost growth / size growth ({place}, {scale['entries']} entries)",
                scale.get("cost_over_size_growth"),
                "<=",
                1.0,
            )
        )
    stream = results.get("streaming", {})
    # Issue 20: uploads at >= 0.6 of the bare sink in every run, downloads >= 0.8 of the source.
    for direction, goal in (("upload", 0.6), ("download", 0.8)):
        checks.append(
            (f"{direction} / bare endpoint", stream.get(f"{direction}_ratio_to_bare"), ">=", goal)
        )
        growth = stream.get(f"service_{direction}_rss_growth_mib", {}).get("max")
        checks.append((f"{direction} worker RSS growth MiB (max)", growth, "<", 64))
    cloud = results.get("cloud_storage", {})
    for backend in ("gcs", "azure"):
        found = cloud.get(backend, {})
        for direction in ("upload", "download"):
            checks.append(
                (
                    f"{backend} {direction} / SDK alone",
                    found.get(f"{direction}_ratio_to_sdk"),
                    ">=",
                    0.8,
                )
            )
            growth = found.get(f"service_{direction}_rss_growth_mib", {}).get("max")
            checks.append((f"{backend} {direction} worker RSS growth MiB (max)", growth, "<", 64))
    rows = []
    for label, value, op, threshold in checks:
        if value is None:
            continue
        met = {">=": value >= threshold, "<=": value <= threshold, "<": value < threshold}[op]
        rows.append({"target": label, "value": value, "goal": f"{op} {threshold}", "met": met})
    return rows


def _get(found: dict, name: str, key: str) -> float | None:
    return found.get(name, {}).get(key)


def run(args: argparse.Namespace) -> dict[str, object]:
    connections = args.connections
    results: dict[str, object] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "settings": {
            "duration_s": args.duration,
            "runs": args.runs,
            "gunicorn_workers": WORKERS,
            "gunicorn_threads": THREADS,
        },
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    figures: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="ctxcloud-bench-") as tmp:
        work = Path(tmp)
        figures.update(ceiling(work, connections, args.duration, args.runs))
        embedded = Service(service_env(work / "embedded", {}), big_entries=args.big_entries)
        embedded.provision()
        at_scale: dict[str, object] = {}
        with gunicorn(embedded.env, work / "logs", workers=WORKERS, threads=THREADS) as server:
            embedded.seed(server.url)
            figures.update(scenarios(server, embedded, connections, args.duration, args.runs))
            if embedded.big_entries:
                at_scale["embedded"] = manifest_at_scale(server, embedded, figures, args.runs)
        # Scenario 6: the same load on one worker.
        with gunicorn(embedded.env, work / "logs", workers=1, threads=THREADS) as server:
            pids = server.worker_pids()
            figures[f"manifest_apikey_c{connections[-1]}_1worker"] = repeated(
                args.runs,
                lambda: wrk(
                    f"{server.url}/api/v1/projects/bench/context",
                    connections[-1],
                    args.duration,
                    {"Authorization": f"Bearer {embedded.key}"},
                    pids=pids,
                ),
            )
        if args.production:
            figures.update(production(work, connections, args, at_scale))
        if args.streaming:
            from bench import streaming

            # Scenario 5, on the embedded service provisioned above.
            results["streaming"] = streaming.run(
                args.big_mib, args.runs, work / "streaming", (embedded.env, embedded.key)
            )
        if args.cloud:
            from bench import cloud_storage

            # Scenario 7: GCS and Azure through the service beside each SDK; storage migrate.
            results["cloud_storage"] = cloud_storage.run(
                args.big_mib, args.runs, args.migrate_mib, work / "cloud"
            )
    results["figures"] = figures
    if at_scale:
        results["manifest_at_scale"] = at_scale
    results["ratios"] = ratios(figures)
    results["targets"] = targets(results)
    results["elapsed_s"] = round(time.monotonic() - args.started, 1)
    return results


def production(
    work: Path, connections: list[int], args: argparse.Namespace, at_scale: dict
) -> dict[str, object]:
    """Scenario 4: scenarios 2-3 (and 8) on PostgreSQL + Redis, entries on S3 (moto over
    HTTP)."""
    # A Redis database of its own: the test suite's is flushed by every test session, and
    # a bench running beside one must not reset its counters (nor they the bench's).
    os.environ.setdefault("CTXCLOUD_TEST_REDIS_DB", "12")
    from tests.stack import postgres_database, redis_db
    from tests.support.s3server import moto_s3

    with ExitStack() as stack:
        database_url = stack.enter_context(postgres_database())
        redis_url = stack.enter_context(redis_db())
        s3 = stack.enter_context(moto_s3())
        env = service_env(
            work / "production",
            {
                "CTXCLOUD_DATABASE_URL": database_url,
                "CTXCLOUD_REDIS_URL": redis_url,
                **{f"CTXCLOUD_{name}": str(value) for name, value in s3.config().items()},
                **s3.env,
            },
        )
        service = Service(env, big_entries=args.big_entries)
        service.provision()
        with gunicorn(env, work / "logs", workers=WORKERS, threads=THREADS) as server:
            service.seed(server.url)
            found = scenarios(server, service, connections, args.duration, args.runs)
            found = {f"production_{name}": value for name, value in found.items()}
            if service.big_entries:
                at_scale["production"] = manifest_at_scale(
                    server, service, found, args.runs, prefix="production_"
                )
    return found


def _range(value: dict[str, float], digits: int) -> str:
    return f"{value['median']:.{digits}f} ({value['min']:.{digits}f}-{value['max']:.{digits}f})"


def markdown(results: dict) -> str:
    figures = results["figures"]
    settings = results["settings"]
    lines = [
        "# Benchmark results",
        "",
        f"Run {results['started']} on {results['machine']['cpus']} CPUs, Python "
        f"{results['machine']['python']}, {results.get('elapsed_s', '?')} s in all; wrk "
        f"{settings['duration_s']:g} s per run, median of {settings['runs']} runs (min-max); "
        f"gunicorn {settings['gunicorn_workers']} workers x {settings['gunicorn_threads']} "
        "threads (the service's defaults) unless noted. CPU ms/req is the workers' CPU time "
        "per request (the steadier figure on a shared machine).",
        "",
        "| scenario | req/s | p50 ms | p99 ms | CPU ms/req | vs ceiling (req/s, CPU) | non-2xx |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, value in figures.items():
        cpu = value.get("cpu_ms_per_req")
        ratio = results["ratios"].get(name, {})
        versus = ", ".join(f"{ratio[k]:.3f}" for k in ("rps", "cpu") if k in ratio)
        lines.append(
            f"| {name} | {_range(value['rps'], 0)} | {_range(value['p50_ms'], 1)} | "
            f"{_range(value['p99_ms'], 1)} | {_range(cpu, 2) if cpu else ''} | {versus} | "
            f"{value['non_2xx'] + value['socket_errors']} |"
        )
    scaling = results["ratios"].get("scaling_2_vs_1_worker")
    if scaling:
        lines += ["", f"Scaling: 2 workers / 1 worker = {scaling['rps']:.3f} (req/s)."]
    if "manifest_at_scale" in results:
        lines += at_scale_markdown(results["manifest_at_scale"])
    if "streaming" in results:
        stream = results["streaming"]
        lines += [
            "",
            f"## Streaming one {stream['mib']} MiB entry (1 worker)",
            "",
            "| figure | median | min | max |",
            "|---|---|---|---|",
        ]
        for name, value in stream.items():
            if isinstance(value, dict):
                lines.append(f"| {name} | {value['median']} | {value['min']} | {value['max']} |")
        lines += [
            f"| upload_ratio_to_bare | {stream['upload_ratio_to_bare']} | | |",
            f"| download_ratio_to_bare | {stream['download_ratio_to_bare']} | | |",
        ]
    if "cloud_storage" in results:
        lines += cloud_markdown(results["cloud_storage"])
    lines += ["", "## Targets", "", "| target | value | goal | met |", "|---|---|---|---|"]
    for row in results.get("targets", []):
        lines.append(
            f"| {row['target']} | {row['value']} | {row['goal']} | "
            f"{'yes' if row['met'] else '**no**'} |"
        )
    return "\n".join(lines) + "\n"


def at_scale_markdown(at_scale: dict) -> list[str]:
    lines = [
        "",
        "## The manifest at scale (project `big`)",
        "",
        "| stack | entries | bytes (20 / big) | CPU us per KiB (20 / big) | cost growth / size "
        "growth | cache-miss build ms | its worker CPU ms | cache hit ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for place, found in at_scale.items():
        lines.append(
            f"| {place} | {found['entries']} | {found['small_manifest_bytes']} / "
            f"{found['big_manifest_bytes']} | {found.get('small_cpu_us_per_kib', '')} / "
            f"{found.get('big_cpu_us_per_kib', '')} | "
            f"{found.get('cost_growth', '')} / {found.get('size_growth', '')} = "
            f"{found.get('cost_over_size_growth', '')} | "
            f"{_range(found['cache_miss_build_ms'], 1)} | "
            f"{_range(found['cache_miss_build_worker_cpu_ms'], 0)} | "
            f"{_range(found['cache_hit_ms'], 1)} |"
        )
    return lines


def cloud_markdown(cloud: dict) -> list[str]:
    lines = [
        "",
        f"## GCS and Azure: one {cloud['mib']} MiB entry through the service (1 worker) "
        "and the SDK alone, on the same emulator",
        "",
        "| backend | SDK put MB/s | service PUT MB/s | ratio | SDK get MB/s | service GET MB/s "
        "| ratio | RSS growth up / down MiB (max) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for backend in ("gcs", "azure"):
        found = cloud[backend]
        lines.append(
            f"| {backend} | {_range(found['sdk_put_mb_s'], 1)} | "
            f"{_range(found['service_upload_mb_s'], 1)} | {found['upload_ratio_to_sdk']} | "
            f"{_range(found['sdk_get_mb_s'], 1)} | {_range(found['service_download_mb_s'], 1)} | "
            f"{found['download_ratio_to_sdk']} | "
            f"{found['service_upload_rss_growth_mib']['max']} / "
            f"{found['service_download_rss_growth_mib']['max']} |"
        )
    lines += [
        "",
        "| storage migrate | objects | seconds | MB/s | objects/s | vs the target SDK's put |",
        "|---|---|---|---|---|---|",
    ]
    for name in ("migrate_local_to_gcs", "migrate_s3_to_azure"):
        found = cloud[name]
        lines.append(
            f"| {name.removeprefix('migrate_').replace('_to_', ' -> ')} | {found['objects']} | "
            f"{found['seconds']} | {found['mb_s']} | {found['objects_s']} | "
            f"{found['ratio_to_sdk_put']} |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--big-mib", type=int, default=1024)
    parser.add_argument("--no-production", dest="production", action="store_false")
    parser.add_argument("--no-streaming", dest="streaming", action="store_false")
    parser.add_argument(
        "--no-cloud",
        dest="cloud",
        action="store_false",
        help="skip GCS and Azure (emulators) and storage migrate",
    )
    parser.add_argument("--migrate-mib", type=int, default=256)
    parser.add_argument(
        "--big-entries",
        type=int,
        default=10000,
        help="entries of the project the read scenarios at scale use (0: skip them)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="about 20 s: 1 run of 1 s per scenario, 8 MiB streaming",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="the harness's own test: --quick at 16 connections only, 2 MiB streaming",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    args.started = time.monotonic()
    args.connections = [16, 64]
    if args.quick or args.smoke:
        args.duration, args.runs, args.big_mib, args.migrate_mib = 1.0, 1, 8, 8
        args.big_entries = min(args.big_entries, 1000)
    if args.smoke:
        args.connections, args.big_mib, args.migrate_mib = [16], 2, 4
        args.big_entries = min(args.big_entries, 50)
    require_wrk()
    results = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "latest.md").write_text(markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
