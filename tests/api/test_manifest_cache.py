"""The per-process manifest cache never answers what the caller could not otherwise read."""

from __future__ import annotations

from ctxcloud.plugins.context.manifest_cache import ManifestCache, manifest_cache
from tests.api.test_core import assert_problem
from tests.support.context import context_url, create_project, put_entry
from tests.support.factories import bearer, make_api_key, make_tenant


def test_the_cache_is_bounded_and_drops_the_least_recently_used():
    cache = ManifestCache(max_bytes=40)
    cache.put("a", b"x" * 10)
    cache.put("b", b"y" * 10)
    cache.put("c", b"z" * 10)
    assert cache.get("a") == b"x" * 10  # a is now the most recent
    cache.put("d", b"w" * 10)
    cache.put("e", b"v" * 10)  # 50 bytes > 40: the least recent (b) goes
    assert cache.get("b") is None and cache.get("a") is not None
    cache.put("huge", b"h" * 11)  # more than a quarter of the budget is never kept
    assert cache.get("huge") is None
    assert cache.size <= 40


def test_a_cached_manifest_is_served_only_after_access_is_checked(app, client, tenant, owner_key):
    auth = bearer(owner_key)
    project = create_project(client, auth, slug="p")
    create_project(client, auth, slug="q")
    put_entry(client, auth, "p", "a.md", b"secret plan", expect=201)
    first = client.get(context_url("p"), headers=auth)
    again = client.get(context_url("p"), headers=auth)
    assert first.status_code == again.status_code == 200
    assert first.get_data() == again.get_data() and first.headers["ETag"] == again.headers["ETag"]
    with app.app_context():
        assert manifest_cache().get(first.headers["ETag"]) is not None

    other_tenant_key = make_api_key(app, make_tenant(app))[1]
    for ref in (project["id"], "p"):
        assert_problem(
            client.get(context_url(ref), headers=bearer(other_tenant_key)), 404, "not_found"
        )
    q_id = client.get("/api/v1/projects/q", headers=auth).get_json()["id"]
    restricted = bearer(make_api_key(app, tenant, project_ids=[q_id])[1])
    assert_problem(client.get(context_url("p"), headers=restricted), 404, "not_found")


def test_a_pruned_revision_is_gone_even_when_its_manifest_was_cached(app, client, owner_key):
    auth = bearer(owner_key)
    create_project(client, auth, slug="p")
    for i in range(3):
        put_entry(client, auth, "p", "a.md", f"v{i}".encode())
    assert client.get(context_url("p", revision=1), headers=auth).status_code == 200
    result = app.test_cli_runner().invoke(args=["context", "prune", "--keep", "1"])
    assert result.exit_code == 0, result.output
    assert_problem(client.get(context_url("p", revision=1), headers=auth), 404, "not_found")
    # A write makes a new head, with a new ETag and body.
    before = client.get(context_url("p"), headers=auth)
    put_entry(client, auth, "p", "b.md", b"new", expect=201)
    after = client.get(context_url("p"), headers=auth)
    assert after.headers["ETag"] != before.headers["ETag"]
    assert [e["path"] for e in after.get_json()["entries"]] == ["a.md", "b.md"]
