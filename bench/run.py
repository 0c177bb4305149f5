"""The benchmark harness: every scenario beside its baseline, in one run on this machine.

Usage: python -m bench.run [--quick] [--duration 5] [--runs 3] [--big-mib 1024]
       [--no-production] [--no-streaming] [--out bench/results]

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
) -> dict[str, float]:
    """One wrk run; returns its JSON summary."""
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
    output = subprocess.run(
        command, capture_output=True, text=True, env=env, check=True, timeout=duration + 60
    ).stdout
    line = next(line for line in output.splitlines() if line.startswith("WRK_JSON "))
    return json.loads(line.removeprefix("WRK_JSON "))


def repeated(runs: int, measure) -> dict[str, object]:
    """Median and min-max of each figure over `runs` runs."""
    samples = [measure() for _ in range(runs)]
    summary: dict[str, object] = {}
    for key in ("rps", "p50_ms", "p99_ms"):
        values = [s[key] for s in samples]
        summary[key] = {
            "median": round(statistics.median(values), 2),
            "min": round(min(values), 2),
            "max": round(max(values), 2),
        }
    summary["non_2xx"] = sum(s["non_2xx"] for s in samples)
    summary["socket_errors"] = sum(s["socket_errors"] for s in samples)
    return summary


class Service:
    """A provisioned ctxcloud: schema, tenant, API key, user login, a project of 20 entries."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.key = ""
        self.jwt = ""

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
        token = requests.post(
            f"{url}/api/v1/auth/token",
            json={"tenant": "bench", "username": "bench", "password": self.password},
            timeout=30,
        )
        token.raise_for_status()
        self.jwt = token.json()["access_token"]


def service_env(data_dir: Path, extra: dict[str, str]) -> dict[str, str]:
    return {
        "CTXCLOUD_ENV": "development",
        "CTXCLOUD_DATA_DIR": str(data_dir),
        "CTXCLOUD_LOG_LEVEL": "WARNING",
        # The limiter stays on (its cost is measured) but must not cap the load itself.
        "CTXCLOUD_RATE_LIMIT_DEFAULT": "100000000/minute",
        **extra,
    }


def scenarios(
    url: str, service: Service, connections: list[int], duration: float, runs: int
) -> dict[str, object]:
    key = {"Authorization": f"Bearer {service.key}"}
    jwt = {"Authorization": f"Bearer {service.jwt}"}
    manifest = f"{url}/api/v1/projects/bench/context"
    small = f"{url}/api/v1/projects/bench/context/entries/small.txt"
    found: dict[str, object] = {}
    for c in connections:
        found[f"manifest_apikey_c{c}"] = repeated(runs, lambda c=c: wrk(manifest, c, duration, key))
        found[f"manifest_jwt_c{c}"] = repeated(runs, lambda c=c: wrk(manifest, c, duration, jwt))
    found["small_get_c16"] = repeated(runs, lambda: wrk(small, 16, duration, key))
    found["small_put_c16"] = repeated(
        runs, lambda: wrk(small, 16, duration, key, method="PUT", body_bytes=4096)
    )
    return found


def ceiling(
    work: Path, connections: list[int], duration: float, runs: int, workers: int = 2
) -> dict[str, object]:
    with gunicorn({}, work / "logs", workers=workers, app="bench.bare_app:app") as bare:
        return {
            f"ceiling_c{c}": repeated(runs, lambda c=c: wrk(f"{bare.url}/hello", c, duration, {}))
            for c in connections
        }


def ratio(results: dict, name: str, base: str) -> float | None:
    if name not in results or base not in results:
        return None
    return round(results[name]["rps"]["median"] / results[base]["rps"]["median"], 3)


def run(args: argparse.Namespace) -> dict[str, object]:
    connections = [16, 64]
    results: dict[str, object] = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "settings": {
            "duration_s": args.duration,
            "runs": args.runs,
            "gunicorn_workers": 2,
            "gunicorn_threads": int(os.environ.get("GUNICORN_THREADS", 8)),
        },
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    figures: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="ctxcloud-bench-") as tmp:
        work = Path(tmp)
        figures.update(ceiling(work, connections, args.duration, args.runs))
        embedded = Service(service_env(work / "embedded", {}))
        embedded.provision()
        with gunicorn(embedded.env, work / "logs") as server:
            embedded.seed(server.url)
            figures.update(scenarios(server.url, embedded, connections, args.duration, args.runs))
        with gunicorn(embedded.env, work / "logs", workers=1) as server:
            figures["manifest_apikey_c64_1worker"] = repeated(
                args.runs,
                lambda: wrk(
                    f"{server.url}/api/v1/projects/bench/context",
                    64,
                    args.duration,
                    {"Authorization": f"Bearer {embedded.key}"},
                ),
            )
        if args.production:
            figures.update(production(work, args))
    results["figures"] = figures
    results["ratios"] = {
        **{
            f"manifest_apikey_c{c}_vs_ceiling": ratio(
                figures, f"manifest_apikey_c{c}", f"ceiling_c{c}"
            )
            for c in connections
        },
        **{
            f"manifest_jwt_c{c}_vs_ceiling": ratio(figures, f"manifest_jwt_c{c}", f"ceiling_c{c}")
            for c in connections
        },
        "small_get_c16_vs_ceiling": ratio(figures, "small_get_c16", "ceiling_c16"),
        "small_put_c16_vs_ceiling": ratio(figures, "small_put_c16", "ceiling_c16"),
        "production_manifest_apikey_c64_vs_ceiling": ratio(
            figures, "production_manifest_apikey_c64", "ceiling_c64"
        ),
        "production_small_get_c16_vs_ceiling": ratio(
            figures, "production_small_get_c16", "ceiling_c16"
        ),
        "production_small_put_c16_vs_ceiling": ratio(
            figures, "production_small_put_c16", "ceiling_c16"
        ),
        "scaling_2_vs_1_worker": ratio(
            figures, "manifest_apikey_c64", "manifest_apikey_c64_1worker"
        ),
    }
    if args.streaming:
        from bench import streaming

        with tempfile.TemporaryDirectory(prefix="ctxcloud-stream-") as tmp:
            results["streaming"] = streaming.run(args.big_mib, args.runs, Path(tmp))
    return results


def production(work: Path, args: argparse.Namespace) -> dict[str, object]:
    """Scenarios 2-3 on PostgreSQL + Redis + S3 (moto over HTTP)."""
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
        service = Service(env)
        service.provision()
        with gunicorn(env, work / "logs") as server:
            service.seed(server.url)
            found = scenarios(server.url, service, [64], args.duration, args.runs)
    return {
        f"production_{name}": value
        for name, value in found.items()
        if not name.startswith("manifest_jwt")
    }


def markdown(results: dict) -> str:
    figures = results["figures"]
    lines = [
        "# Benchmark results",
        "",
        f"Run {results['started']} on {results['machine']['cpus']} CPUs, Python "
        f"{results['machine']['python']}; wrk {results['settings']['duration_s']} s per run, "
        f"median of {results['settings']['runs']} runs (min-max); gunicorn 2 workers x "
        f"{results['settings']['gunicorn_threads']} threads unless noted.",
        "",
        "| scenario | req/s | p50 ms | p99 ms | non-2xx |",
        "|---|---|---|---|---|",
    ]
    for name, value in figures.items():
        rps, p50, p99 = value["rps"], value["p50_ms"], value["p99_ms"]
        lines.append(
            f"| {name} | {rps['median']:.0f} ({rps['min']:.0f}-{rps['max']:.0f}) | "
            f"{p50['median']:.2f} | {p99['median']:.2f} ({p99['min']:.2f}-{p99['max']:.2f}) | "
            f"{value['non_2xx']} |"
        )
    lines += ["", "| ratio | value |", "|---|---|"]
    lines += [
        f"| {name} | {value} |" for name, value in results["ratios"].items() if value is not None
    ]
    if "streaming" in results:
        stream = results["streaming"]
        lines += [
            "",
            f"## Streaming one {stream['mib']} MiB entry",
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
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--big-mib", type=int, default=1024)
    parser.add_argument("--no-production", dest="production", action="store_false")
    parser.add_argument("--no-streaming", dest="streaming", action="store_false")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="seconds, not minutes: 1 run of 1 s, 8 MiB streaming (smoke test)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    if args.quick:
        args.duration, args.runs, args.big_mib = 1.0, 1, 8
    require_wrk()
    results = run(args)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "latest.md").write_text(markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
