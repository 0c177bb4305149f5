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
import os
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


# --- Worker CPU per request, split by stage (in process, cProfile on thread CPU time) ---------

STAGES = (
    "auth",
    "rate limiter",
    "DB",
    "storage",
    "encryption",
    "serialisation",
    "logging",
    "metrics",
    "dispatch (Flask, flask-smorest)",
    "other",
)

# Own time of a function is charged by its file: the first rule whose fragment is in the path
# (or, for C functions, in the function's name) wins. Project files first, then libraries.
STAGE_RULES: tuple[tuple[str, str], ...] = (
    # the project (app/ is imported as ctxcloud, its files stay app/...)
    ("/app/pipeline.py", "auth"),
    ("/app/auth.py", "auth"),
    ("/app/tenancy/", "auth"),
    ("/app/permissions.py", "auth"),
    ("/app/roles.py", "auth"),
    ("/app/token_signing.py", "auth"),
    ("/app/signing_keys.py", "auth"),
    ("/plugins/auth_", "auth"),
    ("/plugins/users/", "auth"),
    ("/app/ratelimit", "rate limiter"),
    ("/app/db.py", "DB"),
    ("/models.py", "DB"),
    ("/app/storage.py", "storage"),
    ("/app/objects.py", "storage"),
    ("/app/blocks.py", "storage"),
    ("/app/serial_worker.py", "storage"),
    ("/app/streamed_body.py", "storage"),
    ("/app/read_ahead.py", "storage"),
    ("/plugins/storage_", "storage"),
    ("/app/crypto.py", "encryption"),
    ("/app/keystore.py", "encryption"),
    ("/app/key_derivation.py", "encryption"),
    ("/app/requestlog.py", "logging"),
    ("/app/metrics.py", "metrics"),
    ("/schemas.py", "serialisation"),
    ("/app/fields.py", "serialisation"),
    ("/app/json_input.py", "serialisation"),
    ("/app/api.py", "dispatch (Flask, flask-smorest)"),
    ("/app/blueprint.py", "dispatch (Flask, flask-smorest)"),
    ("/app/errors.py", "dispatch (Flask, flask-smorest)"),
    # the rest of the project's own files, wherever it is checked out
    (f"{ROOT}/plugins/", "other"),
    (f"{ROOT}/app/", "other"),
    # libraries
    ("/peewee.py", "DB"),
    ("/playhouse/", "DB"),
    ("/sqlite3/", "DB"),
    ("sqlite3.", "DB"),
    ("psycopg", "DB"),
    ("/flask_limiter/", "rate limiter"),
    ("/limits/", "rate limiter"),
    ("/flask_jwt_extended/", "auth"),
    ("/jwt/", "auth"),
    ("/argon2/", "auth"),
    ("/cryptography/", "encryption"),
    ("cryptography", "encryption"),
    ("/boto3/", "storage"),
    ("/botocore/", "storage"),
    ("/s3transfer/", "storage"),
    ("/marshmallow/", "serialisation"),
    ("/flask/json/", "serialisation"),
    ("/logging/", "logging"),
    ("/prometheus_client/", "metrics"),
    ("/flask_smorest/", "dispatch (Flask, flask-smorest)"),
    ("/webargs/", "dispatch (Flask, flask-smorest)"),
    ("/flask/", "dispatch (Flask, flask-smorest)"),
    ("/werkzeug/", "dispatch (Flask, flask-smorest)"),
    ("/blinker/", "dispatch (Flask, flask-smorest)"),
    ("/itsdangerous/", "dispatch (Flask, flask-smorest)"),
)
# Everything else is neutral: the Python builtins and C functions, the standard library (json,
# hmac, hashlib, threading, re, socket...), redis-py, urllib3, pluggy. A neutral function's own
# time goes to its callers' stages, in proportion to the time it spent for each caller
# (cProfile's caller edges), recursively through neutral callers.


def stage_of(key: tuple[str, int, str]) -> str | None:
    filename, _, name = key
    where = filename if filename != "~" else name
    for fragment, stage in STAGE_RULES:
        if fragment in where:
            return stage
    return None


def split_by_stage(stats: dict) -> tuple[dict[str, float], dict[str, list[tuple[float, str]]]]:
    """Seconds of own time per stage, and each stage's functions by own time (for checking)."""
    memo: dict[tuple, dict[str, float]] = {}

    def shares(key: tuple, seen: frozenset) -> dict[str, float]:
        if key in memo:
            return memo[key]
        stage = stage_of(key)
        if stage is not None:
            return {stage: 1.0}
        callers = {c: v[2] for c, v in stats[key][4].items() if c != key and c not in seen}
        total = sum(callers.values())
        if not total:
            found = {"other": 1.0}
        else:
            found = collections.defaultdict(float)
            for caller, tt in callers.items():
                for stage, part in shares(caller, seen | {key}).items():
                    found[stage] += part * tt / total
        if not seen:
            memo[key] = dict(found)
        return dict(found)

    seconds = dict.fromkeys(STAGES, 0.0)
    functions: dict[str, list[tuple[float, str]]] = {stage: [] for stage in STAGES}
    for key, (_, _, tt, _, _) in stats.items():
        for stage, part in shares(key, frozenset()).items():
            seconds[stage] += tt * part
            filename, line, name = key
            label = name if filename == "~" else f"{name} ({_short(filename)}:{line})"
            functions[stage].append((tt * part, label))
    for stage in functions:
        functions[stage].sort(reverse=True)
    return seconds, functions


def _short(filename: str) -> str:
    for marker in ("site-packages/", "/work/main/", "/lib/python3"):
        if marker in filename:
            return filename.split(marker, 1)[1]
    return filename


class CpuSampler:
    """A statistical profiler of this (the main) thread: SIGPROF from a CPU-time interval
    timer (the kernel's tick, 4 ms here), each sample weighted by the CPU time the thread spent
    since the previous one, counted while `active` is set. The signal handler runs at the next
    bytecode boundary, so time in C code (SQLite, hashing, a syscall) lands on the Python
    frame that called it. The innermost frame with a stage names the stage."""

    def __init__(self, interval: float = 0.0005) -> None:
        self.interval = interval
        self.active = False
        self.samples = 0
        self.seconds: collections.Counter[str] = collections.Counter()
        self.frames: collections.Counter[tuple[str, str]] = collections.Counter()

    def __enter__(self) -> CpuSampler:
        import signal
        import time

        self._last = time.thread_time()
        self._previous = signal.signal(signal.SIGPROF, self._sample)
        signal.setitimer(signal.ITIMER_PROF, self.interval, self.interval)
        return self

    def __exit__(self, *exc) -> None:
        import signal

        signal.setitimer(signal.ITIMER_PROF, 0, 0)
        signal.signal(signal.SIGPROF, self._previous)

    def _sample(self, signum, frame) -> None:
        import time

        now = time.thread_time()
        spent, self._last = now - self._last, now
        if not self.active or frame is None:
            return
        self.samples += 1
        leaf, stage = frame, None
        while frame is not None:
            code = frame.f_code
            stage = stage_of((code.co_filename, 0, code.co_name))
            if stage is not None:
                break
            frame = frame.f_back
        stage = stage or "other"
        code = (frame or leaf).f_code
        label = f"{code.co_name} ({_short(code.co_filename)})"
        self.seconds[stage] += spent
        self.frames[(stage, label)] += spent


class InProcess:
    """The service's app in this process, seeded like bench.run, driven by direct WSGI calls."""

    def __init__(self, config: dict[str, object], entries: int = 20) -> None:
        import io

        from ctxcloud import create_app
        from ctxcloud.cli import all_migrations
        from ctxcloud.migrations import upgrade
        from tests.support.factories import bearer, make_api_key, make_tenant

        real_stderr = sys.stderr
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - the access log's handler keeps it
        try:
            self.app = create_app(
                {
                    "ENV": "development",
                    # The service's default: the access log line is written (to /dev/null).
                    "LOG_LEVEL": "INFO",
                    "RATE_LIMIT_DEFAULT": "100000000/minute",
                    **config,
                }
            )
        finally:
            sys.stderr = real_stderr
        with self.app.app_context():
            upgrade(self.app.extensions["ctxcloud"].database, all_migrations())
        client = self.app.test_client()
        tenant = make_tenant(self.app, "bench")
        _, key = make_api_key(self.app, tenant, name="bench")
        self.headers = bearer(key)
        client.post("/api/v1/projects", json={"name": "bench"}, headers=self.headers)
        for start in range(0, entries, 1000):
            put = [
                {"path": f"docs/note-{i:05d}.md", "content": f"# Note {i}\n" + "x" * 200}
                for i in range(start, min(entries, start + 1000))
            ]
            seeded = client.post(
                "/api/v1/projects/bench/context/commits",
                json={"message": "seed", "put": put},
                headers=self.headers,
            )
            assert seeded.status_code in (200, 201), seeded.get_data(as_text=True)
        small = client.put(SMALL, data=b"s" * 4096, headers=self.headers)
        assert small.status_code in (200, 201), small.get_data(as_text=True)
        self._io = io

    def environ(self, method: str, path: str, body: int) -> dict:
        from werkzeug.test import EnvironBuilder

        data = b"s" * body if body else None
        builder = EnvironBuilder(path=path, method=method, headers=self.headers, data=data)
        try:
            return builder.get_environ()
        finally:
            builder.close()

    def call(self, environ: dict) -> int:
        status: list[str] = []

        def start_response(line, headers, exc_info=None):
            status.append(line)

        body = self.app(environ, start_response)
        try:
            for _ in body:
                pass
        finally:
            close = getattr(body, "close", None)
            if close:
                close()
        return int(status[0].split()[0])

    def close(self) -> None:
        ext = self.app.extensions["ctxcloud"]
        ext.database.close_all()


SMALL = "/api/v1/projects/bench/context/entries/small.txt"
STAGE_TARGETS = {
    "manifest": ("GET", "/api/v1/projects/bench/context", 0),
    "small_put": ("PUT", SMALL, 4096),
    "small_get": ("GET", SMALL, 0),
}


def measure_stages(
    service: InProcess, target: str, requests: int, rounds: int
) -> dict[str, object]:
    """Unprofiled CPU per request (rounds x requests); then the same requests under a CPU
    sampler (the split by stage); then one pass under cProfile (a cross-check)."""
    import cProfile
    import pstats
    import statistics
    import time

    method, path, body = STAGE_TARGETS[target]

    def batch(count: int, profiler=None, sampler=None) -> list[tuple[float, float]]:
        # Environments are built first, so only the app's own work is timed.
        environs = [service.environ(method, path, body) for _ in range(count)]
        spent = []
        for environ in environs:
            thread0, process0 = time.thread_time(), time.process_time()
            if profiler:
                profiler.enable()
            if sampler:
                sampler.active = True
            status = service.call(environ)
            if sampler:
                sampler.active = False
            if profiler:
                profiler.disable()
            spent.append((time.thread_time() - thread0, time.process_time() - process0))
            assert status in (200, 201), (target, status)
        return spent

    batch(min(200, requests))  # warm: caches, code paths, connections
    thread_ms, process_ms = [], []
    for _ in range(rounds):
        spent = batch(requests)
        thread_ms.append(1000 * sum(s[0] for s in spent) / requests)
        process_ms.append(1000 * sum(s[1] for s in spent) / requests)
    with CpuSampler() as sampler:
        sampled = batch(requests * rounds, sampler=sampler)
    sampled_ms = 1000 * sum(s[0] for s in sampled) / len(sampled)
    profiler = cProfile.Profile(time.thread_time)
    profiled = batch(min(requests, 500), profiler=profiler)
    profiled_ms = 1000 * sum(s[0] for s in profiled) / len(profiled)
    seconds, functions = split_by_stage(pstats.Stats(profiler).stats)  # type: ignore[attr-defined]
    total = sum(seconds.values()) or 1.0
    sampled_total = sum(sampler.seconds.values()) or 1.0
    thread = statistics.median(thread_ms)
    share = {stage: sampler.seconds[stage] / sampled_total for stage in STAGES}
    top_sampled: dict[str, list] = {stage: [] for stage in STAGES}
    for (stage, label), spent in sampler.frames.most_common():
        if len(top_sampled[stage]) < 8:
            top_sampled[stage].append((round(1000 * spent / len(sampled), 4), label))
    return {
        "requests": requests,
        "rounds": rounds,
        "thread_cpu_ms": {"median": thread, "min": min(thread_ms), "max": max(thread_ms)},
        "process_cpu_ms": {
            "median": statistics.median(process_ms),
            "min": min(process_ms),
            "max": max(process_ms),
        },
        "sampled_thread_cpu_ms": sampled_ms,
        "samples": sampler.samples,
        "profiled_thread_cpu_ms": profiled_ms,
        # The sampler's shares applied to the unprofiled request thread's CPU.
        "share": share,
        "stage_ms": {stage: thread * share[stage] for stage in STAGES},
        "cprofile_share": {stage: seconds[stage] / total for stage in STAGES},
        "top_sampled": top_sampled,
        "top_cprofile": {
            stage: [
                (round(1000 * s / len(profiled), 4), label)
                for s, label in functions[stage][:8]
                if s
            ]
            for stage in STAGES
        },
    }


def stages_main(args: argparse.Namespace) -> int:
    import contextlib
    import json
    import platform
    import time

    stacks = ["embedded"] + (["production"] if args.production else [])
    found: dict[str, dict[str, object]] = {}
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    load = os.getloadavg()
    for stack in stacks:
        with contextlib.ExitStack() as context:
            tmp = context.enter_context(tempfile.TemporaryDirectory(prefix="ctxcloud-stages-"))
            config: dict[str, object] = {"DATA_DIR": tmp}
            if stack == "production":
                from tests.stack import postgres_database, redis_db
                from tests.support.s3server import aws_environment, moto_s3

                s3 = context.enter_context(moto_s3())
                context.enter_context(aws_environment(s3.env))
                config.update(
                    DATABASE_URL=context.enter_context(postgres_database()),
                    REDIS_URL=context.enter_context(redis_db()),
                    **s3.config(),
                )
            service = InProcess(config)
            context.callback(service.close)
            for target in args.stage_targets:
                found[f"{target} ({stack})"] = measure_stages(
                    service, target, args.requests, args.rounds
                )
                print(f"{target} ({stack}): done", file=sys.stderr)
    results = {
        "started": started,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "loadavg_at_start": [round(x, 2) for x in load],
            "loadavg_at_end": [round(x, 2) for x in os.getloadavg()],
        },
        "columns": found,
    }
    text = stages_markdown(results)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        args.out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


def stages_markdown(results: dict) -> str:
    columns = results["columns"]
    names = list(columns)
    machine = results["machine"]
    first = next(iter(columns.values()))
    lines = [
        "# Worker CPU per request, by stage",
        "",
        f"`python -m bench.profile --stages`, {results['started']}, {machine['cpus']} CPUs, "
        f"Python {machine['python']}, load average {machine['loadavg_at_start']} at start and "
        f"{machine['loadavg_at_end']} at the end. In process (WSGI calls on one thread, no "
        "network between client and app, access log on at INFO into /dev/null), ms of CPU per "
        "request. Each stage: the request thread's unprofiled CPU (median of "
        f"{first['rounds']} rounds of {first['requests']} requests) times the stage's share "
        "of a CPU-weighted stack sampler's samples over as many requests again; the share "
        "that one cProfile pass gives (own time by file, thread CPU timer) beside it as a "
        "cross-check. Attribution rules: bench/README.md.",
        "",
        "| stage | " + " | ".join(f"{n}: ms (sampled %, cProfile %)" for n in names) + " |",
        "|---|" + "---|" * len(names),
    ]
    for stage in STAGES:
        cells = [
            f"{columns[n]['stage_ms'][stage]:.3f} ({100 * columns[n]['share'][stage]:.0f} %, "
            f"{100 * columns[n]['cprofile_share'][stage]:.0f} %)"
            for n in names
        ]
        lines.append(f"| {stage} | " + " | ".join(cells) + " |")

    def spread(value: dict) -> str:
        return f"{value['median']:.3f} ({value['min']:.3f}-{value['max']:.3f})"

    rows = [
        (
            "**request thread, total** (median, min-max of rounds)",
            lambda c: f"**{spread(c['thread_cpu_ms'])}**",
        ),
        ("process, all threads (median, min-max)", lambda c: spread(c["process_cpu_ms"])),
        (
            "request thread while sampled (samples)",
            lambda c: f"{c['sampled_thread_cpu_ms']:.3f} ({c['samples']})",
        ),
        ("request thread under cProfile", lambda c: f"{c['profiled_thread_cpu_ms']:.3f}"),
    ]
    for label, cell in rows:
        lines.append(f"| {label} | " + " | ".join(cell(columns[n]) for n in names) + " |")
    lines += ["", "## Top frames per stage (sampled; ms of CPU per request)"]
    for name in names:
        lines += ["", f"### {name}", ""]
        for stage in STAGES:
            top = columns[name]["top_sampled"][stage][:5]
            if top:
                listed = "; ".join(f"{ms:.3f} {label}" for ms, label in top)
                lines.append(f"- {stage}: {listed}")
    return "\n".join(lines) + "\n"


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
    parser.add_argument(
        "--stages",
        action="store_true",
        help="in process: worker CPU per request split by stage (cProfile), not py-spy",
    )
    parser.add_argument(
        "--stage-target",
        dest="stage_targets",
        action="append",
        choices=sorted(STAGE_TARGETS),
        help="with --stages (repeatable; default manifest and small_put)",
    )
    parser.add_argument("--requests", type=int, default=2000, help="with --stages, per round")
    parser.add_argument("--rounds", type=int, default=3, help="with --stages")
    parser.add_argument(
        "--production",
        action="store_true",
        help="with --stages: also on PostgreSQL + Redis + S3 (moto), as the production tier",
    )
    args = parser.parse_args(argv)
    if args.stages:
        args.stage_targets = args.stage_targets or ["manifest", "small_put"]
        return stages_main(args)
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
