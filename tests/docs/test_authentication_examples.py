"""docs/authentication.md's examples run: a downstream service verifies a token with PyJWT's
JWK client against the published set, over HTTP, as the page shows."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from tests.support.factories import login, make_user

DOC = Path(__file__).resolve().parents[2] / "docs" / "authentication.md"


def section(title: str) -> str:
    text = DOC.read_text()
    start = text.index(f"\n{title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end]


@pytest.fixture
def served(app):
    """The app on a loopback port of its own, in a thread; stopped afterwards."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)


def test_the_downstream_verification_example_runs(app, client, tenant, served):
    user, password = make_user(app, tenant, "member", "dana")
    token = login(client, tenant, "dana", password)["access_token"]
    (code,) = [
        block
        for block in re.findall(r"```python\n(.*?)```", section("## Signing keys"), re.S)
        if "PyJWKClient" in block
    ]
    namespace = {"token": token}
    exec(compile(code.replace("https://ctxcloud.example.com", served), "docs", "exec"), namespace)
    claims = namespace["claims"]
    assert claims["sub"] == user.id and claims["tid"] == tenant.id


def test_the_oauth2_client_example_runs(app, tenant, served, monkeypatch):
    """A real OAuth 2 client library (Authlib's OAuth2Session) gets a token by client
    credentials over HTTP and calls the API with it, as the page shows."""
    from tests.support.oauth import make_oauth_client

    monkeypatch.setenv("AUTHLIB_INSECURE_TRANSPORT", "1")  # the test server is plain http
    client_id, client_secret = make_oauth_client(app, tenant)
    (code,) = [
        block
        for block in re.findall(
            r"```python\n(.*?)```", section("## OAuth 2 clients (client credentials)"), re.S
        )
        if "OAuth2Session" in block
    ]
    namespace = {"client_id": client_id, "client_secret": client_secret}
    exec(compile(code.replace("https://ctxcloud.example.com", served), "docs", "exec"), namespace)
    assert namespace["projects"] == []
    session = namespace["session"]
    assert session.token["scope"] == "context:read projects:read"
    me = session.get(f"{served}/api/v1/auth/whoami").json()
    assert (me["type"], me["id"]) == ("oauth_client", client_id)
    assert me["permissions"] == ["context:read", "projects:read"]
