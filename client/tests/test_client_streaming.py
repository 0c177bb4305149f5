"""Bodies stream both ways: a file is sent in chunks, never read whole; a download lands whole
or not at all."""

from __future__ import annotations

import hashlib
import io

import httpx
import pytest

import ctxcloud_client as cc
from ctxcloud_client.body import CHUNK_SIZE

URL = "/projects/p/context/entries/big.bin"
SIZE = 5 * CHUNK_SIZE + 123


def entry_json(data: bytes) -> dict:
    return {
        "path": "big.bin",
        "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "content_type": "application/octet-stream",
        "revision": 1,
    }


class WatchedFile(io.BytesIO):
    """A binary file that records every read's size."""

    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.reads: list[int | None] = []

    def read(self, size: int | None = -1) -> bytes:
        self.reads.append(size)
        return super().read(size)


def test_a_file_is_sent_in_chunks_with_its_length(api, client):
    data = bytes(range(256)) * (SIZE // 256) + b"x" * (SIZE % 256)

    def server(request: httpx.Request) -> httpx.Response:
        body = b"".join(request.stream)
        assert body == data
        return httpx.Response(201, json=entry_json(body))

    api.put(URL).mock(side_effect=server)
    file = WatchedFile(data)
    digest = hashlib.sha256(data).hexdigest()
    written = client.put_entry("p", "big.bin", file, sha256=digest)
    assert written.created and written.size == SIZE
    # Never read whole: every read asked for one chunk at most (the mock transport joins
    # what it is sent; a real connection gets each chunk as it is read).
    assert len(file.reads) > SIZE // CHUNK_SIZE
    assert all(size is not None and 0 < size <= CHUNK_SIZE for size in file.reads)
    request = api.calls.last.request
    assert request.headers["Content-Length"] == str(SIZE)
    assert request.headers["Content-SHA256"] == digest


def test_a_real_file_on_disk_is_sent_as_it_is(api, client, tmp_path):
    data = b"z" * (3 * CHUNK_SIZE)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    route = api.put(URL).respond(200, json=entry_json(data))
    with path.open("rb") as file:
        client.put_entry("p", "big.bin", file)
    assert route.calls.last.request.headers["Content-Length"] == str(len(data))
    assert route.calls.last.request.content == data


def test_an_iterator_is_sent_chunked(api, client):
    route = api.put(URL).respond(201, json=entry_json(b"abcdef"))
    client.put_entry("p", "big.bin", (part for part in [b"abc", b"", b"def"]))
    request = route.calls.last.request
    assert request.headers["Transfer-Encoding"] == "chunked"
    assert "Content-Length" not in request.headers
    assert request.content == b"abcdef"


@pytest.mark.parametrize("bad", ["text", io.StringIO("text"), [b"a", "b"], 42])
def test_a_body_must_be_bytes(api, client, bad):
    api.put(URL).respond(201, json=entry_json(b""))
    with pytest.raises(TypeError):
        client.put_entry("p", "big.bin", bad)


class BrokenStream(httpx.SyncByteStream):
    """A response body that breaks off after some bytes."""

    def __init__(self, first: bytes) -> None:
        self.first = first

    def __iter__(self):
        yield self.first
        raise httpx.ReadError("connection reset")


def test_stream_entry_yields_chunks_and_holds_the_headers(api, client):
    data = b"q" * (2 * CHUNK_SIZE + 5)
    api.get(URL).respond(
        200,
        content=data,
        headers={
            "ETag": '"r2-x"',
            "Entry-Revision": "2",
            "Entry-SHA256": hashlib.sha256(data).hexdigest(),
            "Entry-Metadata": '{"k":"v"}',
            "Content-Type": "application/octet-stream",
        },
    )
    with client.stream_entry("p", "big.bin", chunk_size=CHUNK_SIZE) as stream:
        chunks = list(stream)
    assert b"".join(chunks) == data and max(map(len, chunks)) <= CHUNK_SIZE
    entry = stream.entry
    assert (entry.etag, entry.revision, entry.metadata, entry.size) == (
        '"r2-x"',
        2,
        {"k": "v"},
        len(data),
    )


def test_stream_entry_raises_at_once_on_an_error(api, client):
    api.get(URL).respond(404, json={"code": "not_found", "request_id": "r"})
    with pytest.raises(cc.NotFound):
        client.stream_entry("p", "big.bin")


def test_download_is_written_whole_then_renamed(api, client, tmp_path):
    data = b"d" * (3 * CHUNK_SIZE)
    api.get(URL).respond(
        200, content=data, headers={"Entry-SHA256": hashlib.sha256(data).hexdigest()}
    )
    dest = tmp_path / "out.bin"
    entry = client.download_entry("p", "big.bin", dest)
    assert dest.read_bytes() == data and entry.size == len(data)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


def test_a_broken_download_leaves_no_partial_file(api, client, tmp_path):
    api.get(URL).mock(return_value=httpx.Response(200, stream=BrokenStream(b"half")))
    dest = tmp_path / "out.bin"
    with pytest.raises(cc.ConnectionFailed):
        client.download_entry("p", "big.bin", dest)
    assert list(tmp_path.iterdir()) == []


def test_a_broken_download_keeps_the_old_file(api, client, tmp_path):
    api.get(URL).mock(return_value=httpx.Response(200, stream=BrokenStream(b"half")))
    dest = tmp_path / "out.bin"
    dest.write_bytes(b"old")
    with pytest.raises(cc.ConnectionFailed):
        client.download_entry("p", "big.bin", dest)
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]
    assert dest.read_bytes() == b"old"


def test_a_download_that_does_not_match_its_hash_is_refused(api, client, tmp_path):
    api.get(URL).respond(200, content=b"tampered", headers={"Entry-SHA256": "0" * 64})
    with pytest.raises(cc.ContentMismatch):
        client.download_entry("p", "big.bin", tmp_path / "out.bin")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(cc.ContentMismatch):
        client.get_entry("p", "big.bin")
