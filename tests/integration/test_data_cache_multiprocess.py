"""Cached hot rows across processes: 2 gunicorn servers of 2 workers (the deployments of
test_auth_multiprocess.py: PostgreSQL + Redis, then one data directory without Redis).

Every process keeps a tenant's projects and entry heads (plugins/context/hot_rows.py) while
the tenant's data generation holds (ctxcloud.tenancy.data_cache). A write raises it after it
commits and before it answers, so the very next request to any process reads the change: no
settling, no polling, on both stacks. Each read goes on a new connection, so the workers of a
server take turns; each server is read several times before a write, so its workers hold the
rows the write changes.

Credentials are another matter (their own generations, REVOCATION_MAX_DELAY with Redis): a
revoked key or a suspended tenant is refused by the cached reads too, once `settled`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import requests

from tests.integration.test_auth_multiprocess import (
    Deployment,
    embedded_deployment,
    production_deployment,
    settled,
)
from tests.support.context import context_url, entry_url, project_url
from tests.support.factories import bearer, make_api_key, make_platform_key, make_tenant
from tests.support.server import Server

pytestmark = [pytest.mark.server, pytest.mark.integration]

READS = 8  # reads per server and URL: both of its workers answer some


@pytest.fixture(scope="module")
def production(tmp_path_factory) -> Iterator[Deployment]:
    with production_deployment(tmp_path_factory.mktemp("data-cache-production")) as deployed:
        yield deployed


@pytest.fixture(scope="module")
def embedded(tmp_path_factory) -> Iterator[Deployment]:
    with embedded_deployment(tmp_path_factory.mktemp("data-cache-embedded")) as deployed:
        yield deployed


@pytest.fixture(params=["production", "embedded"])
def deployed(request) -> Deployment:
    return request.getfixturevalue(request.param)


class Caller:
    """One tenant's key, from one client address, each request on a new connection."""

    def __init__(self, deployed: Deployment, tenant, secret: str) -> None:
        self.deployed, self.tenant = deployed, tenant
        self.headers = {**bearer(secret), "X-Forwarded-For": deployed.client_address()}

    def request(self, method: str, server: Server, path: str, **kwargs) -> requests.Response:
        return requests.request(
            method, server.url + path, headers=self.headers, timeout=30, **kwargs
        )

    def get(self, server: Server, path: str) -> requests.Response:
        return self.request("GET", server, path)

    def statuses(self, server: Server, path: str) -> list[int]:
        return [self.get(server, path).status_code for _ in range(READS)]

    def warm(self, *paths: str) -> None:
        """Every worker of both servers reads (and caches) each path."""
        for server in (self.deployed.a, self.deployed.b):
            for path in paths:
                assert self.statuses(server, path) == [200] * READS


@pytest.fixture
def caller(deployed) -> Caller:
    tenant = make_tenant(deployed.app)
    _, secret = make_api_key(deployed.app, tenant)
    return Caller(deployed, tenant, secret)


def create(caller: Caller, slug: str) -> dict:
    created = caller.request(
        "POST", caller.deployed.a, "/api/v1/projects", json={"name": slug, "slug": slug}
    )
    assert created.status_code == 201, created.text
    return created.json()


def put(caller: Caller, server: Server, slug: str, path: str, data: bytes) -> int:
    response = caller.request("PUT", server, entry_url(slug, path), data=data)
    assert response.status_code in (200, 201), response.text
    return response.json()["revision"]


def test_a_put_is_read_by_the_next_request_of_every_process(deployed, caller):
    create(caller, "p")
    put(caller, deployed.a, "p", "a.md", b"v0")
    caller.warm(context_url("p"), entry_url("p", "a.md"))
    for number in range(1, 4):
        data = f"v{number}".encode() * 1000
        revision = put(caller, deployed.a, "p", "a.md", data)
        # The very next reads, on the other server, then on the writer's.
        for server in (deployed.b, deployed.a):
            for _ in range(READS // 2):
                assert caller.get(server, entry_url("p", "a.md")).content == data
                assert caller.get(server, context_url("p")).json()["revision"] == revision


def test_a_deleted_project_is_gone_from_every_process_at_once(deployed, caller):
    project = create(caller, "p")
    put(caller, deployed.a, "p", "a.md", b"one")
    urls = (context_url("p"), entry_url("p", "a.md"), project_url(project["id"]))
    caller.warm(*urls)
    deleted = caller.request("DELETE", deployed.a, project_url("p"))
    assert deleted.status_code == 204
    for server in (deployed.b, deployed.a):
        for url in urls:
            assert caller.statuses(server, url) == [404] * READS


def test_a_renamed_slug_moves_on_every_process_at_once(deployed, caller):
    project = create(caller, "p")
    put(caller, deployed.a, "p", "a.md", b"one")
    caller.warm(context_url("p"), entry_url("p", "a.md"), project_url(project["id"]))
    for server in (deployed.a, deployed.b):  # "q" is cached as no project, too
        assert caller.statuses(server, context_url("q")) == [404] * READS
    renamed = caller.request("PATCH", deployed.a, project_url("p"), json={"slug": "q"})
    assert renamed.status_code == 200, renamed.text
    for server in (deployed.b, deployed.a):
        assert caller.statuses(server, context_url("p")) == [404] * READS
        assert caller.statuses(server, entry_url("q", "a.md")) == [200] * READS
        assert caller.get(server, project_url(project["id"])).json()["slug"] == "q"


def test_a_revoked_key_is_refused_by_the_cached_reads_of_every_process(deployed, caller):
    create(caller, "p")
    put(caller, deployed.a, "p", "a.md", b"one")
    key, secret = make_api_key(
        deployed.app, caller.tenant, scopes=["projects:read", "context:read"]
    )
    reader = Caller(deployed, caller.tenant, secret)
    reader.warm(context_url("p"), entry_url("p", "a.md"))
    revoked = caller.request("DELETE", deployed.a, f"/api/v1/api-keys/{key.id}")
    assert revoked.status_code == 204
    revoked_at = time.monotonic()
    for server in (deployed.b, deployed.a):
        for url in (context_url("p"), entry_url("p", "a.md")):
            answers = settled(
                deployed, lambda s=server, u=url: reader.get(s, u).status_code, 401, revoked_at
            )
            assert answers == [401] * 8
    assert caller.get(deployed.b, context_url("p")).status_code == 200  # the owner's key


def test_a_suspended_tenant_is_refused_by_the_cached_reads_of_every_process(deployed):
    tenant = make_tenant(deployed.app)
    _, secret = make_api_key(deployed.app, tenant)
    caller = Caller(deployed, tenant, secret)
    _, platform = make_platform_key(deployed.app)
    create(caller, "p")
    put(caller, deployed.a, "p", "a.md", b"one")
    caller.warm(context_url("p"), entry_url("p", "a.md"))
    suspended = requests.patch(
        f"{deployed.a.url}/api/v1/tenants/{tenant.id}",
        json={"status": "suspended"},
        headers={**bearer(platform), "X-Forwarded-For": deployed.client_address()},
        timeout=30,
    )
    assert suspended.status_code == 200, suspended.text
    suspended_at = time.monotonic()
    for server in (deployed.b, deployed.a):
        for url in (context_url("p"), entry_url("p", "a.md")):
            answers = settled(
                deployed, lambda s=server, u=url: caller.get(s, u).status_code, 403, suspended_at
            )
            assert answers == [403] * 8


def test_a_project_created_on_one_process_is_found_by_every_other_at_once(deployed, caller):
    for server in (deployed.a, deployed.b):  # "no such project", cached by every worker
        assert caller.statuses(server, context_url("later")) == [404] * READS
    create(caller, "later")
    for server in (deployed.b, deployed.a):
        assert caller.statuses(server, context_url("later")) == [200] * READS
