"""A signed link revoked through one server is refused at once by another (two gunicorn servers
of two workers each), on the production shape (PostgreSQL + Redis) and the embedded default
(one data directory, SQLite).

A link's row is read on every use, so there is no cache to wait for: the first read after the
revocation, on any process, is already the 404 (no settling delay, unlike credentials)."""

from __future__ import annotations

import pytest
import requests

from tests.integration.test_auth_multiprocess import (  # noqa: F401 (fixtures)
    Deployment,
    embedded,
    production,
)
from tests.support.factories import bearer, make_api_key, make_tenant

pytestmark = [pytest.mark.server, pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(params=["production", "embedded"])
def deployed(request) -> Deployment:
    return request.getfixturevalue(request.param)


def call(method: str, base: str, path: str, address: str, **kwargs) -> requests.Response:
    """One request on a new connection (so each server's two workers take turns)."""
    headers = {**kwargs.pop("headers", {}), "X-Forwarded-For": address}
    return requests.request(method, base + path, headers=headers, timeout=30, **kwargs)


def test_a_link_revoked_through_one_server_is_refused_at_once_by_the_other(deployed):
    address = deployed.client_address()
    tenant = make_tenant(deployed.app)
    auth = bearer(make_api_key(deployed.app, tenant)[1])
    a, b = deployed.a.url, deployed.b.url
    assert call("POST", a, "/api/v1/projects", address, json={"name": "Handbook"}, headers=auth)
    project = "handbook"
    enabled = call(
        "PATCH", a, "/api/v1/tenant/settings", address, json={"links_enabled": True}, headers=auth
    )
    assert enabled.status_code == 200, enabled.text
    committed = call(
        "POST",
        b,
        f"/api/v1/projects/{project}/context/commits",
        address,
        json={"put": [{"path": "a.md", "content": "pinned"}]},
        headers=auth,
    )
    assert committed.status_code == 201, committed.text
    made = call(
        "POST",
        a,
        f"/api/v1/projects/{project}/context/links",
        address,
        json={"revision": 1, "path": "a.md", "expires_in": 3600},
        headers=auth,
    )
    assert made.status_code == 201, made.text
    link = made.json()
    reference = link["url"].split("/api/v1/", 1)[1]
    through = f"/api/v1/{reference}"

    before = [call("GET", server, through, address) for server in (a, b, a, b)]
    assert [(r.status_code, r.content) for r in before] == [(200, b"pinned")] * 4

    revoked = call(
        "DELETE",
        a,
        f"/api/v1/projects/{project}/context/links/{link['id']}",
        address,
        headers=auth,
    )
    assert revoked.status_code == 204
    after_b = [call("GET", b, through, address).status_code for _ in range(8)]
    after_a = [call("GET", a, through, address).status_code for _ in range(4)]
    assert after_b == [404] * 8 and after_a == [404] * 4
