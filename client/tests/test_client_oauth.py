"""Client credentials: one token fetched and reused, renewed before expiry and once on a 401;
token endpoint errors are OAuthError."""

from __future__ import annotations

import base64
import urllib.parse

import httpx
import pytest

import ctxcloud_client as cc

WHOAMI = {"type": "oauth_client", "id": "ctxc_1"}


def token_answer(token: str, expires_in: int = 3600) -> httpx.Response:
    body = {
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": expires_in,
        "scope": "context:read",
    }
    return httpx.Response(200, json=body)


@pytest.fixture
def oauth_client(make_client):
    return make_client(client_id="ctxc_1", client_secret="s3cret+/=")


def test_a_token_is_fetched_once_by_basic_auth_and_reused(api, oauth_client):
    token = api.post("/oauth/token").mock(return_value=token_answer("tok-1"))
    whoami = api.get("/auth/whoami").respond(200, json=WHOAMI)
    oauth_client.whoami()
    oauth_client.whoami()
    assert token.call_count == 1 and whoami.call_count == 2
    request = token.calls.last.request
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert urllib.parse.parse_qs(request.content.decode()) == {"grant_type": ["client_credentials"]}
    scheme, _, encoded = request.headers["Authorization"].partition(" ")
    assert scheme == "Basic"
    # RFC 6749 2.3.1: each half form-encoded before Basic.
    assert base64.b64decode(encoded).decode() == "ctxc_1:s3cret%2B%2F%3D"
    assert all(call.request.headers["Authorization"] == "Bearer tok-1" for call in whoami.calls)


def test_a_scope_is_asked_for(api, make_client):
    client = make_client(client_id="c", client_secret="s", scope="context:read")
    token = api.post("/oauth/token").mock(return_value=token_answer("t"))
    api.get("/auth/whoami").respond(200, json=WHOAMI)
    client.whoami()
    form = urllib.parse.parse_qs(token.calls.last.request.content.decode())
    assert form["scope"] == ["context:read"]


def test_the_token_is_renewed_shortly_before_it_expires(api, oauth_client, fake_time):
    token = api.post("/oauth/token").mock(
        side_effect=[token_answer("tok-1", 300), token_answer("tok-2", 300)]
    )
    whoami = api.get("/auth/whoami").respond(200, json=WHOAMI)
    oauth_client.whoami()
    fake_time.now += 265  # 35 s left: still used (renewed 30 s before the end)
    oauth_client.whoami()
    assert token.call_count == 1
    fake_time.now += 10  # 25 s left: renewed first
    oauth_client.whoami()
    assert token.call_count == 2
    assert [c.request.headers["Authorization"] for c in whoami.calls] == [
        "Bearer tok-1",
        "Bearer tok-1",
        "Bearer tok-2",
    ]


def test_a_401_gets_a_new_token_once(api, oauth_client):
    token = api.post("/oauth/token").mock(
        side_effect=[token_answer("tok-1"), token_answer("tok-2"), token_answer("tok-3")]
    )
    unauthorized = httpx.Response(401, json={"code": "unauthorized", "detail": "revoked"})
    whoami = api.get("/auth/whoami").mock(
        side_effect=[unauthorized, httpx.Response(200, json=WHOAMI)]
    )
    assert oauth_client.whoami() == WHOAMI
    assert token.call_count == 2
    assert [c.request.headers["Authorization"] for c in whoami.calls] == [
        "Bearer tok-1",
        "Bearer tok-2",
    ]

    whoami.mock(side_effect=None, return_value=unauthorized)
    with pytest.raises(cc.Unauthorized):  # a second 401 in a row is the answer
        oauth_client.whoami()
    assert token.call_count == 3


def test_an_api_key_is_not_renewed_on_a_401(api, client):
    route = api.get("/auth/whoami").respond(401, json={"code": "unauthorized"})
    with pytest.raises(cc.Unauthorized):
        client.whoami()
    assert route.call_count == 1


def test_a_refused_client_is_an_oauth_error(api, oauth_client):
    api.post("/oauth/token").respond(
        401,
        json={"error": "invalid_client", "error_description": "Client authentication failed."},
        headers={"WWW-Authenticate": "Basic", "X-Request-ID": "req-7"},
    )
    with pytest.raises(cc.OAuthError) as caught:
        oauth_client.whoami()
    error = caught.value
    assert isinstance(error, cc.Unauthorized)
    assert (error.error, error.code, error.status) == ("invalid_client", "invalid_client", 401)
    assert error.detail == "Client authentication failed." and error.request_id == "req-7"


def test_an_invalid_scope_is_an_oauth_error_too(api, oauth_client):
    api.post("/oauth/token").respond(400, json={"error": "invalid_scope"})
    with pytest.raises(cc.OAuthError) as caught:
        oauth_client.whoami()
    assert caught.value.error == "invalid_scope" and caught.value.status == 400


def test_a_rate_limited_token_endpoint_is_retried(api, oauth_client, fake_time):
    api.post("/oauth/token").mock(
        side_effect=[
            httpx.Response(429, json={"code": "rate_limited"}, headers={"Retry-After": "4"}),
            token_answer("tok-1"),
        ]
    )
    api.get("/auth/whoami").respond(200, json=WHOAMI)
    oauth_client.whoami()
    assert fake_time.sleeps == [4.0]
