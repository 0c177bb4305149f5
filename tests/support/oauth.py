"""OAuth clients and their tokens, for tests: made through the service, fetched over HTTP."""

from __future__ import annotations

import base64
from collections.abc import Iterable

from ctxcloud.plugins.auth_oauth import service

TOKEN, INTROSPECT, REVOKE = (
    "/api/v1/oauth/token",
    "/api/v1/oauth/introspect",
    "/api/v1/oauth/revoke",
)


def make_oauth_client(
    app,
    tenant,
    scopes: Iterable[str] = ("context:read", "context:write", "projects:read"),
    project_ids: Iterable[str] | None = None,
    name: str = "ci",
) -> tuple[str, str]:
    """A client of `tenant`: (client_id, client_secret)."""
    with app.app_context():
        client, secret = service.create_client(tenant.id, name, scopes, project_ids)
    return client.client_id, secret


def basic(client_id: str, secret: str) -> dict[str, str]:
    pair = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return {"Authorization": f"Basic {pair}"}


def fetch_token(http, client_id: str, secret: str, scope: str | None = None, *, post=False):
    """POST /oauth/token by client_secret_basic (or _post): the response."""
    form = {"grant_type": "client_credentials"}
    if scope is not None:
        form["scope"] = scope
    if post:
        return http.post(TOKEN, data={**form, "client_id": client_id, "client_secret": secret})
    return http.post(TOKEN, data=form, headers=basic(client_id, secret))


def client_token(http, client_id: str, secret: str, scope: str | None = None) -> str:
    response = fetch_token(http, client_id, secret, scope)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["access_token"]
