"""The proxy's nginx.conf as the two deployments render it, and a test-local copy of it.

One template, helm/ctxcloud/files/nginx.conf.template, is rendered twice: by Helm (the chart
fills the NGINX_* placeholders into the proxy ConfigMap) and by the nginx image's entrypoint
under docker compose (envsubst with the compose file's environment). Both are reproduced here
with the real tools: helm-python-sdk runs Helm's own rendering; GNU envsubst runs with the
same arguments as the image's 20-envsubst-on-templates.sh.

`for_test` then changes only what a test must change (listen port, upstream address,
writable paths) and refuses to run if a protective directive is missing before or after.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import helm_python as helm
import pytest
import yaml

from tests.deploy.conftest import CHART, ROOT
from tests.support.server import free_port, stop

TEMPLATE = CHART / "files" / "nginx.conf.template"
COMPOSE = ROOT / "docker-compose.yml"
PLACEHOLDER = re.compile(r"\$\{(NGINX_[A-Z0-9_]+)\}")
COMPOSE_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")
NGINX = "/usr/sbin/nginx"

# The directives the protection rests on, each a regex over the rendered text. A rewrite that
# dropped or altered one of them would make the attack tests prove nothing.
PROTECTIVE = (
    r"^\s*client_header_timeout \d+\w*;",
    r"^\s*client_body_timeout \d+\w*;",
    r"^\s*send_timeout \d+\w*;",
    r"^\s*reset_timedout_connection on;",
    r"^\s*keepalive_timeout \d+\w*;",
    r"^\s*keepalive_requests \d+;",
    r"^\s*proxy_request_buffering on;",
    r"^\s*proxy_buffering on;",
    r"^\s*client_body_buffer_size \d+\w*;",
    r"^\s*client_body_temp_path \S+",
    r"^\s*client_max_body_size \d+\w*;",
    r"^\s*proxy_max_temp_file_size \d+\w*;",
    r"^\s*limit_conn_zone \$binary_remote_addr zone=ctxcloud_per_address:\S+;",
    r"^\s*limit_conn ctxcloud_per_address \d+;",
    r"^\s*limit_conn_status 429;",
    r"^\s*large_client_header_buffers 4 8k;",
    r"^\s*worker_connections \d+;",
    r"^\s*worker_rlimit_nofile \d+;",
    r"^\s*proxy_connect_timeout \d+\w*;",
    r"^\s*proxy_send_timeout \d+\w*;",
    r"^\s*proxy_read_timeout \d+\w*;",
    r"^\s*proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;",
    r"^\s*proxy_set_header X-Request-ID \$ctxcloud_request_id;",
    r"^\s*underscores_in_headers off;",
    r"^\s*error_page 400 /\.ctxcloud-proxy/errors/400;",
    r"^\s*error_page 413 /\.ctxcloud-proxy/errors/413;",
    r"^\s*error_page 494 =431 /\.ctxcloud-proxy/errors/431;",
    r"^\s*error_page 502 /\.ctxcloud-proxy/errors/502;",
)


def placeholders(text: str | None = None) -> set[str]:
    """The NGINX_* names the template asks for."""
    return set(PLACEHOLDER.findall(TEMPLATE.read_text() if text is None else text))


def render_chart(values: dict | None = None) -> str:
    """nginx.conf exactly as the chart puts it into the proxy ConfigMap."""
    with helm.Chart.load(CHART) as chart:
        files = chart.render(values, name="ctxcloud", namespace="ctxcloud")
    for path, text in files.items():
        if path.endswith("/proxy-configmap.yaml"):
            for doc in yaml.safe_load_all(text):
                if doc:
                    return doc["data"]["nginx.conf"]
    raise AssertionError("the chart rendered no proxy ConfigMap")


def compose_proxy_environment(dotenv: Mapping[str, str] | None = None) -> dict[str, str]:
    """The proxy service's environment after compose's interpolation: `dotenv` where it sets a
    variable, else each reference's own default (none: compose's defaults alone)."""
    service = yaml.safe_load(COMPOSE.read_text())["services"]["proxy"]
    values = dict(dotenv or {})

    def resolve(match: re.Match) -> str:
        name, operator, default = match.groups()
        value = values.get(name)
        unset = value is None if operator in ("-", "?") else not value
        if operator and unset:
            if operator.endswith("?"):
                raise AssertionError(f"compose needs {name}: {default}")
            return default or ""
        return value or ""

    return {
        name: COMPOSE_REFERENCE.sub(resolve, str(raw)).replace("$$", "$")
        for name, raw in service["environment"].items()
    }


def envsubst(template: str, environment: Mapping[str, str], name_filter: re.Pattern) -> str:
    """GNU envsubst as the nginx image runs it: only the defined variables whose names match
    the filter are replaced, both as $NAME and ${NAME}; every other $ stays."""
    executable = shutil.which("envsubst")
    if executable is None:
        pytest.fail("envsubst is not installed: run .ci/packages (Debian's gettext-base)")
    names = sorted(name for name in environment if name_filter.search(name))
    shell_format = " ".join(f"${{{name}}}" for name in names)
    result = subprocess.run(
        [executable, shell_format],
        input=template,
        env={"PATH": os.environ.get("PATH", ""), **environment},
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return result.stdout


def render_compose(dotenv: Mapping[str, str] | None = None) -> str:
    """nginx.conf exactly as the compose proxy's entrypoint writes /tmp/nginx.conf."""
    environment = compose_proxy_environment(dotenv)
    # The image's entrypoint substitutes only variables matching NGINX_ENVSUBST_FILTER.
    name_filter = re.compile(environment.get("NGINX_ENVSUBST_FILTER", ""))
    return envsubst(TEMPLATE.read_text(), environment, name_filter)


def missing_protection(conf: str) -> list[str]:
    return [pattern for pattern in PROTECTIVE if not re.search(pattern, conf, re.M)]


def _replace(text: str, old: str, new: str, count: int | None = None) -> str:
    found = text.count(old)
    assert found and (count is None or found == count), f"{old!r} found {found} times"
    return text.replace(old, new)


def for_test(conf: str, *, port: int, upstream: str, workdir: Path) -> str:
    """The rendered `conf` listening on 127.0.0.1:`port`, proxying to `upstream` and writing
    under `workdir`: nothing else changes, and every protective directive is still there."""
    missing = missing_protection(conf)
    assert not missing, f"the rendered nginx.conf lacks {missing}"
    upstreams = re.findall(r"^\s*server (\S+);", conf, re.M)
    assert len(upstreams) == 1, upstreams
    listen = f"listen 127.0.0.1:{port} default_server;"
    out = _replace(conf, "listen 8080 default_server;", listen, 1)
    out = _replace(out, f"server {upstreams[0]};", f"server {upstream};", 1)
    out = _replace(out, " /tmp/", f" {workdir}/tmp/")
    out = _replace(out, " /var/cache/nginx/", f" {workdir}/spool/")
    assert not missing_protection(out)
    changed = [
        (before, after)
        for before, after in zip(conf.splitlines(), out.splitlines(), strict=True)
        if before != after
    ]
    allowed = re.compile(r"^\s*(listen|server|pid|\w+_temp_path) ")
    assert all(allowed.match(before) for before, _ in changed), changed
    return out


@dataclass
class Nginx:
    url: str
    port: int
    process: subprocess.Popen
    access_log: Path
    error_log: Path

    def access_entries(self) -> list[dict]:
        """nginx's JSON access log (what it answered itself, and failures)."""
        import json

        text = self.access_log.read_text(errors="replace")
        # Only whole lines: nginx may be writing the last one while it is read.
        lines = text.split("\n")[:-1]
        return [json.loads(line) for line in lines if line.startswith("{")]


@contextmanager
def workdir() -> Iterator[Path]:
    """A directory nginx may write to. Run as root (CI), nginx runs as `nobody` instead, as
    unprivileged as in its container: the directory is made outside pytest's private tmp."""
    path = Path(tempfile.mkdtemp(prefix="ctxcloud-nginx-"))
    try:
        for sub in ("tmp", "spool"):
            (path / sub).mkdir()
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            for each in (path, path / "tmp", path / "spool"):
                os.chown(each, nobody.pw_uid, nobody.pw_gid)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextmanager
def nginx(conf: str, directory: Path, port: int) -> Iterator[Nginx]:
    """Debian's nginx on `conf` (made local by `for_test` for `directory`, from `workdir`),
    never as root, stopped by its PID."""
    if not Path(NGINX).exists():
        pytest.fail("nginx is not installed: run .ci/packages (it installs Debian's nginx)")
    conf_path = directory / "nginx.conf"
    conf_path.write_text(conf)
    access_log, error_log = directory / "access.log", directory / "error.log"
    command = [NGINX, "-p", str(directory), "-c", str(conf_path), "-e", "stderr"]
    access_log.touch()
    identity: dict = {}
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        identity = {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}
        # nginx reopens /dev/stdout (its access log), as its own user.
        os.chown(access_log, nobody.pw_uid, nobody.pw_gid)
    check = subprocess.run(
        [*command, "-t", "-q"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=False,
        **identity,
    )
    assert check.returncode == 0, check.stderr
    with open(access_log, "ab") as out, open(error_log, "wb") as err:
        process = subprocess.Popen(
            [*command, "-g", "daemon off;"],
            stdout=out,
            stderr=err,
            start_new_session=True,
            **identity,
        )
    server = Nginx(f"http://127.0.0.1:{port}", port, process, access_log, error_log)
    try:
        _wait_listening(server)
        yield server
    finally:
        stop(process)


@contextmanager
def serving(conf: str, upstream: str) -> Iterator[Nginx]:
    """The rendered `conf` on a free loopback port in front of `upstream` (host:port)."""
    port = free_port()
    with workdir() as directory:
        local = for_test(conf, port=port, upstream=upstream, workdir=directory)
        with nginx(local, directory, port) as server:
            yield server


def _wait_listening(server: Nginx, timeout: float = 20) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"nginx exited: {server.error_log.read_text(errors='replace')}")
        try:
            socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nginx not listening after {timeout}s")
