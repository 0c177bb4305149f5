"""429 and 503 are retried as Retry-After asks, within max_retries and the total wait; broken
connections on idempotent requests too; bodies that cannot be sent twice never are."""

from __future__ import annotations

import datetime
import email.utils
import io

import httpx
import pytest

import ctxcloud_client as cc
from ctxcloud_client.retry import retry_after_seconds

PROJECT = {"id": "prj_1", "slug": "p", "name": "P"}
ENTRY = {"path": "a", "size": 3, "sha256": "0" * 64, "content_type": "x", "revision": 1}


def limited(seconds: str | None = "2") -> httpx.Response:
    headers = {"Retry-After": seconds} if seconds is not None else {}
    body = {"status": 429, "code": "rate_limited", "detail": "slow down", "request_id": "r1"}
    return httpx.Response(429, json=body, headers=headers)


def unavailable(seconds: str | None = None) -> httpx.Response:
    headers = {"Retry-After": seconds} if seconds is not None else {}
    return httpx.Response(503, json={"code": "unavailable", "detail": "db down"}, headers=headers)


def test_a_429_waits_what_retry_after_says_then_succeeds(api, client, fake_time):
    route = api.get("/projects/p").mock(
        side_effect=[limited("2"), limited("3"), httpx.Response(200, json=PROJECT)]
    )
    assert client.get_project("p").id == "prj_1"
    assert route.call_count == 3
    assert fake_time.sleeps == [2.0, 3.0]


def test_a_503_without_retry_after_backs_off_exponentially(api, client, fake_time):
    api.get("/projects/p").mock(
        side_effect=[unavailable(), unavailable(), unavailable(), httpx.Response(200, json=PROJECT)]
    )
    client.get_project("p")
    assert fake_time.sleeps == [0.5, 1.0, 2.0]


def test_retries_stop_at_max_retries_and_raise_the_last_answer(api, make_client, fake_time):
    client = make_client(max_retries=2)
    route = api.get("/projects/p").mock(return_value=limited("1"))
    with pytest.raises(cc.RateLimited) as caught:
        client.get_project("p")
    assert route.call_count == 3 and fake_time.sleeps == [1.0, 1.0]
    assert caught.value.retry_after == 1.0 and caught.value.request_id == "r1"


def test_a_wait_past_the_total_cap_is_not_waited(api, make_client, fake_time):
    client = make_client(max_retry_wait=10)
    route = api.get("/projects/p").mock(side_effect=[limited("6"), limited("6")])
    with pytest.raises(cc.RateLimited):
        client.get_project("p")
    assert route.call_count == 2 and fake_time.sleeps == [6.0]  # 6 + 6 > 10


def test_no_retries_when_max_retries_is_zero(api, make_client, fake_time):
    client = make_client(max_retries=0)
    api.get("/projects/p").mock(return_value=unavailable("1"))
    with pytest.raises(cc.Unavailable):
        client.get_project("p")
    assert fake_time.sleeps == []


def test_other_errors_are_not_retried(api, client, fake_time):
    route = api.get("/projects/p").respond(500, json={"code": "internal_error"})
    with pytest.raises(cc.ServerError):
        client.get_project("p")
    assert route.call_count == 1 and fake_time.sleeps == []


def test_retry_after_as_an_http_date():
    now = 1_800_000_000.0
    when = email.utils.format_datetime(
        datetime.datetime.fromtimestamp(now + 7, datetime.UTC), usegmt=True
    )
    assert retry_after_seconds(when, now=lambda: now) == 7.0
    assert retry_after_seconds("-5") == 0.0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None


def test_a_read_error_on_a_get_is_retried(api, client, fake_time):
    api.get("/projects/p").mock(
        side_effect=[httpx.ReadError("reset"), httpx.Response(200, json=PROJECT)]
    )
    assert client.get_project("p").id == "prj_1"
    assert fake_time.sleeps == [0.5]


def test_a_read_error_on_a_post_is_not_retried(api, client, fake_time):
    route = api.post("/projects").mock(side_effect=httpx.ReadError("reset"))
    with pytest.raises(cc.ConnectionFailed):
        client.create_project("P")
    assert route.call_count == 1 and fake_time.sleeps == []


def test_a_post_that_never_connected_is_retried(api, client):
    api.post("/projects").mock(
        side_effect=[httpx.ConnectError("refused"), httpx.Response(201, json=PROJECT)]
    )
    assert client.create_project("P").id == "prj_1"


def test_a_429_to_a_post_is_retried_with_the_same_body(api, client):
    route = api.post("/projects").mock(
        side_effect=[limited("1"), httpx.Response(201, json=PROJECT)]
    )
    client.create_project("P")
    assert [call.request.content for call in route.calls] == [b'{"name":"P"}'] * 2


def test_a_seekable_file_is_rewound_for_the_retry(api, client, tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"head-abc")
    route = api.put("/projects/p/context/entries/a").mock(
        side_effect=[unavailable("1"), httpx.Response(201, json=ENTRY)]
    )
    with path.open("rb") as file:
        file.read(5)  # sent from where the file stands: "abc"
        client.put_entry("p", "a", file)
    assert [call.request.content for call in route.calls] == [b"abc", b"abc"]
    assert route.calls.last.request.headers["Content-Length"] == "3"


def test_an_iterator_body_is_never_retried(api, client, fake_time):
    route = api.put("/projects/p/context/entries/a").mock(return_value=unavailable("1"))
    with pytest.raises(cc.Unavailable):
        client.put_entry("p", "a", iter([b"a", b"b"]))
    assert route.call_count == 1 and fake_time.sleeps == []


def test_an_unseekable_file_is_never_retried(api, client, fake_time):
    class Pipe(io.RawIOBase):
        def __init__(self) -> None:
            self.left = [b"abc"]

        def readable(self) -> bool:
            return True

        def read(self, size: int = -1) -> bytes:
            return self.left.pop() if self.left else b""

    route = api.put("/projects/p/context/entries/a").mock(side_effect=httpx.ReadError("reset"))
    with pytest.raises(cc.ConnectionFailed):
        client.put_entry("p", "a", Pipe())
    assert route.call_count == 1 and fake_time.sleeps == []
