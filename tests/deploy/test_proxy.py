"""The buffering proxy, as shipped, in front of the real service: slow bodies, slow heads and
idle connections are held by nginx and never reach gunicorn, health and an authenticated
manifest keep answering within a second, and whatever nginx answers itself is problem+json.

nginx.conf is rendered exactly as the Helm chart renders it (helm-python-sdk) and as
docker compose would (the image's envsubst on the same template with compose's defaults);
tests/deploy/proxyconf.py changes only the listen port, the upstream and the writable paths,
and refuses to if a protective directive is missing. Debian's nginx runs it (.ci/packages).
Every client timeout below is a failure bound, not a measurement.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import resource
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psutil
import pytest
import requests
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.wrappers import Request

from tests import stack
from tests.deploy import proxyconf
from tests.support.server import Server, cli, free_port, gunicorn

pytestmark = [pytest.mark.server, pytest.mark.deploy]

SCOPES = "context:read,projects:read,projects:write,context:write"
PROJECT = "shield"
PROBLEM_KEYS = {"type", "title", "status", "detail", "code", "request_id"}
JSON_LIMIT = 16 * 1024 * 1024  # CTXCLOUD_MAX_JSON_BYTES
ENTRY_LIMIT = 5 * 1024**3  # CTXCLOUD_MAX_ENTRY_BYTES
GENERATED_ID = re.compile(r"^[0-9a-f]{32}$")
# Sockets this module holds at once (the idle attack), plus room for everything else.
OPEN_FILES = 4096


@dataclass
class Stack:
    server: Server
    proxy: proxyconf.Nginx
    headers: dict[str, str]

    @property
    def gunicorn_port(self) -> int:
        return int(self.server.url.rsplit(":", 1)[1])

    def manifest_url(self) -> str:
        return f"{self.proxy.url}/api/v1/projects/{PROJECT}/context"


# ---- fixtures ---------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def enough_file_descriptors() -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = OPEN_FILES if hard == resource.RLIM_INFINITY else min(OPEN_FILES, hard)
    assert wanted >= 1400, f"RLIMIT_NOFILE hard limit {hard} is too low for 1,000 sockets"
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.fixture(scope="module")
def service(stack_config, tmp_path_factory) -> Iterator[tuple[Server, dict[str, str]]]:
    """ctxcloud under gunicorn (the app_config settings), provisioned with the CLI, behind one
    trusted proxy; a project made over HTTP."""
    root = tmp_path_factory.mktemp("proxied")
    config = {
        **stack_config,
        **stack.per_test_config(),
        "ENV": "testing",
        "DATA_DIR": str(root / "data"),
        "TRUSTED_PROXY_HOPS": 1,
        "LOG_LEVEL": "INFO",  # the access log shows which requests gunicorn served
    }
    env = {f"CTXCLOUD_{name}": str(value) for name, value in config.items()}
    for args in (("db", "upgrade"), ("tenants", "create", "shielded", "--json")):
        result = cli(env, *args)
        assert result.returncode == 0, result.stderr
    result = cli(
        env, "api-keys", "create", "--tenant", "shielded", "--name", "proxy", "--scopes", SCOPES,
        "--json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    headers = {"Authorization": f"Bearer {json.loads(result.stdout)['key']}"}
    with gunicorn(env, root / "logs", workers=2, threads=4) as server:
        created = requests.post(
            f"{server.url}/api/v1/projects",
            json={"name": "Shield", "slug": PROJECT},
            headers=headers,
            timeout=10,
        )
        assert created.status_code == 201, created.text
        yield server, headers


@pytest.fixture(scope="module")
def chart_stack(service) -> Iterator[Stack]:
    """The chart's nginx.conf in front of the service."""
    server, headers = service
    upstream = server.url.removeprefix("http://")
    with proxyconf.serving(proxyconf.render_chart(), upstream) as proxy:
        yield Stack(server, proxy, headers)


@pytest.fixture(scope="module")
def rendered() -> str:
    return proxyconf.render_chart()


def setting(conf: str, directive: str) -> str:
    (value,) = re.findall(rf"^\s*{re.escape(directive)} ([^;]+);", conf, re.M)
    return value


# ---- raw HTTP -----------------------------------------------------------------------------


def connect(port: int, source: str = "127.0.0.1", timeout: float = 10) -> socket.socket:
    """A TCP connection to the proxy from `source` (any 127.x address is this machine's)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", port))
    return sock


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def problem(self) -> dict:
        assert self.headers.get("content-type") == "application/problem+json", self
        return json.loads(self.body)


def read_answer(sock: socket.socket, method: str = "GET") -> Answer:
    response = http.client.HTTPResponse(sock, method=method)
    response.begin()
    body = response.read()
    headers = {name.lower(): value for name, value in response.getheaders()}
    return Answer(response.status, headers, body)


def exchange(port: int, head: bytes, source: str = "127.0.0.1", method: str = "GET") -> Answer:
    with closing(connect(port, source)) as sock:
        sock.sendall(head)
        return read_answer(sock, method)


def assert_problem(answer: Answer, status: int, code: str) -> dict:
    """nginx's own answer, in the service's problem+json shape."""
    assert answer.status == status, answer
    body = answer.problem()
    assert set(body) == PROBLEM_KEYS, body
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"] == f"urn:ctxcloud:problem:{code}"
    assert body["title"] == HTTPStatus(status).phrase
    assert body["detail"]
    assert body["request_id"] == answer.headers["x-request-id"]
    assert answer.headers["cache-control"] == "no-store"
    assert "<html" not in answer.body.decode().lower()
    return body


# ---- what an attack must not break ------------------------------------------------------


def still_answers(target: Stack) -> None:
    """Health and an authenticated manifest, through the proxy, within a second each."""
    live = requests.get(f"{target.proxy.url}/api/v1/health/live", timeout=1)
    assert live.status_code == 200, live.text
    manifest = requests.get(target.manifest_url(), headers=target.headers, timeout=1)
    assert manifest.status_code == 200, manifest.text
    assert manifest.json()["entries"] is not None


def gunicorn_connections(target: Stack) -> int:
    """Established connections to gunicorn's port, counted in its own processes."""
    master = psutil.Process(target.server.process.pid)
    count = 0
    for process in [master, *master.children()]:
        for conn in process.net_connections(kind="tcp"):
            if conn.laddr and conn.laddr.port == target.gunicorn_port:
                count += conn.status == psutil.CONN_ESTABLISHED
    return count


def upstream_connection_bound(conf: str) -> int:
    """The most connections nginx opens to gunicorn while only the probes use it: its kept
    idle connections per worker, plus the two probes in flight."""
    workers = int(setting(conf, "worker_processes"))
    return workers * int(setting(conf, "keepalive")) + 2


def hold(target: Stack, conf: str, trickle: Callable[[], None], rounds: int = 3) -> None:
    """While an attack holds: the service answers, and gunicorn has no attacker's connection."""
    for _ in range(rounds):
        still_answers(target)
        assert gunicorn_connections(target) <= upstream_connection_bound(conf)
        trickle()


def sources(count: int, first: int) -> list[str]:
    """`count` loopback source addresses from 127.0.0.<first>, so that no single attacking
    address reaches the per-address limit (which is tested on its own)."""
    return [f"127.0.0.{first + i}" for i in range(count)]


@contextmanager
def sockets() -> Iterator[list[socket.socket]]:
    held: list[socket.socket] = []
    try:
        yield held
    finally:
        for sock in held:
            sock.close()


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 20) -> None:
    """Poll a condition (a bound, not a delay)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout}s")


def continued(sock: socket.socket) -> None:
    """nginx read the head and started on the body: it sent 100 Continue."""
    data = b""
    while b"\r\n\r\n" not in data:
        piece = sock.recv(4096)
        assert piece, "the proxy closed the connection"
        data += piece
    assert data.startswith(b"HTTP/1.1 100 Continue\r\n"), data


# ---- the attacks ------------------------------------------------------------------------


def test_slow_bodies_are_held_by_the_proxy_and_never_reach_gunicorn(chart_stack, rendered):
    port, limit = chart_stack.proxy.port, int(setting(rendered, "limit_conn ctxcloud_per_address"))
    addresses = sources(10, first=10)
    assert 200 / len(addresses) < limit
    marker = f"slow-{secrets.token_hex(4)}"
    with sockets() as held:
        for i in range(200):
            if i % 4 == 3:  # a JSON route as well as entry uploads
                line = f"POST /api/v1/projects/{PROJECT}/context/commits"
                length, kind = 1_000_000, "application/json"
            else:
                line = f"PUT /api/v1/projects/{PROJECT}/context/entries/{marker}/{i}.bin"
                length, kind = 10_000_000, "application/octet-stream"
            sock = connect(port, addresses[i % len(addresses)])
            sock.sendall(
                f"{line} HTTP/1.1\r\nHost: ctxcloud.test\r\n{auth_line(chart_stack)}"
                f"X-Request-ID: {marker}-{i}\r\nContent-Type: {kind}\r\n"
                f"Content-Length: {length}\r\nExpect: 100-continue\r\n\r\n".encode()
            )
            held.append(sock)
        for sock in held:
            continued(sock)  # each is a request whose body nginx is now reading
            sock.sendall(b"\x00" * 16)
        hold(chart_stack, rendered, trickle(held, b"\x00"))

    # Once they went away nginx logs each one: none was ever sent to gunicorn.
    def logged() -> list[dict]:
        entries = chart_stack.proxy.access_entries()
        return [e for e in entries if e["request_id"].startswith(marker)]

    wait_for(lambda: len(logged()) == 200, "nginx logging the 200 abandoned bodies")
    assert all(entry["upstream_status"] == "" for entry in logged()), logged()
    assert all(e["path"].startswith(f"/api/v1/projects/{PROJECT}/context/") for e in logged())
    assert marker not in chart_stack.server.log()


def trickle(held: list[socket.socket], data: bytes) -> Callable[[], None]:
    """Send a little more on each held connection. One the proxy has cut off (its timeouts
    at work) stays cut off: the attacker's loss, not the test's."""

    def send() -> None:
        for sock in held:
            with suppress(OSError):
                sock.sendall(data)

    return send


def auth_line(target: Stack) -> str:
    return f"Authorization: {target.headers['Authorization']}\r\n"


def test_slow_request_heads_never_reach_gunicorn(chart_stack, rendered):
    port = chart_stack.proxy.port
    addresses = sources(10, first=30)
    with sockets() as held:
        for i in range(200):
            sock = connect(port, addresses[i % len(addresses)])
            if i % 2:
                sock.sendall(b"GET /api/v1/health/li")  # part of a request line
            else:
                sock.sendall(b"GET /api/v1/health/live HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            held.append(sock)

        hold(chart_stack, rendered, trickle(held, b"a"))


def test_a_thousand_idle_connections_cost_nothing(chart_stack, rendered):
    port = chart_stack.proxy.port
    addresses = sources(10, first=50)
    with sockets() as held:
        for i in range(1000):
            held.append(connect(port, addresses[i % len(addresses)]))
        hold(chart_stack, rendered, lambda: None)


def test_too_many_requests_in_progress_from_one_address_get_429(chart_stack, rendered):
    port, limit = chart_stack.proxy.port, int(setting(rendered, "limit_conn ctxcloud_per_address"))
    crowded, path = "127.0.0.200", f"/api/v1/projects/{PROJECT}/context/entries/crowd.bin"
    with sockets() as held:
        for _ in range(limit):
            sock = connect(port, crowded)
            sock.sendall(
                f"PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n"
                "Expect: 100-continue\r\n\r\n".encode()
            )
            held.append(sock)
        for sock in held:
            continued(sock)
        answer = exchange(port, b"GET /api/v1/health/live HTTP/1.1\r\nHost: x\r\n\r\n", crowded)
        assert_problem(answer, 429, "too_many_connections")
        assert answer.headers["retry-after"] == "1"
        still_answers(chart_stack)  # other addresses are not affected

    def recovered() -> bool:
        head = b"GET /api/v1/health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        return exchange(port, head, crowded).status == 200

    wait_for(recovered, "the address getting through again once its requests ended")


# ---- nginx's own answers are problem+json -------------------------------------------------


def test_a_json_body_over_the_json_limit_is_refused_before_it_is_sent(chart_stack):
    head = (
        f"POST /api/v1/projects HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {JSON_LIMIT + 1}\r\nX-Request-ID: too-big.1\r\n\r\n"
    ).encode()
    body = assert_problem(exchange(chart_stack.proxy.port, head, method="POST"), 413,
                          "payload_too_large")  # fmt: skip
    assert body["request_id"] == "too-big.1"  # the client's sane request id


def test_an_entry_over_the_entry_limit_is_refused_before_it_is_sent(chart_stack):
    path = f"/api/v1/projects/{PROJECT}/context/entries/huge.bin"
    head = f"PUT {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {ENTRY_LIMIT + 1}\r\n\r\n"
    assert_problem(exchange(chart_stack.proxy.port, head.encode(), method="PUT"), 413,
                   "payload_too_large")  # fmt: skip


@pytest.mark.parametrize("length", [10_000, 4065], ids=["10KB", "over-gunicorn-line-limit"])
def test_a_long_uri_is_refused_with_414(chart_stack, length):
    uri = "/api/v1/" + "a" * (length - len("/api/v1/"))
    head = f"GET {uri} HTTP/1.1\r\nHost: x\r\nX-Request-ID: bad id\r\n\r\n".encode()
    body = assert_problem(exchange(chart_stack.proxy.port, head), 414, "uri_too_long")
    assert GENERATED_ID.match(body["request_id"])  # an insane client id is replaced


def test_the_longest_uri_the_proxy_passes_is_one_gunicorn_accepts(chart_stack):
    """4064 bytes: the service itself answers (its 404), not gunicorn's line limit."""
    uri = "/api/v1/" + "a" * (4064 - len("/api/v1/"))
    head = f"GET {uri} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()
    answer = exchange(chart_stack.proxy.port, head)
    assert answer.status == 404
    assert answer.problem()["code"] == "not_found"


def test_a_100kb_header_is_refused_with_431(chart_stack):
    head = b"GET /api/v1/health/live HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n"
    assert_problem(exchange(chart_stack.proxy.port, head), 431, "request_header_fields_too_large")


def test_a_header_gunicorn_accepts_passes(chart_stack):
    head = b"GET /api/v1/health/live HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 7900 + b"\r\n"
    answer = exchange(chart_stack.proxy.port, head + b"Connection: close\r\n\r\n")
    assert answer.status == 200


@pytest.mark.parametrize(
    "line",
    [b"GARBAGE", b"GET /api/v1/health HTTP/1.1 extra", b"G<T /api/v1/health HTTP/1.1"],
    ids=["no-spaces", "extra-field", "bad-method"],
)
def test_a_malformed_request_line_is_refused_with_400(chart_stack, line):
    assert_problem(exchange(chart_stack.proxy.port, line + b"\r\nHost: x\r\n\r\n"), 400,
                   "bad_request")  # fmt: skip


def test_the_error_pages_cannot_be_requested_directly(chart_stack):
    head = b"GET /.ctxcloud-proxy/errors/502 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    assert_problem(exchange(chart_stack.proxy.port, head), 404, "not_found")


def test_gunicorn_unreachable_is_a_502_problem():
    with proxyconf.serving(proxyconf.render_chart(), f"127.0.0.1:{free_port()}") as proxy:
        answer = exchange(proxy.port, b"GET /api/v1/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
    assert_problem(answer, 502, "bad_gateway")


# Every error page nginx may serve, and the code the service's clients will see.
ERROR_PAGES = {
    400: "bad_request",
    404: "not_found",
    408: "request_timeout",
    411: "length_required",
    413: "payload_too_large",
    414: "uri_too_long",
    429: "too_many_connections",
    431: "request_header_fields_too_large",
    500: "internal_error",
    501: "not_implemented",
    502: "bad_gateway",
    503: "unavailable",
    504: "unavailable",
    505: "http_version_not_supported",
}


def test_every_error_page_is_a_problem_in_the_services_shape(rendered):
    pages = dict(re.findall(r"^\s*error_page (\d+) (?:=\d+ )?(\S+);", rendered, re.M))
    # nginx's own "request header too large" (494) is answered as 431.
    pages["431"] = pages.pop("494")
    assert {int(status) for status in pages} == set(ERROR_PAGES)
    parent = rendered[rendered.index("location /.ctxcloud-proxy/errors/ {") :]
    for directive in ("internal;", "default_type application/problem+json;"):
        assert directive in parent[: parent.index("location =")]
    blocks = dict(
        re.findall(r"location = (/\.ctxcloud-proxy/errors/\d+) \{(.*?)\n\s*\}", parent, re.S)
    )
    for status, code in ERROR_PAGES.items():
        block = blocks[pages[str(status)]]
        assert "X-Request-ID" not in block or "Cache-Control no-store" in block
        (returned, text) = re.findall(r"return (\d+) '(.*)';", block)[0]
        assert int(returned) == status
        body = json.loads(text.replace("$ctxcloud_request_id", "id").replace("\\n", ""))
        assert set(body) == PROBLEM_KEYS
        assert (body["status"], body["code"]) == (status, code)
        assert body["type"] == f"urn:ctxcloud:problem:{code}"
        assert body["title"] == HTTPStatus(status).phrase
        assert body["request_id"] == "id"


# ---- bodies that are meant to pass ----------------------------------------------------------


def test_an_entry_larger_than_the_json_limit_is_stored_whole(chart_stack):
    data = os.urandom(20_000_000)
    url = f"{chart_stack.proxy.url}/api/v1/projects/{PROJECT}/context/entries/big/blob.bin"
    put = requests.put(url, data=data, headers=chart_stack.headers, timeout=120)
    assert put.status_code == 201, put.text
    assert put.json()["sha256"] == hashlib.sha256(data).hexdigest()
    got = requests.get(url, headers=chart_stack.headers, timeout=120)
    assert got.status_code == 200
    assert got.content == data


def test_a_chunked_upload_reaches_the_service_whole(chart_stack):
    pieces = [os.urandom(256 * 1024) for _ in range(12)]
    url = f"{chart_stack.proxy.url}/api/v1/projects/{PROJECT}/context/entries/chunked.bin"
    put = requests.put(url, data=iter(pieces), headers=chart_stack.headers, timeout=60)
    assert put.status_code == 201, put.text
    got = requests.get(url, headers=chart_stack.headers, timeout=60)
    assert got.content == b"".join(pieces)


# ---- what gunicorn is told --------------------------------------------------------------


class _Recorder(BaseHTTPRequestHandler):
    """Records each request's head and body as the upstream received them."""

    protocol_version = "HTTP/1.1"
    received: list[tuple[str, list[tuple[str, str]], bytes]] = []

    def _record(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.received.append((self.path, list(self.headers.items()), body))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    do_GET = do_PUT = do_POST = _record

    def log_message(self, *args) -> None:  # quiet
        pass


@contextmanager
def recording_upstream() -> Iterator[tuple[int, list]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    server.daemon_threads = True
    _Recorder.received = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], _Recorder.received
    finally:
        server.shutdown()
        server.server_close()


def test_forwarded_headers_give_the_service_the_real_client():
    """What a client claims in X-Forwarded-* is never what the service (one trusted hop, as
    ProxyFix applies it) believes; Host and a sane X-Request-ID pass through; headers with
    underscores and foreign scheme headers are dropped; a chunked body arrives with a length."""
    with recording_upstream() as (upstream, received):
        with proxyconf.serving(proxyconf.render_chart(), f"127.0.0.1:{upstream}") as proxy:
            head = (
                "PUT /api/v1/projects/p/context/entries/a.txt HTTP/1.1\r\n"
                "Host: ctx.example.test:8443\r\n"
                "X-Forwarded-For: 203.0.113.7\r\n"
                "X-Forwarded-Proto: https\r\n"
                "X-Forwarded-Host: evil.example\r\n"
                "X-Forwarded-Ssl: on\r\n"
                "X-Request-ID: trace.42\r\n"
                "SCRIPT_NAME: /evil\r\n"
                "Transfer-Encoding: chunked\r\n\r\n"
                "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
            )
            answer = exchange(proxy.port, head.encode(), method="PUT")
    assert answer.status == 200
    ((path, headers, body),) = received
    names = {name.lower(): value for name, value in headers}
    assert path == "/api/v1/projects/p/context/entries/a.txt"
    assert body == b"hello world"
    assert names["content-length"] == "11" and "transfer-encoding" not in names
    assert names["x-request-id"] == "trace.42"
    assert "script_name" not in names and "x-forwarded-ssl" not in names

    environ = {
        "REQUEST_METHOD": "PUT",
        "PATH_INFO": path,
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.url_scheme": "http",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": str(upstream),
        **{"HTTP_" + name.upper().replace("-", "_"): value for name, value in headers},
    }
    seen: dict[str, str] = {}

    def app(env, start_response):
        request = Request(env)
        seen.update(remote=request.remote_addr, scheme=request.scheme, host=request.host)
        start_response("204 No Content", [])
        return []

    ProxyFix(app, x_for=1, x_proto=1, x_host=1)(environ, lambda *a: None)
    assert seen == {"remote": "127.0.0.1", "scheme": "http", "host": "ctx.example.test:8443"}


# ---- the compose rendering ---------------------------------------------------------------


def test_compose_renders_the_same_configuration_as_the_chart(rendered):
    compose = proxyconf.render_compose()
    chart_lines, compose_lines = rendered.splitlines(), compose.splitlines()
    assert len(chart_lines) == len(compose_lines)
    differ = [(a, b) for a, b in zip(chart_lines, compose_lines, strict=True) if a != b]
    assert differ == [("        server 127.0.0.1:8000;", "        server app:8000;")]
    assert "${" not in compose


def test_the_compose_rendering_serves_too(service):
    server, headers = service
    upstream = server.url.removeprefix("http://")
    with proxyconf.serving(proxyconf.render_compose(), upstream) as proxy:
        manifest = requests.get(
            f"{proxy.url}/api/v1/projects/{PROJECT}/context", headers=headers, timeout=5
        )
        assert manifest.status_code == 200
        head = f"POST /api/v1/projects HTTP/1.1\r\nHost: x\r\nContent-Length: {JSON_LIMIT + 1}"
        answer = exchange(proxy.port, (head + "\r\n\r\n").encode(), method="POST")
    assert_problem(answer, 413, "payload_too_large")


def test_the_test_copy_keeps_every_protective_directive(rendered, tmp_path):
    for pattern in proxyconf.PROTECTIVE:
        stripped = re.sub(pattern, "# removed", rendered, flags=re.M)
        with pytest.raises(AssertionError, match="lacks"):
            proxyconf.for_test(stripped, port=1, upstream="127.0.0.1:2", workdir=tmp_path)


def test_limits_stay_consistent_with_the_service(rendered):
    """The JSON limit is the service's MAX_JSON_BYTES, the entry limit its MAX_ENTRY_BYTES."""
    from ctxcloud.config import default
    from ctxcloud.plugins.context import config_defaults

    # The server-wide limit (JSON routes), the entry routes' one, and none on error pages.
    limits = re.findall(r"^\s*client_max_body_size (\w+);", rendered, re.M)
    assert limits == ["16m", "5g", "0"]
    assert 16 * 1024 * 1024 == default.MAX_JSON_BYTES == JSON_LIMIT
    entry_limit = limits[1].removesuffix("g")
    assert int(entry_limit) * 1024**3 == config_defaults()["MAX_ENTRY_BYTES"] == ENTRY_LIMIT
    # nginx drops an idle upstream connection before gunicorn does (GUNICORN_KEEPALIVE: 5).
    upstream = rendered[rendered.index("upstream ctxcloud_app {") :]
    upstream = upstream[: upstream.index("}")]
    (idle,) = re.findall(r"keepalive_timeout (\d+)s;", upstream)
    assert int(idle) < 5
