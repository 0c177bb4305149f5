"""Quotas hold exactly under concurrency: gunicorn (2 workers x 4 threads), writers released
together by a barrier, three times as many as the quota admits.

On the embedded default (SQLite file + local objects in one data directory) or, with
``CTXCLOUD_TEST_STACK=production``, on PostgreSQL + Redis + S3 (a fresh database, a Redis db
and a moto S3 server of this module's own). Data is arranged in this process through the
services, on the same database; quotas are set the platform's way (PATCH .../config).
"""

from __future__ import annotations

import itertools
import json
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass

import pytest
import redis
import requests

from ctxcloud import create_app
from ctxcloud.plugins.users.passwords import generate_password
from tests import stack
from tests.integration.test_auth_multiprocess import secrets_env
from tests.support import redisdb
from tests.support.context import context_url, entry_url
from tests.support.factories import bearer, make_api_key, make_platform_key, make_tenant
from tests.support.server import Server, cli, gunicorn

pytestmark = [pytest.mark.server, pytest.mark.integration]

API = "/api/v1"
# This run's Redis db (tests/support/redisdb.py), emptied around the deployment.
REDIS_URL = os.environ.get("CTXCLOUD_TEST_QUOTA_REDIS") or redisdb.url()
_serial = itertools.count(1)


@dataclass
class Deployment:
    app: object  # an app of this process on the servers' database, storage and keys
    server: Server
    platform: dict[str, str]

    def url(self, path: str) -> str:
        return self.server.url + path

    def stored_objects(self) -> set[str]:
        """Every object in the servers' storage (local data dir or the S3 prefix)."""
        with self.app.app_context():
            return set(self.app.extensions["ctxcloud"].storage.list())


def _as_config(env: dict[str, str]) -> dict:
    """The servers' CTXCLOUD_* settings as create_app takes them (JSON values decoded, as
    Flask's from_prefixed_env does)."""
    config = {}
    for name, value in env.items():
        if name.startswith("CTXCLOUD_"):
            try:
                config[name.removeprefix("CTXCLOUD_")] = json.loads(value)
            except ValueError:
                config[name.removeprefix("CTXCLOUD_")] = value
    return config


@pytest.fixture(scope="module")
def deployed(tmp_path_factory) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("quota-concurrency")
    env = {
        **secrets_env(),
        "CTXCLOUD_DATA_DIR": str(root / "data"),
        # Dozens of requests from one key at once: rate limits are not under test here.
        "CTXCLOUD_RATE_LIMIT_ENABLED": "false",
    }
    with ExitStack() as resources:
        if stack.is_production:
            from tests.support.s3server import aws_environment, moto_s3

            s3 = resources.enter_context(moto_s3())
            resources.enter_context(aws_environment(s3.env))
            flusher = redis.Redis.from_url(REDIS_URL)
            redisdb.flush(flusher)
            resources.callback(flusher.close)
            resources.callback(redisdb.flush, flusher)
            env |= s3.environ(S3_PREFIX="quota-concurrency/")
            env["CTXCLOUD_DATABASE_URL"] = resources.enter_context(stack.postgres_database())
            env["CTXCLOUD_REDIS_URL"] = REDIS_URL
        migrated = cli(env, "db", "upgrade")
        assert migrated.returncode == 0, migrated.stderr
        app = create_app(_as_config(env))
        resources.callback(stack.close, app)
        server = resources.enter_context(gunicorn(env, root / "logs", workers=2, threads=4))
        yield Deployment(app, server, bearer(make_platform_key(app)[1]))


@dataclass
class Tenant:
    id: str
    headers: dict[str, str]  # an owner's API key


@pytest.fixture
def tenant(deployed) -> Tenant:
    """A fresh tenant of the test's own, with a key holding every owner permission."""
    made = make_tenant(deployed.app, slug=f"quota-{next(_serial)}")
    return Tenant(made.id, bearer(make_api_key(deployed.app, made, name="owner")[1]))


def set_quotas(deployed: Deployment, tenant: Tenant, **quotas) -> None:
    response = requests.patch(
        deployed.url(f"{API}/tenants/{tenant.id}/config"),
        json={"quotas": quotas},
        headers=deployed.platform,
        timeout=30,
    )
    assert response.status_code == 200, response.text
    assert {k: response.json()["quotas"][k] for k in quotas} == quotas


def usage(deployed: Deployment, tenant: Tenant) -> dict:
    response = requests.get(
        deployed.url(f"{API}/tenants/{tenant.id}/usage"), headers=deployed.platform, timeout=30
    )
    assert response.status_code == 200, response.text
    return response.json()


def listed_total(deployed: Deployment, tenant: Tenant, path: str) -> int:
    """How many items a paginated listing says it has (and returns, on one page)."""
    response = requests.get(
        deployed.url(f"{API}/{path}?page_size=1000"), headers=tenant.headers, timeout=30
    )
    assert response.status_code == 200, response.text
    total = json.loads(response.headers["X-Pagination"])["total"]
    assert len(response.json()) == total
    return total


def make_project(deployed: Deployment, tenant: Tenant, slug: str = "quota") -> str:
    response = requests.post(
        deployed.url(f"{API}/projects"),
        json={"name": slug, "slug": slug},
        headers=tenant.headers,
        timeout=30,
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


def run_together(count: int, work) -> list[requests.Response]:
    """work(i) in `count` threads released at the same moment; responses in order."""
    barrier = threading.Barrier(count)

    def task(i: int) -> requests.Response:
        barrier.wait()
        return work(i)

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(task, range(count)))


def accepted_and_refused(responses: list[requests.Response], created: int) -> tuple[list, list]:
    """Split into the accepted (`created` status) and the refused (403 quota_exceeded);
    anything else fails the test."""
    accepted = [i for i, r in enumerate(responses) if r.status_code == created]
    refused = [i for i, r in enumerate(responses) if r.status_code == 403]
    others = [
        (r.status_code, r.text[:300]) for r in responses if r.status_code not in (created, 403)
    ]
    assert others == []
    for i in refused:
        assert responses[i].headers["Content-Type"] == "application/problem+json"
        assert responses[i].json()["code"] == "quota_exceeded"
    return accepted, refused


def tenant_object_keys(deployed: Deployment, tenant: Tenant) -> set[str]:
    """Object keys of every stored entry version of the tenant, read from the database."""
    from ctxcloud.plugins.context.models import EntryVersion, Project

    with deployed.app.app_context():
        projects = [p.id for p in Project.of_tenant(tenant.id)]
        return {
            key
            for (key,) in EntryVersion.select(EntryVersion.object_key)
            .where(EntryVersion.project.in_(projects), EntryVersion.object_key.is_null(False))
            .tuples()
        }


def manifest(deployed: Deployment, tenant: Tenant, project: str) -> dict:
    response = requests.get(deployed.url(context_url(project)), headers=tenant.headers, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


N = 4  # what the quota admits; 3N writers race for it


def test_concurrent_puts_never_pass_max_storage_bytes(deployed, tenant):
    size = 1000
    project = make_project(deployed, tenant)
    set_quotas(deployed, tenant, max_storage_bytes=N * size)
    objects_before = deployed.stored_objects()

    def put(i: int) -> requests.Response:
        return requests.put(
            deployed.url(entry_url(project, f"blobs/{i}.bin")),
            data=bytes([i]) * size,
            headers=tenant.headers,
            timeout=60,
        )

    responses = run_together(3 * N, put)
    accepted, refused = accepted_and_refused(responses, 201)
    assert (len(accepted), len(refused)) == (N, 2 * N)

    listed = manifest(deployed, tenant, project)
    assert sorted(e["path"] for e in listed["entries"]) == sorted(
        f"blobs/{i}.bin" for i in accepted
    )
    assert listed["total_size"] == N * size and listed["revision"] == N
    counted = usage(deployed, tenant)
    assert counted["storage_bytes"] == N * size
    assert counted["entries"] == len(listed["entries"]) == N
    # One object per accepted write, and nothing left behind by the refused ones.
    new_objects = deployed.stored_objects() - objects_before
    assert len(new_objects) == N
    assert new_objects == tenant_object_keys(deployed, tenant)
    for i in accepted:
        got = requests.get(
            deployed.url(entry_url(project, f"blobs/{i}.bin")), headers=tenant.headers, timeout=30
        )
        assert got.content == bytes([i]) * size


def test_concurrent_commits_never_pass_max_storage_bytes(deployed, tenant):
    puts_per_commit, size = 3, 500
    commit_bytes = puts_per_commit * size
    project = make_project(deployed, tenant)
    set_quotas(deployed, tenant, max_storage_bytes=N * commit_bytes)
    objects_before = deployed.stored_objects()

    def commit(i: int) -> requests.Response:
        return requests.post(
            deployed.url(context_url(project) + "/commits"),
            json={
                "message": f"commit {i}",
                "put": [
                    {"path": f"c{i}/{j}.txt", "content": chr(ord("a") + i) * size}
                    for j in range(puts_per_commit)
                ],
            },
            headers=tenant.headers,
            timeout=60,
        )

    responses = run_together(3 * N, commit)
    accepted, refused = accepted_and_refused(responses, 201)
    assert (len(accepted), len(refused)) == (N, 2 * N)
    assert sorted(responses[i].json()["revision"] for i in accepted) == list(range(1, N + 1))

    listed = manifest(deployed, tenant, project)
    assert sorted(e["path"] for e in listed["entries"]) == sorted(
        f"c{i}/{j}.txt" for i in accepted for j in range(puts_per_commit)
    )
    assert listed["total_size"] == N * commit_bytes and listed["revision"] == N
    counted = usage(deployed, tenant)
    assert counted["storage_bytes"] == N * commit_bytes
    assert counted["entries"] == len(listed["entries"]) == N * puts_per_commit
    new_objects = deployed.stored_objects() - objects_before
    assert len(new_objects) == N * puts_per_commit
    assert new_objects == tenant_object_keys(deployed, tenant)


def test_concurrent_project_creations_never_pass_max_projects(deployed, tenant):
    set_quotas(deployed, tenant, max_projects=N + 1)
    # One made alone first, under the quota: the race is for the N left. (A tenant's very
    # first quota-checked write creates its usage row: see the tests at the end.)
    make_project(deployed, tenant, "first")

    def create(i: int) -> requests.Response:
        return requests.post(
            deployed.url(f"{API}/projects"),
            json={"name": f"Project {i}", "slug": f"project-{i}"},
            headers=tenant.headers,
            timeout=60,
        )

    responses = run_together(3 * N, create)
    accepted, refused = accepted_and_refused(responses, 201)
    assert (len(accepted), len(refused)) == (N, 2 * N)

    from ctxcloud.plugins.context.models import Project

    with deployed.app.app_context():
        in_database = {p.slug for p in Project.of_tenant(tenant.id)}
    assert in_database == {"first"} | {f"project-{i}" for i in accepted}
    assert (
        usage(deployed, tenant)["projects"] == listed_total(deployed, tenant, "projects") == N + 1
    )


def test_concurrent_key_creations_never_pass_max_api_keys(deployed, tenant):
    # The tenant's owner key is live, so it counts, and so does one made alone first: N more fit.
    set_quotas(deployed, tenant, max_api_keys=N + 2)

    def create(i: int) -> requests.Response:
        return requests.post(
            deployed.url(f"{API}/api-keys"),
            json={"name": f"key {i}", "scopes": ["projects:read"]},
            headers=tenant.headers,
            timeout=60,
        )

    assert create(-1).status_code == 201
    responses = run_together(3 * N, create)
    accepted, refused = accepted_and_refused(responses, 201)
    assert (len(accepted), len(refused)) == (N, 2 * N)
    assert (
        usage(deployed, tenant)["api_keys"] == listed_total(deployed, tenant, "api-keys") == N + 2
    )
    for i in accepted:  # every key that was granted works
        whoami = requests.get(
            deployed.url(f"{API}/auth/whoami"),
            headers=bearer(responses[i].json()["key"]),
            timeout=30,
        )
        assert whoami.status_code == 200 and whoami.json()["tenant"]["id"] == tenant.id


def test_concurrent_user_creations_never_pass_max_users(deployed, tenant):
    set_quotas(deployed, tenant, max_users=N + 1)
    password = generate_password()

    def create(i: int) -> requests.Response:
        return requests.post(
            deployed.url(f"{API}/users"),
            json={"username": f"user{i}", "password": password, "role": "member"},
            headers=tenant.headers,
            timeout=60,
        )

    assert create(-1).status_code == 201  # one made alone first: N more fit
    responses = run_together(3 * N, create)
    accepted, refused = accepted_and_refused(responses, 201)
    assert (len(accepted), len(refused)) == (N, 2 * N)

    from ctxcloud.plugins.users.models import User

    with deployed.app.app_context():
        in_database = {u.username for u in User.of_tenant(tenant.id)}
    assert in_database == {"user-1"} | {f"user{i}" for i in accepted}
    assert usage(deployed, tenant)["users"] == listed_total(deployed, tenant, "users") == N + 1


def test_the_usage_lock_is_taken_on_a_tenants_first_quota_checked_write(deployed):
    from ctxcloud.db import database
    from ctxcloud.tenancy import quotas

    fresh = make_tenant(deployed.app, slug=f"quota-{next(_serial)}")
    with deployed.app.app_context():
        # A tenant from before usage rows existed: its first locked write creates one.
        quotas.forget(fresh.id)
        with database.atomic():
            held = quotas.lock(fresh.id)
            assert held is not None and held.tenant_id == fresh.id


@pytest.mark.skipif(
    not stack.is_production, reason="SQLite's IMMEDIATE transactions serialise the two writers"
)
def test_a_tenants_first_concurrent_writes_are_not_refused_while_they_fit(deployed, monkeypatch):
    from ctxcloud.db import database
    from ctxcloud.tenancy import quotas
    from ctxcloud.tenancy.models import Tenant as TenantRow

    fresh = make_tenant(deployed.app, slug=f"quota-{next(_serial)}")
    with deployed.app.app_context():
        TenantRow.update(config={"quotas": {"max_storage_bytes": 100}}).where(
            TenantRow.id == fresh.id
        ).execute()
        fresh = TenantRow.get_by_id(fresh.id)
        quotas.forget(fresh.id)  # a tenant from before usage rows existed
    first_added, second_updated = threading.Event(), threading.Event()
    ensure = quotas._ensure

    def interleaved(tenant_id):
        # The second writer's UPDATE missed the first writer's uncommitted row: let the
        # first commit while the second creates the row (which waits for that commit).
        if threading.current_thread().name == "second":
            second_updated.set()
        return ensure(tenant_id)

    monkeypatch.setattr(quotas, "_ensure", interleaved)
    outcome: dict[str, object] = {}

    def first() -> None:
        with deployed.app.app_context():
            with database.atomic():
                quotas.add_storage(fresh, 10)
                first_added.set()
                second_updated.wait(30)

    def second() -> None:
        first_added.wait(30)
        with deployed.app.app_context():
            try:
                with database.atomic():
                    quotas.add_storage(fresh, 10)
                outcome["second"] = "stored"
            except Exception as exc:  # the refusal under test
                outcome["second"] = exc

    threads = [threading.Thread(target=f, name=f.__name__) for f in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert outcome == {"second": "stored"}
    with deployed.app.app_context():
        assert quotas.storage_bytes(fresh.id) == 20
