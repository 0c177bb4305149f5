"""Signed links (API.md "Beyond", docs/links.md): a URL that reads one pinned revision of a
project, or one entry at it, without a credential, until it expires or is revoked.

Made with context:read when the tenant's `links_enabled` setting is on (off by default: 403
`links_disabled`); listed without their URLs; revoked by id (204), after which the URL is the
same 404 as any link that does not work. Expiry is judged by `links.now`, which the tests move
instead of sleeping."""

from __future__ import annotations

import datetime
import logging
from urllib.parse import urlsplit

import pytest

from ctxcloud import stash
from ctxcloud.plugins.context import link_keys, links, pruning
from ctxcloud.plugins.context.models import Project
from tests.api.test_core import assert_problem
from tests.support.context import context_url, create_project, sha256
from tests.support.factories import bearer, make_api_key, make_tenant

P = "handbook"
LINKS = f"{context_url(P)}/links"
DAY = 24 * 3600


@pytest.fixture
def auth(app, tenant) -> dict:
    return bearer(make_api_key(app, tenant)[1])


def enable_links(client, auth, on: bool = True) -> None:
    response = client.patch("/api/v1/tenant/settings", json={"links_enabled": on}, headers=auth)
    assert response.status_code == 200, response.get_data(as_text=True)


def commit(client, auth, project=P, **files) -> int:
    put = [
        {"path": path.replace("__", "/"), "content": text, "content_type": "text/markdown"}
        for path, text in files.items()
    ]
    response = client.post(
        f"{context_url(project)}/commits", json={"put": put, "message": "m"}, headers=auth
    )
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()["revision"]


@pytest.fixture
def project(client, auth) -> dict:
    """`handbook`: revision 1 writes a.md and docs/b.md, revision 2 changes a.md."""
    created = create_project(client, auth, name="Handbook", slug=P)
    commit(client, auth, **{"a.md": "# A one\n", "docs__b.md": "B\n"})
    commit(client, auth, **{"a.md": "# A two\n"})
    enable_links(client, auth)
    return created


def make_link(client, auth, project=P, **body) -> dict:
    body.setdefault("expires_in", DAY)
    response = client.post(f"{context_url(project)}/links", json=body, headers=auth)
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()


def local(url: str) -> str:
    """The URL's path and query, for the test client."""
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def under(url: str, suffix: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}{suffix}?{parts.query}"


def refused(response) -> None:
    body = assert_problem(response, 404, "not_found")
    assert body["detail"] == "No such link."


def test_a_link_reads_its_revision_without_a_credential_until_revoked(
    app, client, auth, project, caplog
):
    caplog.set_level(logging.INFO, logger="ctxcloud.audit")
    link = make_link(client, auth, revision=1)
    assert set(link) == {"id", "url", "expires_at", "revision", "project_id", "created_at"}
    assert link["id"].startswith("lnk_") and link["revision"] == 1
    assert link["url"].startswith("http://localhost/api/v1/links/" + link["id"] + "?token=")
    created = datetime.datetime.fromisoformat(link["created_at"].replace("Z", "+00:00"))
    expires = datetime.datetime.fromisoformat(link["expires_at"].replace("Z", "+00:00"))
    assert (expires - created).total_seconds() == DAY

    manifest = client.get(local(link["url"]))  # no credential
    assert manifest.status_code == 200
    assert manifest.headers["Referrer-Policy"] == "no-referrer"
    assert "no-cache" in manifest.headers["Cache-Control"]
    body = manifest.get_json()
    assert body["revision"] == 1 and body["project_id"] == project["id"]
    assert [e["path"] for e in body["entries"]] == ["a.md", "docs/b.md"]
    entry = client.get(under(link["url"], "/entries/a.md"))
    assert entry.status_code == 200 and entry.data == b"# A one\n"  # revision 1, not the head
    assert entry.headers["Entry-Revision"] == "1"
    assert entry.headers["Content-Type"].startswith("text/markdown")
    again = client.get(local(link["url"]), headers={"If-None-Match": manifest.headers["ETag"]})
    assert again.status_code == 304

    listed = client.get(LINKS, headers=auth)
    assert listed.status_code == 200
    [row] = listed.get_json()
    assert row["id"] == link["id"] and row["status"] == "active" and "url" not in row
    assert link["url"].split("token=")[1] not in listed.get_data(as_text=True)

    assert client.delete(f"{LINKS}/{link['id']}", headers=auth).status_code == 204
    refused(client.get(local(link["url"])))
    refused(client.get(under(link["url"], "/entries/a.md")))
    assert client.get(LINKS, headers=auth).get_json()[0]["status"] == "revoked"
    assert client.delete(f"{LINKS}/{link['id']}", headers=auth).status_code == 204  # again

    events = [r.audit for r in caplog.records if r.name == "ctxcloud.audit"]
    kinds = [e["type"] for e in events]
    assert kinds.count("link.created") == 1 and kinds.count("link.revoked") == 1
    used = [e for e in events if e["type"] == "link.used"]
    assert used and all(e["link_id"] == link["id"] for e in used)
    assert {e["read"] for e in used} == {"manifest", "entry"}
    assert used[0]["actor"] == f"link:{link['id']}" and used[0]["project_id"] == project["id"]
    token = link["url"].split("token=")[1]
    assert all(token not in repr(e) for e in events)


def test_a_link_with_a_path_reads_that_entry_only_as_the_entry_get_does(client, auth, project):
    link = make_link(client, auth, revision=2, path="a.md")
    assert link["path"] == "a.md"
    url = local(link["url"])
    whole = client.get(url)
    assert whole.status_code == 200 and whole.data == b"# A two\n"
    assert whole.headers["Entry-SHA256"] == sha256(b"# A two\n")
    assert whole.headers["Accept-Ranges"] == "bytes"
    part = client.get(url, headers={"Range": "bytes=2-4"})
    assert part.status_code == 206 and part.data == b"A t"
    assert part.headers["Content-Range"] == "bytes 2-4/8"
    assert client.get(url, headers={"If-None-Match": whole.headers["ETag"]}).status_code == 304
    head = client.head(url)
    assert head.status_code == 200 and head.headers["Content-Length"] == "8"
    # Nothing else: not another entry, not even its own under /entries, not the manifest.
    refused(client.get(under(link["url"], "/entries/docs/b.md")))
    refused(client.get(under(link["url"], "/entries/a.md")))


def test_a_link_reads_the_render_at_its_revision(client, auth, project):
    link = make_link(client, auth, revision=1)
    rendered = client.get(under(link["url"], "/render") + "&max_tokens=500")
    assert rendered.status_code == 200, rendered.get_data(as_text=True)
    assert rendered.headers["Context-Revision"] == "1"
    text = rendered.get_data(as_text=True)
    assert "# A one" in text and "# A two" not in text
    as_json = client.get(
        under(link["url"], "/render") + "&max_tokens=500", headers={"Accept": "application/json"}
    )
    assert as_json.status_code == 200
    assert [p["path"] for p in as_json.get_json()["parts"]] == ["a.md", "docs/b.md"]
    path_link = make_link(client, auth, revision=1, path="a.md")
    refused(client.get(under(path_link["url"], "/render") + "&max_tokens=500"))


def test_an_expired_link_is_refused_and_listed_as_expired(client, auth, project, monkeypatch):
    link = make_link(client, auth, revision=1, expires_in=60)
    assert client.get(local(link["url"])).status_code == 200
    later = links.now() + datetime.timedelta(seconds=61)
    monkeypatch.setattr(links, "now", lambda: later)
    refused(client.get(local(link["url"])))
    assert client.get(LINKS, headers=auth).get_json()[0]["status"] == "expired"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"revision": 1, "expires_in": 30 * DAY + 1}, "expires_in"),
        ({"revision": 1, "expires_in": 59}, "expires_in"),
        ({"revision": 1}, "expires_in"),
        ({"expires_in": DAY}, "revision"),
        ({"revision": -1, "expires_in": DAY}, "revision"),
        ({"revision": "1", "expires_in": DAY}, "revision"),
        ({"revision": 1, "expires_in": DAY, "path": ""}, "path"),
        ({"revision": 1, "expires_in": DAY, "secret": "x"}, "secret"),
    ],
)
def test_bad_link_requests_are_refused_and_make_nothing(client, auth, project, body, field):
    response = client.post(LINKS, json=body, headers=auth)
    problem = assert_problem(response, 422, "validation_error")
    assert field in problem["errors"]
    assert client.get(LINKS, headers=auth).get_json() == []


def test_a_link_names_a_revision_and_path_that_exist(client, auth, project):
    assert_problem(
        client.post(LINKS, json={"revision": 3, "expires_in": DAY}, headers=auth), 404, "not_found"
    )
    missing = {"revision": 1, "path": "nope.md", "expires_in": DAY}
    assert_problem(client.post(LINKS, json=missing, headers=auth), 404, "not_found")
    bad = {"revision": 1, "path": "../a.md", "expires_in": DAY}
    assert_problem(client.post(LINKS, json=bad, headers=auth), 400, "invalid_path")
    assert client.get(LINKS, headers=auth).get_json() == []


def test_links_need_the_setting_and_stop_when_it_is_turned_off(client, auth, project):
    link = make_link(client, auth, revision=1)
    enable_links(client, auth, on=False)
    problem = assert_problem(
        client.post(LINKS, json={"revision": 1, "expires_in": DAY}, headers=auth),
        403,
        "links_disabled",
    )
    assert "links_enabled" in problem["detail"]
    refused(client.get(local(link["url"])))
    enable_links(client, auth, on=True)
    assert client.get(local(link["url"])).status_code == 200


def test_the_setting_is_off_by_default(app, client):
    tenant = make_tenant(app, slug="fresh")
    auth = bearer(make_api_key(app, tenant)[1])
    create_project(client, auth, name="Fresh", slug="fresh")
    response = client.post(
        f"{context_url('fresh')}/links", json={"revision": 0, "expires_in": DAY}, headers=auth
    )
    assert_problem(response, 403, "links_disabled")


def test_a_read_only_key_makes_links_and_a_key_without_read_does_not(
    app, client, tenant, auth, project
):
    reader = bearer(make_api_key(app, tenant, scopes=["context:read"])[1])
    assert (
        client.post(LINKS, json={"revision": 1, "expires_in": DAY}, headers=reader).status_code
        == 201
    )
    writer = bearer(make_api_key(app, tenant, scopes=["projects:read"])[1])
    assert_problem(
        client.post(LINKS, json={"revision": 1, "expires_in": DAY}, headers=writer),
        403,
        "forbidden",
    )
    assert client.post(LINKS, json={"revision": 1, "expires_in": DAY}).status_code == 401


def test_another_tenants_and_another_projects_links_are_404(
    app, client, auth, project, other_tenant
):
    link = make_link(client, auth, revision=1)
    other = bearer(make_api_key(app, other_tenant)[1])
    create_project(client, other, name="Handbook", slug=P)
    enable_links(client, other)
    assert_problem(client.delete(f"{LINKS}/{link['id']}", headers=other), 404, "not_found")
    assert client.get(LINKS, headers=other).get_json() == []
    create_project(client, auth, name="Second", slug="second")
    second = f"{context_url('second')}/links/{link['id']}"
    assert_problem(client.delete(second, headers=auth), 404, "not_found")
    assert client.get(local(link["url"])).status_code == 200  # still live
    assert_problem(
        client.delete(f"{LINKS}/lnk_aaaaaaaaaaaaaaaaaaaa", headers=auth), 404, "not_found"
    )


def test_suspension_deletion_and_pruning_stop_a_link(
    app, client, auth, tenant, project, platform_key
):
    link = make_link(client, auth, revision=1)
    platform = bearer(platform_key)
    url = f"/api/v1/tenants/{tenant.id}"
    assert client.patch(url, json={"status": "suspended"}, headers=platform).status_code == 200
    refused(client.get(local(link["url"])))
    assert client.patch(url, json={"status": "active"}, headers=platform).status_code == 200
    assert client.get(local(link["url"])).status_code == 200

    # Pruning revision 1 away (history now starts at 2) stops a link to it, not one to 2.
    second = make_link(client, auth, revision=2, path="a.md")
    with app.app_context():
        project_id = Project.get(Project.slug == P).id
        assert pruning.prune_project(project_id, keep=1).history_starts_at == 2
    refused(client.get(local(link["url"])))
    assert client.get(local(second["url"])).status_code == 200

    assert client.delete(f"/api/v1/projects/{P}", headers=auth).status_code == 204
    refused(client.get(local(second["url"])))
    with app.app_context():
        assert links.ContextLink.select().count() == 0


def test_keys_rotate_and_a_retired_key_ends_its_links(app, client, auth, project):
    with app.app_context():
        before = link_keys.load()
    old = make_link(client, auth, revision=1)
    assert old["url"].split("token=")[1].startswith(before.active_id + ".")
    # A restart with a new active key beside the old one: old links still work, new ones
    # are signed with the new key.
    rotated = link_keys.LinkKeys("k2", {**before.keys, "k2": b"\x07" * 32})
    stash(app)[link_keys._KEYS] = rotated
    new = make_link(client, auth, revision=1)
    assert new["url"].split("token=")[1].startswith("k2.")
    assert client.get(local(old["url"])).status_code == 200
    assert client.get(local(new["url"])).status_code == 200
    # The old key retired: its links are refused, the new key's are not.
    stash(app)[link_keys._KEYS] = link_keys.LinkKeys("k2", {"k2": b"\x07" * 32})
    refused(client.get(local(old["url"])))
    assert client.get(local(new["url"])).status_code == 200


def test_configured_keys_are_checked_at_start(app):
    from ctxcloud import ConfigError

    good = link_keys.parse('{"a": "' + "A" * 43 + '", "b": "' + "B" * 43 + '"}', "b")
    assert good.active_id == "b" and len(good.keys["a"]) == 32
    for configured, active in [
        ("not json", None),
        ("{}", None),
        ('{"a": "short"}', None),
        ('{"a.b": "' + "A" * 43 + '"}', None),
        ('{"a": "' + "A" * 43 + '"}', "missing"),
        ('{"a": 5}', None),
    ]:
        with pytest.raises(ConfigError) as raised:
            link_keys.parse(configured, active)
        assert "A" * 20 not in str(raised.value)


def test_the_derived_keys_follow_the_master_key(app):
    from ctxcloud import derived_keys

    with app.app_context():
        active, keys = derived_keys("links-v1")
        assert active in keys and len(keys[active]) == 32
        other_active, other = derived_keys("links-v2")
        assert set(other).isdisjoint(keys) and other[other_active] != keys[active]


@pytest.fixture
def few_link_reads(app_config):
    """Three reads through links per client address and minute (before the app is made)."""
    app_config["RATE_LIMIT_LINKS"] = "3/minute"


def test_reads_through_links_are_limited_per_client_address(few_link_reads, client, auth, project):
    link = make_link(client, auth, revision=1)
    answers = [client.get(local(link["url"])).status_code for _ in range(3)]
    assert answers == [200, 200, 200]
    limited = client.get(under(link["url"], "/entries/a.md"))  # one budget for every link route
    assert_problem(limited, 429, "rate_limited")
    assert int(limited.headers["Retry-After"]) > 0
    assert client.get(LINKS, headers=auth).status_code == 200  # credentials have their own


def test_deleting_the_tenant_ends_its_links(app, client, auth, tenant, project, platform_key):
    link = make_link(client, auth, revision=1)
    deleted = client.delete(f"/api/v1/tenants/{tenant.id}", headers=bearer(platform_key))
    assert deleted.status_code in (202, 204), deleted.get_data(as_text=True)
    refused(client.get(local(link["url"])))


@pytest.mark.parametrize(
    "config",
    [
        {"RATE_LIMIT_LINKS": "lots"},
        {"RATE_LIMIT_LINKS": 5},
        {"LINK_SIGNING_KEYS": '{"k": "short"}'},
        {"LINK_SIGNING_KEYS": {"k": "A" * 43}, "ACTIVE_LINK_SIGNING_KEY": "other"},
    ],
)
def test_bad_link_settings_stop_the_start(app_config, config):
    from ctxcloud import ConfigError, create_app

    with pytest.raises(ConfigError) as raised:
        create_app({**app_config, **config})
    assert "CTXCLOUD_" in str(raised.value) and "A" * 20 not in str(raised.value)


def test_configured_link_keys_sign_the_links(app_config):
    from tests import stack

    keys = {"links-b": "B" * 43, "links-a": "A" * 43}
    config = {**app_config, "LINK_SIGNING_KEYS": keys, "ACTIVE_LINK_SIGNING_KEY": "links-a"}
    with stack.migrated_app(config) as configured:
        with configured.app_context():
            loaded = link_keys.load()
        assert loaded.active_id == "links-a" and set(loaded.keys) == set(keys)


def test_link_events_are_stored_and_queryable_without_the_token(client, auth, project):
    link = make_link(client, auth, revision=1)
    assert client.get(local(link["url"])).status_code == 200
    assert client.delete(f"{LINKS}/{link['id']}", headers=auth).status_code == 204
    response = client.get(
        "/api/v1/audit-events?type=link.created,link.used,link.revoked", headers=auth
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    events = response.get_json()
    assert sorted(e["type"] for e in events) == ["link.created", "link.revoked", "link.used"]
    assert link["id"] in response.get_data(as_text=True)
    assert link["url"].split("token=")[1] not in response.get_data(as_text=True)


@pytest.fixture
def few_stored_reads(app_config):
    app_config["AUDIT_DENIALS_PER_MINUTE"] = 2
    return app_config


def test_stored_link_reads_are_bounded_per_tenant_and_count_what_was_left_out(
    few_stored_reads, app, client, auth, project
):
    """Anyone holding a link can read it as fast as the rate limit lets them: its reads are
    stored up to the audit bound per minute, the rest logged, and the next stored one says how
    many were left out."""
    link = make_link(client, auth, revision=1)
    for _ in range(5):
        assert client.get(local(link["url"])).status_code == 200
    used = "/api/v1/audit-events?type=link.used"
    assert len(client.get(used, headers=auth).get_json()) == 2
    from ctxcloud.plugins.audit_log.store import BUDGET

    app.extensions["ctxcloud"].stash[BUDGET].window -= 1  # a later minute
    assert client.get(local(link["url"])).status_code == 200
    newest = client.get(used, headers=auth).get_json()[0]
    assert newest["details"]["suppressed"] == 3
