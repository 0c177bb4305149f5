"""Slow and idle clients against gunicorn alone (no proxy): they hold no thread for long, a
slow body is cut with a 408 problem and stores nothing, and gunicorn's own errors are
problem+json. The limits are set small here so that every cut happens within seconds; the
client-side timeouts are failure bounds, not measurements."""

from __future__ import annotations

import json
import select
import socket
import time
from contextlib import ExitStack, closing

import pytest
import requests

from tests.integration.served import Served, served

pytestmark = [pytest.mark.server, pytest.mark.integration]

LIMITS = {
    "GUNICORN_HEADER_TIMEOUT": "1",
    "GUNICORN_BODY_GRACE": "1",
    "GUNICORN_BODY_MIN_RATE": "1000",
    "GUNICORN_SEND_TIMEOUT": "1",
}
BIG_ENTRY = 16 * 1024 * 1024


@pytest.fixture(scope="module")
def service(tmp_path_factory) -> Served:
    with served(tmp_path_factory.mktemp("slow"), workers=2, threads=2, env=LIMITS) as service:
        response = requests.post(
            f"{service.url}/api/v1/projects",
            json={"name": "Slow", "slug": "slow"},
            headers=service.headers,
            timeout=10,
        )
        assert response.status_code == 201, response.text
        big = requests.put(
            f"{service.url}/api/v1/projects/slow/context/entries/big.bin",
            data=b"\x00" * BIG_ENTRY,
            headers=service.headers,
            timeout=60,
        )
        assert big.status_code == 201, big.text
        yield service


def address(service: Served) -> tuple[str, int]:
    host, port = service.url.removeprefix("http://").split(":")
    return host, int(port)


def connect(service: Served, **options) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if "rcvbuf" in options:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, options["rcvbuf"])
    sock.connect(address(service))
    return sock


def still_answers(service: Served) -> None:
    """Health and an authenticated manifest both answer within a second."""
    live = requests.get(f"{service.url}/api/v1/health/live", timeout=1)
    assert live.status_code == 200
    manifest = requests.get(
        f"{service.url}/api/v1/projects/slow/context", headers=service.headers, timeout=1
    )
    assert manifest.status_code == 200


def read_answer(sock: socket.socket, timeout: float = 15) -> tuple[int, dict[str, str], bytes]:
    """Read one response until the server closes: status, headers (lower-case), body."""
    sock.settimeout(timeout)
    data = b""
    while True:
        piece = sock.recv(65536)
        if not piece:
            break
        data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers, body


def assert_problem(status: int, headers: dict, body: bytes, expected: int, code: str) -> None:
    assert status == expected, body
    assert headers["content-type"] == "application/problem+json"
    problem = json.loads(body)
    assert (problem["status"], problem["code"]) == (expected, code)
    assert problem["request_id"] and problem["detail"]


def put_head(length: int, path: str = "slow.md") -> bytes:
    return (
        f"PUT /api/v1/projects/slow/context/entries/{path} HTTP/1.1\r\nHost: x\r\n"
        f"Content-Type: text/markdown\r\nContent-Length: {length}\r\n"
    ).encode()


def test_a_body_that_stops_is_cut_with_408_and_nothing_is_stored(service):
    with closing(connect(service)) as sock:
        sock.sendall(put_head(1_000_000) + service_auth(service) + b"\r\n" + b"# half a note")
        status, headers, body = read_answer(sock)
    assert_problem(status, headers, body, 408, "request_timeout")
    assert headers["connection"] == "close"
    missing = requests.get(
        f"{service.url}/api/v1/projects/slow/context/entries/slow.md",
        headers=service.headers,
        timeout=5,
    )
    assert missing.status_code == 404
    assert service.temp_files() == []


def test_a_body_below_the_minimum_rate_is_cut(service):
    """A trickle (here 20 bytes a second against a 1000 B/s minimum) never completes."""
    with closing(connect(service)) as sock:
        sock.sendall(put_head(100_000, "trickle.md") + service_auth(service) + b"\r\n")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            sock.sendall(b"x")
            readable, _, _ = select.select([sock], [], [], 0.05)
            if readable:
                break
        status, headers, body = read_answer(sock)
    assert_problem(status, headers, body, 408, "request_timeout")
    assert service.temp_files() == []


def test_a_body_at_a_fair_rate_is_stored_however_long_it_takes(service):
    """Above the minimum rate, a body may take longer than the grace period: 200 KB in
    pieces of 10 KB, 0.1 s apart (100 KB/s), takes about twice the 1 s grace."""
    pieces = [bytes([65 + n]) * 10_000 for n in range(20)]

    def paced():
        for piece in pieces:
            yield piece
            time.sleep(0.1)

    response = requests.put(
        f"{service.url}/api/v1/projects/slow/context/entries/paced.txt",
        data=paced(),
        headers={**service.headers, "Content-Type": "text/plain"},
        timeout=30,
    )
    assert response.status_code == 201, response.text
    stored = requests.get(
        f"{service.url}/api/v1/projects/slow/context/entries/paced.txt",
        headers=service.headers,
        timeout=10,
    )
    assert stored.content == b"".join(pieces)


def test_slow_headers_and_idle_connections_hold_no_thread(service):
    """Far more slow-header and idle clients than the 4 threads: the service still answers,
    and every slow head is answered 408 (problem+json) once past the header deadline."""
    with ExitStack() as stack:
        slow = [stack.enter_context(closing(connect(service))) for _ in range(40)]
        for sock in slow:
            sock.sendall(b"GET /api/v1/health/live HTTP/1.1\r\nHost: x\r\n")
        idle = [stack.enter_context(closing(connect(service))) for _ in range(300)]
        for _ in range(3):
            still_answers(service)
        for sock in slow[:5]:
            assert_problem(*read_answer(sock), 408, "request_timeout")
        for sock in idle[:5]:  # silent ones are closed, with no answer
            sock.settimeout(15)
            assert sock.recv(1) == b""


def test_a_partial_pipelined_request_waits_without_a_thread(service):
    with closing(connect(service)) as sock:
        sock.sendall(
            b"GET /api/v1/health/live HTTP/1.1\r\nHost: x\r\n\r\n"
            b"GET /api/v1/health/live HTTP/1.1\r\nHo"
        )
        sock.settimeout(15)
        first = b""
        while b'"status"' not in first:
            first += sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200")
        still_answers(service)
        status, headers, body = read_answer(sock)
    assert_problem(status, headers, body, 408, "request_timeout")


def test_a_client_that_stops_reading_frees_its_thread(service):
    """Four downloads of a 16 MiB entry that are never read hold all four threads until the
    send timeout; then the service answers again and those connections are cut short."""
    request = (
        b"GET /api/v1/projects/slow/context/entries/big.bin HTTP/1.1\r\nHost: x\r\n"
        + service_auth(service)
        + b"\r\n"
    )
    with ExitStack() as stack:
        stuck = [stack.enter_context(closing(connect(service, rcvbuf=4096))) for _ in range(4)]
        for sock in stuck:
            sock.sendall(request)
        for sock in stuck:  # every download has a thread writing to it
            sock.settimeout(15)
            assert sock.recv(16, socket.MSG_PEEK).startswith(b"HTTP/1.1 200")
        deadline = time.monotonic() + 30
        while service.server.log().count("client stopped reading the response") < len(stuck):
            assert time.monotonic() < deadline, "the stalled downloads never let go"
            time.sleep(0.05)
        still_answers(service)
        for sock in stuck:
            sock.settimeout(15)
            received = 0
            while piece := sock.recv(1 << 20):
                received += len(piece)
            assert received < BIG_ENTRY


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414, "uri_too_long"),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n",
            431,
            "request_header_fields_too_large",
        ),
        (
            b"GET / HTTP/1.1\r\nHost: x\r\n"
            + b"".join(b"X-H%d: 1\r\n" % n for n in range(120))
            + b"\r\n",
            431,
            "request_header_fields_too_large",
        ),
        (b"GARBAGE\r\n\r\n", 400, "bad_request"),
        (b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n", 400, "bad_request"),
    ],
    ids=["long-url", "big-header", "many-headers", "bad-request-line", "bad-header-name"],
)
def test_gunicorn_errors_are_problem_json(service, raw, status, code):
    with closing(connect(service)) as sock:
        sock.sendall(raw)
        assert_problem(*read_answer(sock), status, code)


def service_auth(service: Served) -> bytes:
    return f"Authorization: {service.headers['Authorization']}\r\n".encode()
