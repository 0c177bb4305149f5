"""Each quota at its boundary: exactly at the limit passes, one more is refused, and a refusal
stores nothing (no row, no revision, no object)."""

from __future__ import annotations

import base64
import io

import pytest

from tests.api.test_core import assert_problem
from tests.support.context import (
    context_url,
    create_project,
    entry_url,
    head_revision,
    put_entry,
    stored_keys,
)
from tests.support.factories import bearer, make_user

TENANTS = "/api/v1/tenants"


@pytest.fixture
def auth(owner_key):
    return bearer(owner_key)


@pytest.fixture
def set_quotas(client, platform_key, tenant):
    def set_(**quotas):
        response = client.patch(
            f"{TENANTS}/{tenant.id}/config", json={"quotas": quotas}, headers=bearer(platform_key)
        )
        assert response.status_code == 200, response.get_data(as_text=True)

    return set_


@pytest.fixture
def set_settings(client, auth):
    def set_(**settings):
        response = client.patch("/api/v1/tenant/settings", json=settings, headers=auth)
        assert response.status_code == 200, response.get_data(as_text=True)

    return set_


def assert_quota(response, name: str, limit: int, used: int) -> None:
    problem = assert_problem(response, 403, "quota_exceeded")
    assert (problem["quota"], problem["limit"], problem["used"]) == (name, limit, used)


def test_max_projects(client, auth, set_quotas):
    set_quotas(max_projects=2)
    create_project(client, auth, slug="a")
    create_project(client, auth, slug="b")
    response = client.post("/api/v1/projects", json={"name": "c"}, headers=auth)
    assert_quota(response, "max_projects", 2, 2)
    assert len(client.get("/api/v1/projects", headers=auth).get_json()) == 2
    assert client.delete("/api/v1/projects/a", headers=auth).status_code == 204
    create_project(client, auth, slug="c")  # deleting made room


def test_max_projects_zero_refuses_the_first(client, auth, set_quotas):
    set_quotas(max_projects=0)
    assert_quota(
        client.post("/api/v1/projects", json={"name": "a"}, headers=auth), "max_projects", 0, 0
    )


def test_max_users_through_the_api_and_the_cli(app, client, auth, tenant, set_quotas):
    set_quotas(max_users=2)
    body = {"username": "u1", "password": "correct horse battery", "role": "viewer"}
    assert client.post("/api/v1/users", json=body, headers=auth).status_code == 201
    make_user(app, tenant, "viewer")
    response = client.post("/api/v1/users", json={**body, "username": "u3"}, headers=auth)
    assert_quota(response, "max_users", 2, 2)
    result = app.test_cli_runner().invoke(
        args=["users", "create", "--tenant", tenant.slug, "--username", "u4", "--role", "viewer"]
    )
    assert result.exit_code != 0 and "max_users" in result.output
    assert len(client.get("/api/v1/users", headers=auth).get_json()) == 2


def test_max_api_keys_counts_live_keys_only(app, client, auth, tenant, set_quotas):
    set_quotas(max_api_keys=2)  # the owner key of the fixture is one
    body = {"name": "ci", "scopes": ["context:read"]}
    created = client.post("/api/v1/api-keys", json=body, headers=auth)
    assert created.status_code == 201
    assert_quota(client.post("/api/v1/api-keys", json=body, headers=auth), "max_api_keys", 2, 2)
    assert (
        client.delete(f"/api/v1/api-keys/{created.get_json()['id']}", headers=auth).status_code
        == 204
    )
    assert client.post("/api/v1/api-keys", json=body, headers=auth).status_code == 201


def test_max_entry_bytes_exactly_at_the_limit_passes(client, auth, set_quotas):
    set_quotas(max_entry_bytes=1000)
    create_project(client, auth, slug="p")
    put_entry(client, auth, "p", "a.bin", b"x" * 1000, expect=201)


class ReadCounter(io.BytesIO):
    """A request body that records whether anyone read it."""

    reads = 0

    def read(self, *args):
        self.reads += 1
        return super().read(*args)


def test_an_oversized_entry_is_refused_from_content_length_before_reading(
    app, client, auth, set_quotas
):
    set_quotas(max_entry_bytes=1000)
    create_project(client, auth, slug="p")
    before = stored_keys(app)
    body = ReadCounter(b"x" * 1001)
    response = client.put(
        entry_url("p", "a.bin"),
        input_stream=body,
        headers={**auth, "Content-Length": "1001"},
    )
    problem = assert_problem(response, 413, "entry_too_large")
    assert "1000" in problem["detail"]
    assert body.reads == 0
    assert stored_keys(app) == before and head_revision(client, auth, "p") == 0


def chunked(client, auth, path: str, data: bytes):
    """A PUT as gunicorn hands over Transfer-Encoding: chunked: no length, terminated input."""
    return client.put(
        entry_url("p", path),
        input_stream=io.BytesIO(data),
        headers=auth,
        environ_overrides={"HTTP_TRANSFER_ENCODING": "chunked", "wsgi.input_terminated": True},
    )


def test_an_oversized_entry_without_content_length_is_refused_while_streaming(
    app, client, auth, set_quotas
):
    set_quotas(max_entry_bytes=1000)
    create_project(client, auth, slug="p")
    before = stored_keys(app)
    response = chunked(client, auth, "a.bin", b"x" * 1001)
    assert_problem(response, 413, "entry_too_large")
    assert stored_keys(app) == before and head_revision(client, auth, "p") == 0


def test_max_storage_bytes_at_the_boundary(app, client, auth, tenant, set_quotas):
    set_quotas(max_storage_bytes=100)
    create_project(client, auth, slug="p")
    put_entry(client, auth, "p", "a.bin", b"x" * 60, expect=201)
    put_entry(client, auth, "p", "b.bin", b"x" * 40, expect=201)  # exactly 100
    before = stored_keys(app)
    response = put_entry(client, auth, "p", "c.bin", b"x")
    assert_quota(response, "max_storage_bytes", 100, 100)
    assert stored_keys(app) == before and head_revision(client, auth, "p") == 2
    # Replacing keeps the old version in history: it needs room too.
    assert_quota(put_entry(client, auth, "p", "a.bin", b"y"), "max_storage_bytes", 100, 100)
    # A deletion frees nothing (the version stays readable in history)...
    assert client.delete(entry_url("p", "b.bin"), headers=auth).status_code == 204
    assert_quota(put_entry(client, auth, "p", "c.bin", b"x"), "max_storage_bytes", 100, 100)
    # ...pruning it away does.
    result = app.test_cli_runner().invoke(args=["context", "prune", "--keep", "1"])
    assert result.exit_code == 0, result.output
    put_entry(client, auth, "p", "c.bin", b"x" * 40, expect=201)


def test_a_streamed_body_past_the_storage_quota_stops_early(app, client, auth, set_quotas):
    set_quotas(max_storage_bytes=1000)
    create_project(client, auth, slug="p")
    before = stored_keys(app)
    declared = client.put(
        entry_url("p", "a.bin"),
        input_stream=ReadCounter(b"x" * 1001),
        headers={**auth, "Content-Length": "1001"},
    )
    assert_quota(declared, "max_storage_bytes", 1000, 0)
    streamed = chunked(client, auth, "a.bin", b"x" * 2000)
    assert_quota(streamed, "max_storage_bytes", 1000, 0)
    assert stored_keys(app) == before and head_revision(client, auth, "p") == 0


def commit(client, auth, puts, deletes=()):
    return client.post(
        context_url("p").replace("/context", "/context/commits"),
        json={"message": "m", "put": puts, "delete": list(deletes)},
        headers=auth,
    )


def test_a_commit_counts_all_its_puts_together(app, client, auth, set_quotas):
    set_quotas(max_storage_bytes=100, max_entry_bytes=60)
    create_project(client, auth, slug="p")
    before = stored_keys(app)
    too_much = commit(client, auth, [{"path": f"{i}.txt", "content": "x" * 40} for i in range(3)])
    assert_quota(too_much, "max_storage_bytes", 100, 0)
    too_big = commit(
        client,
        auth,
        [{"path": "big.bin", "content_base64": base64.b64encode(b"x" * 61).decode()}],
    )
    assert_problem(too_big, 413, "entry_too_large")
    assert stored_keys(app) == before and head_revision(client, auth, "p") == 0
    exact = commit(client, auth, [{"path": f"{i}.txt", "content": "x" * 50} for i in range(2)])
    assert exact.status_code == 201


def test_lowering_a_quota_below_usage_keeps_the_data(client, auth, set_quotas):
    create_project(client, auth, slug="p")
    put_entry(client, auth, "p", "a.bin", b"x" * 50, expect=201)
    set_quotas(max_storage_bytes=10, max_projects=0)
    assert client.get(entry_url("p", "a.bin"), headers=auth).data == b"x" * 50
    assert_quota(put_entry(client, auth, "p", "b.bin", b"x"), "max_storage_bytes", 10, 50)
    assert client.get("/api/v1/projects/p", headers=auth).status_code == 200


def test_allowed_content_types(app, client, auth, set_settings):
    set_settings(
        allowed_content_types=["text/*", "application/json"], default_content_type="text/plain"
    )
    create_project(client, auth, slug="p")
    before = stored_keys(app)
    for content_type in ("text/markdown; charset=utf-8", "application/json", "TEXT/PLAIN"):
        put_entry(client, auth, "p", "a", b"{}", expect=None, content_type=content_type)
        assert client.get(entry_url("p", "a"), headers=auth).status_code == 200
    before = stored_keys(app)
    response = put_entry(client, auth, "p", "b.png", b"\x89PNG", content_type="image/png")
    problem = assert_problem(response, 415, "unsupported_media_type")
    assert problem["allowed"] == ["text/*", "application/json"]
    refused = commit(
        client,
        auth,
        [{"path": "c.bin", "content_base64": "AAAA", "content_type": "application/zip"}],
    )
    assert_problem(refused, 415, "unsupported_media_type")
    assert stored_keys(app) == before


def test_the_default_content_type_applies_when_none_is_sent(client, auth, set_settings):
    set_settings(default_content_type="text/markdown")
    create_project(client, auth, slug="p")
    client.put(entry_url("p", "a"), data=b"# hi", headers=auth)
    assert (
        client.get(entry_url("p", "a"), headers=auth)
        .headers["Content-Type"]
        .startswith("text/markdown")
    )
    commit(client, auth, [{"path": "b", "content_base64": "AAAA"}])
    assert client.get(entry_url("p", "b"), headers=auth).headers["Content-Type"] == "text/markdown"
