"""Concurrent writers against gunicorn (2 workers x 4 threads, shared SQLite file + local objects):
revisions are distinct and gap-free, conditional writes have one winner, and a client that
goes away mid-upload leaves nothing behind."""

from __future__ import annotations

import base64
import json
import re
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest
import requests

from ctxcloud.crypto import HEADER_SIZE, SEGMENT_SIZE, TAG_SIZE
from ctxcloud.objects import RESPONSE_CHUNK
from tests.integration.served import Served, served
from tests.support.context import context_url, entry_url, project_url, sha256

pytestmark = pytest.mark.server

THREADS = 16
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    with served(tmp_path_factory.mktemp("concurrency"), workers=2, threads=4) as running:
        yield running


@pytest.fixture
def project(server: Served, request) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower())[:60].strip("-")
    response = requests.post(
        f"{server.url}/api/v1/projects", json={"name": slug, "slug": slug}, headers=server.headers
    )
    assert response.status_code == 201, response.text
    return slug


def run_together(count: int, work) -> list:
    """Run work(i) in `count` threads released at the same moment; results in order."""
    barrier = threading.Barrier(count)

    def task(i: int):
        barrier.wait()
        return work(i)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(task, range(count)))


def head_revision(server: Served, slug: str) -> int:
    return requests.get(server.url + project_url(slug), headers=server.headers).json()["revision"]


def test_concurrent_writers_get_distinct_gap_free_revisions(server, project):
    writes_per_thread = 8

    def writer(i: int) -> list[int]:
        session = requests.Session()
        session.headers.update(server.headers)
        revisions = []
        for n in range(writes_per_thread):
            if n % 4 == 3:  # a commit touching a shared and an own path
                response = session.post(
                    server.url + context_url(project) + "/commits",
                    json={
                        "message": f"{i}/{n}",
                        "put": [
                            {"path": "shared/commit.txt", "content": f"{i}/{n}"},
                            {
                                "path": f"own/{i}/c{n}",
                                "content_base64": base64.b64encode(b"\0").decode(),
                            },
                        ],
                    },
                )
                assert response.status_code == 201, response.text
            else:
                path = "shared/put.txt" if n % 2 else f"own/{i}/p{n}"
                response = session.put(
                    server.url + entry_url(project, path), data=f"{i}/{n}".encode()
                )
                assert response.status_code in (200, 201), response.text
            revisions.append(response.json()["revision"])
        return revisions

    revisions = [r for per_thread in run_together(THREADS, writer) for r in per_thread]
    total = THREADS * writes_per_thread
    assert sorted(revisions) == list(range(1, total + 1))
    assert head_revision(server, project) == total

    listed = requests.get(
        server.url + context_url(project) + "/revisions?page_size=1000", headers=server.headers
    )
    assert [r["revision"] for r in listed.json()] == list(range(total, 0, -1))
    # Each thread's own paths are all there, and the shared ones hold the last writer's bytes.
    manifest = requests.get(server.url + context_url(project), headers=server.headers).json()
    assert manifest["revision"] == total
    paths = {e["path"]: e for e in manifest["entries"]}
    assert len([p for p in paths if p.startswith("own/")]) == THREADS * 6
    last_put = max(
        (r for r in listed.json() if {"path": "shared/put.txt", "action": "put"} in r["changes"]),
        key=lambda r: r["revision"],
    )
    assert paths["shared/put.txt"]["revision"] == last_put["revision"]


def test_exactly_one_if_match_racer_wins(server, project):
    first = requests.put(
        server.url + entry_url(project, "contested"), data=b"original", headers=server.headers
    )
    etag = first.headers["ETag"]

    def racer(i: int) -> requests.Response:
        return requests.put(
            server.url + entry_url(project, "contested"),
            data=f"writer {i}".encode(),
            headers={**server.headers, "If-Match": etag},
        )

    responses = run_together(THREADS, racer)
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [412] * (THREADS - 1)
    winner = next(i for i, r in enumerate(responses) if r.status_code == 200)
    for loser in (r for r in responses if r.status_code == 412):
        assert loser.json()["code"] == "precondition_failed"
    current = requests.get(server.url + entry_url(project, "contested"), headers=server.headers)
    assert current.content == f"writer {winner}".encode()
    assert current.headers["ETag"] == responses[winner].headers["ETag"]
    assert head_revision(server, project) == 2


def test_exactly_one_create_only_racer_wins(server, project):
    def racer(i: int) -> requests.Response:
        return requests.put(
            server.url + entry_url(project, "fresh"),
            data=f"creator {i}".encode(),
            headers={**server.headers, "If-None-Match": "*"},
        )

    responses = run_together(THREADS, racer)
    assert sorted(r.status_code for r in responses) == [201] + [412] * (THREADS - 1)
    assert head_revision(server, project) == 1


def raw_request(server: Served, head: str) -> socket.socket:
    parts = urlsplit(server.url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
    sock.sendall(head.encode("latin-1"))
    return sock


def headers_block(server: Served, method: str, path: str, request_id: str, **extra: str) -> str:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {urlsplit(server.url).netloc}"]
    lines += [f"{name}: {value}" for name, value in server.headers.items()]
    lines += [f"X-Request-ID: {request_id}", "Content-Type: application/octet-stream"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in extra.items()]
    return "\r\n".join(lines) + "\r\n\r\n"


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_client_disconnecting_mid_upload_leaves_nothing(server, project, framing):
    requests.put(server.url + entry_url(project, "kept"), data=b"k", headers=server.headers)
    objects_before = server.object_files()
    revision_before = head_revision(server, project)
    request_id = f"disconnect-{framing}"
    block = b"\xab" * MiB

    if framing == "content-length":
        sock = raw_request(
            server,
            headers_block(
                server, "PUT", entry_url(project, "big"), request_id, Content_Length=str(10 * MiB)
            ),
        )
        sock.sendall(block)
    else:
        sock = raw_request(
            server,
            headers_block(
                server, "PUT", entry_url(project, "big"), request_id, Transfer_Encoding="chunked"
            ),
        )
        sock.sendall(f"{len(block):x}\r\n".encode() + block + b"\r\n")
        sock.sendall(f"{len(block):x}\r\n".encode() + block[: len(block) // 2])  # cut mid-chunk
    sock.close()

    # The server logs the request once it has given up on it (and cleaned up).
    log = server.wait_for_log(f'"request_id": "{request_id}"')
    line = next(
        json.loads(entry)
        for entry in log.splitlines()
        if f'"request_id": "{request_id}"' in entry and '"ctxcloud.access"' in entry
    )
    assert line["status"] == 400
    # A client going away is the client's doing: no unhandled server error about it.
    assert not [
        entry
        for entry in log.splitlines()
        if request_id in entry and '"unhandled exception"' in entry
    ]
    assert (
        requests.get(server.url + entry_url(project, "big"), headers=server.headers).status_code
        == 404
    )
    assert head_revision(server, project) == revision_before
    assert server.object_files() == objects_before
    assert server.temp_files() == []


def test_tampering_found_mid_download_aborts_the_connection(server, project):
    # Bigger than the first piece a response sends (checked before the headers go out).
    data = bytes(range(256)) * ((RESPONSE_CHUNK + 3 * SEGMENT_SIZE) // 256) + b"tail"
    put = requests.put(server.url + entry_url(project, "big"), data=data, headers=server.headers)
    assert put.status_code == 201
    ((key,),) = server.query(
        "SELECT object_key FROM context_entry_version WHERE path = ? AND object_key IS NOT NULL"
        " ORDER BY id DESC LIMIT 1",
        "big",
    )
    stored = server.objects_dir / key
    ciphertext = bytearray(stored.read_bytes())
    later = RESPONSE_CHUNK // SEGMENT_SIZE + 1  # a segment beyond the first piece
    ciphertext[HEADER_SIZE + later * (SEGMENT_SIZE + TAG_SIZE) + 3] ^= 1
    stored.write_bytes(bytes(ciphertext))

    response = requests.get(
        server.url + entry_url(project, "big"),
        headers={**server.headers, "X-Request-ID": "tampered-download"},
        stream=True,
    )
    assert response.status_code == 200
    assert response.headers["Content-Length"] == str(len(data))
    received = b""
    with pytest.raises(requests.exceptions.RequestException):
        for chunk in response.iter_content(64 * 1024):
            received += chunk
    assert len(received) < len(data) and data.startswith(received)
    log = server.wait_for_log("integrity_error")
    assert "tampered-download" in log
    assert sha256(received) != sha256(data)
