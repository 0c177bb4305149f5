"""The `ctx` command against the service's own limits, in one run.

Usage: python -m bench.ctx_sync [--files 1000] [--file-kib 4] [--big-mib 1024] [--runs 3]
       [--json PATH]

A gunicorn of the project's configuration (2 workers, 4 threads, the embedded default)
serves, and each figure is the median (min-max) of --runs:

- **many small files**: `ctx push` of --files files of --file-kib KiB each, as one commit,
  beside the same commit POSTed by hand (one JSON body, base64 contents: the service's own
  cost for those bytes), and the push's peak RSS;
- **one big file**: `ctx push` of one --big-mib MiB file (a staged upload, streamed), beside
  one streamed PUT of the same bytes straight to the entry URL, and the push's peak RSS
  (the client must stay under 64 MiB however big the file);
- **a sync with nothing to do** over the small files: how many bytes the `ctx` process read
  (from /proc/self/io at its exit) against the files' size (each read once: about 1.0x), and
  how many manifest requests it made (from the service's access log: one).

`ctx` runs as its own process, as a user runs it; its peak RSS is the child's `ru_maxrss`.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.streaming import MIB, _connection, provision, service_env, upload  # noqa: E402
from tests.support.server import gunicorn  # noqa: E402

# Runs `ctx` in a child Python that reports its own I/O counters when it exits.
CTX_WITH_IO = (
    "import atexit, sys\n"
    "atexit.register(lambda: sys.stderr.write('IO ' + open('/proc/self/io').read()"
    ".replace(chr(10), ' ') + chr(10)))\n"
    "from ctxcloud_client.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def median_range(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 2),
        "min": round(min(values), 2),
        "max": round(max(values), 2),
    }


def run_ctx(env: dict[str, str], *args: str) -> dict[str, float]:
    """One `ctx` run: seconds, peak RSS (MiB) and bytes read (rchar)."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-c", CTX_WITH_IO, *args],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    stderr = process.stderr.read().decode() if process.stderr else ""
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"ctx {' '.join(args)} failed ({process.returncode}): {stderr[-2000:]}")
    io = dict(re.findall(r"(\w+): (\d+)", stderr.rsplit("IO ", 1)[-1]))
    return {
        "seconds": seconds,
        "peak_rss_mib": usage.ru_maxrss / 1024,
        "read_bytes": float(io.get("rchar", "0")),
    }


def make_files(folder: Path, count: int, size: int) -> int:
    for n in range(count):
        path = folder / f"notes/{n // 100:02d}/{n:04d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size))
    return count * size


def commit_by_hand(url: str, auth: dict[str, str], project: str, folder: Path) -> float:
    """The same files as one commit POSTed directly: seconds."""
    puts = [
        {
            "path": path.relative_to(folder).as_posix(),
            "content_base64": base64.b64encode(path.read_bytes()).decode(),
        }
        for path in sorted(folder.rglob("*.bin"))
    ]
    body = json.dumps({"put": puts}).encode()
    conn = _connection(url)
    started = time.perf_counter()
    conn.request(
        "POST",
        f"/api/v1/projects/{project}/context/commits",
        body=body,
        headers={**auth, "Content-Type": "application/json"},
    )
    response = conn.getresponse()
    response.read()
    if response.status != 201:
        raise RuntimeError(f"commit by hand: {response.status}")
    conn.close()
    return time.perf_counter() - started


def create_project(url: str, auth: dict[str, str], slug: str) -> None:
    conn = _connection(url)
    conn.request(
        "POST",
        "/api/v1/projects",
        body=json.dumps({"name": slug, "slug": slug}),
        headers={**auth, "Content-Type": "application/json"},
    )
    if conn.getresponse().status != 201:
        raise RuntimeError("could not create a bench project")
    conn.close()


def manifest_requests(log: Path, project: str) -> int:
    wanted = f"/api/v1/projects/{project}/context"
    count = 0
    for line in log.read_text(errors="replace").splitlines():
        if '"ctxcloud.access"' in line or '"logger": "ctxcloud.access"' in line:
            entry = json.loads(line)
            if entry.get("method") == "GET" and entry.get("path") == wanted:
                count += 1
    return count


def run(files: int, file_kib: int, big_mib: int, runs: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="ctx-bench-") as tmp:
        work = Path(tmp)
        env = {**service_env(work / "data"), "CTXCLOUD_LOG_LEVEL": "INFO"}
        key = provision(env)
        auth = {"Authorization": f"Bearer {key}"}
        with gunicorn(env, work / "logs", workers=2, threads=4) as server:
            ctx_env = {
                "CTX_URL": server.url,
                "CTX_API_KEY": key,
                "CTX_CONFIG_DIR": str(work / "ctx-config"),
                "CTX_NO_KEYRING": "1",
            }
            small: dict[str, list[float]] = {"ctx": [], "by_hand": [], "rss": []}
            big: dict[str, list[float]] = {"ctx": [], "by_hand": [], "rss": []}
            sync: dict[str, list[float]] = {"read_ratio": [], "manifest_requests": []}
            total = 0
            for n in range(runs):
                folder = work / f"small-{n}"
                total = make_files(folder, files, file_kib * 1024)
                create_project(server.url, auth, f"small-{n}")
                done = run_ctx(ctx_env, "push", f"small-{n}", str(folder), "-m", "bench")
                small["ctx"].append(total / done["seconds"] / 1e6)
                small["rss"].append(done["peak_rss_mib"])
                create_project(server.url, auth, f"hand-{n}")
                small["by_hand"].append(
                    total / commit_by_hand(server.url, auth, f"hand-{n}", folder) / 1e6
                )
                # Nothing to do: each file read once, one manifest request.
                log = Path(server.log_path)
                before = manifest_requests(log, f"small-{n}")
                empty = work / f"empty-{n}"
                empty.mkdir()
                create_project(server.url, auth, f"empty-{n}")
                baseline = run_ctx(ctx_env, "sync", f"empty-{n}", str(empty))["read_bytes"]
                quiet = run_ctx(ctx_env, "sync", f"small-{n}", str(folder))
                sync["read_ratio"].append((quiet["read_bytes"] - baseline) / total)
                sync["manifest_requests"].append(manifest_requests(log, f"small-{n}") - before)

                big_folder = work / f"big-{n}"
                big_folder.mkdir()
                with open(big_folder / "big.bin", "wb") as handle:
                    for _ in range(big_mib):
                        handle.write(os.urandom(MIB))
                create_project(server.url, auth, f"big-{n}")
                done = run_ctx(ctx_env, "push", f"big-{n}", str(big_folder), "-m", "bench")
                big["ctx"].append(big_mib * MIB / done["seconds"] / 1e6)
                big["rss"].append(done["peak_rss_mib"])
                create_project(server.url, auth, f"put-{n}")
                path = f"/api/v1/projects/put-{n}/context/entries/big.bin"
                big["by_hand"].append(upload(server.url, path, big_mib * MIB, auth))
                (big_folder / "big.bin").unlink()
    return {
        "small_files": {
            "files": files,
            "file_kib": file_kib,
            "ctx_push_mb_s": median_range(small["ctx"]),
            "same_commit_by_hand_mb_s": median_range(small["by_hand"]),
            "ratio_to_by_hand": round(
                statistics.median(
                    c / h for c, h in zip(small["ctx"], small["by_hand"], strict=True)
                ),
                2,
            ),
            "ctx_peak_rss_mib": median_range(small["rss"]),
        },
        "big_file": {
            "mib": big_mib,
            "ctx_push_mb_s": median_range(big["ctx"]),
            "streamed_put_mb_s": median_range(big["by_hand"]),
            "ratio_to_put": round(
                statistics.median(c / h for c, h in zip(big["ctx"], big["by_hand"], strict=True)),
                2,
            ),
            "ctx_peak_rss_mib": median_range(big["rss"]),
        },
        "no_change_sync": {
            "bytes_read_over_files_size": median_range(sync["read_ratio"]),
            "manifest_requests": median_range(sync["manifest_requests"]),
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--file-kib", type=int, default=4)
    parser.add_argument("--big-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", help="Also write the results to this file.")
    args = parser.parse_args(argv)
    results = run(args.files, args.file_kib, args.big_mib, args.runs)
    text = json.dumps(results, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
