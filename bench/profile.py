"""Where a worker spends its time under load: py-spy on one gunicorn worker while wrk runs.

Usage: python -m bench.profile [--target manifest|manifest_jwt|small_get|small_put]
       [--seconds 10] [--connections 64] [--top 25] [--out bench/results/profile-<target>.txt]

Starts the embedded service (1 worker, the harness's threads), seeds it like bench.run, runs
wrk for --seconds and `py-spy record --format raw` on the worker meanwhile, then prints the
frames with the most samples (own time and inclusive time). py-spy is a profiling tool, not a
dependency: `pip install py-spy` into the venv first.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.run import THREADS, Service, service_env, wrk  # noqa: E402
from tests.support.server import gunicorn  # noqa: E402

TARGETS = {
    "manifest": ("/api/v1/projects/bench/context", "key", "GET", 0),
    "manifest_jwt": ("/api/v1/projects/bench/context", "jwt", "GET", 0),
    "small_get": ("/api/v1/projects/bench/context/entries/small.txt", "key", "GET", 0),
    "small_put": ("/api/v1/projects/bench/context/entries/small.txt", "key", "PUT", 4096),
}


def top_frames(raw: str, top: int) -> list[str]:
    """py-spy's raw (collapsed) stacks as the frames with the most own and inclusive samples."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        frames = [f for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += samples
        own[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples
    lines = [f"{total} samples", "", "own %  frame"]
    lines += [f"{100 * n / total:5.1f}  {frame}" for frame, n in own.most_common(top)]
    lines += ["", "incl % frame (the project's own code: app/, plugins/)"]
    ours = [(f, n) for f, n in inclusive.most_common() if "(app/" in f or "(plugins/" in f]
    lines += [f"{100 * n / total:5.1f}  {frame}" for frame, n in ours[:top]]
    lines += ["", "incl % frame (libraries)"]
    theirs = [(f, n) for f, n in inclusive.most_common() if "site-packages" in f or "/" in f]
    theirs = [(f, n) for f, n in theirs if (f, n) not in ours and n < 0.6 * total]
    lines += [f"{100 * n / total:5.1f}  {frame}" for frame, n in theirs[:top]]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", choices=sorted(TARGETS), default="manifest")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--idle", action="store_true", help="include idle (waiting) samples")
    parser.add_argument(
        "--all-threads",
        action="store_true",
        help="sample every running thread, not only the one holding the GIL (shows waits)",
    )
    args = parser.parse_args(argv)
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(py_spy).exists():
        raise SystemExit("py-spy is missing: `.venv/bin/pip install py-spy`")
    path, credential, method, body = TARGETS[args.target]
    with tempfile.TemporaryDirectory(prefix="ctxcloud-profile-") as tmp:
        work = Path(tmp)
        service = Service(service_env(work / "data", {}))
        service.provision()
        with gunicorn(service.env, work / "logs", workers=1, threads=THREADS) as server:
            service.seed(server.url)
            (pid,) = server.worker_pids()
            headers = {"Authorization": f"Bearer {getattr(service, credential)}"}
            raw = work / "profile.txt"
            command = [py_spy, "record", "--format", "raw", "--rate", "250", "--nonblocking"]
            command += ["--duration", str(args.seconds), "--pid", str(pid), "-o", str(raw)]
            if args.idle:
                command.append("--idle")
            if not args.all_threads:
                command.append("--gil")
            spy = threading.Thread(target=subprocess.run, args=(command,), kwargs={"check": True})
            spy.start()
            load = wrk(server.url + path, args.connections, args.seconds, headers, method, body)
            spy.join()
            report = [
                f"{args.target}: {load['rps']:.0f} req/s under py-spy",
                *top_frames(raw.read_text(), args.top),
            ]
    text = "\n".join(report) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
