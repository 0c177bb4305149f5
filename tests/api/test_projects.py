"""Projects: CRUD by id or slug, slugs, pagination, validation, tenant and key scoping, deletion."""

from __future__ import annotations

import json

import pytest

from tests.api.test_core import assert_problem
from tests.support.context import (
    API,
    context_url,
    create_project,
    entry_url,
    object_keys_of,
    project_url,
    put_entry,
    stored_keys,
)
from tests.support.factories import bearer, login, make_api_key, make_user

PROJECTS = f"{API}/projects"


@pytest.fixture
def auth(app, tenant) -> dict:
    """An owner-scoped API key of `tenant`."""
    return bearer(make_api_key(app, tenant)[1])


@pytest.fixture
def other_auth(app, other_tenant) -> dict:
    return bearer(make_api_key(app, other_tenant)[1])


# CRUD ---------------------------------------------------------------------------------------


def test_create_read_update_delete(client, auth):
    created = client.post(
        PROJECTS,
        json={
            "name": "Engineering handbook",
            "description": "How we build things",
            "metadata": {"team": "platform", "tags": ["a", "b"], "nested": {"n": 1}},
        },
        headers=auth,
    )
    assert created.status_code == 201
    project = created.get_json()
    assert project["id"].startswith("prj_")
    assert project["slug"] == "engineering-handbook"
    assert project["name"] == "Engineering handbook"
    assert project["description"] == "How we build things"
    assert project["metadata"] == {"team": "platform", "tags": ["a", "b"], "nested": {"n": 1}}
    assert project["revision"] == 0
    assert project["created_at"].endswith("Z") and project["updated_at"].endswith("Z")

    # Read by id and by slug: the same project.
    by_id = client.get(project_url(project["id"]), headers=auth)
    by_slug = client.get(project_url("engineering-handbook"), headers=auth)
    assert by_id.status_code == by_slug.status_code == 200
    assert by_id.get_json() == by_slug.get_json() == project

    changed = client.patch(
        project_url("engineering-handbook"),
        json={"name": "Handbook", "slug": "handbook", "description": "", "metadata": {"v": 2}},
        headers=auth,
    )
    assert changed.status_code == 200
    body = changed.get_json()
    assert body["id"] == project["id"]
    assert (body["name"], body["slug"], body["description"]) == ("Handbook", "handbook", "")
    assert body["metadata"] == {"v": 2}
    assert client.get(project_url("handbook"), headers=auth).get_json()["id"] == project["id"]
    assert_problem(client.get(project_url("engineering-handbook"), headers=auth), 404, "not_found")

    # A PATCH changes only what it names.
    partial = client.patch(project_url(project["id"]), json={"description": "d"}, headers=auth)
    assert partial.status_code == 200
    assert partial.get_json()["name"] == "Handbook" and partial.get_json()["metadata"] == {"v": 2}

    deleted = client.delete(project_url("handbook"), headers=auth)
    assert deleted.status_code == 204 and deleted.data == b""
    for ref in (project["id"], "handbook"):
        assert_problem(client.get(project_url(ref), headers=auth), 404, "not_found")
        assert_problem(client.delete(project_url(ref), headers=auth), 404, "not_found")
        assert_problem(
            client.patch(project_url(ref), json={"name": "x"}, headers=auth), 404, "not_found"
        )


def test_unknown_project_is_404(client, auth):
    for ref in ("prj_aaaaaaaaaaaaaaaaaaaa", "nope", "prj_"):
        assert_problem(client.get(project_url(ref), headers=auth), 404, "not_found")
        assert_problem(client.get(context_url(ref), headers=auth), 404, "not_found")


def test_requests_without_a_credential_are_401(client, auth):
    create_project(client, auth, slug="p")
    for response in (
        client.get(PROJECTS),
        client.post(PROJECTS, json={"name": "x"}),
        client.get(project_url("p")),
        client.patch(project_url("p"), json={"name": "x"}),
        client.delete(project_url("p")),
    ):
        assert_problem(response, 401, "unauthorized")
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


# Slugs --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "slug"),
    [
        ("Engineering Handbook", "engineering-handbook"),
        ("  Ünïcödé -- Nåme!! ", "unicode-name"),
        ("ADR's & RFCs (2026)", "adr-s-rfcs-2026"),
        ("!!!", "project"),
        ("日本語", "project"),
        ("x" * 200, "x" * 63),
        ("a" * 62 + " b", "a" * 62),
    ],
)
def test_slug_is_derived_from_the_name(client, auth, name, slug):
    assert create_project(client, auth, name=name)["slug"] == slug


def test_derived_slugs_are_made_unique_and_explicit_ones_conflict(client, auth, other_auth):
    first = create_project(client, auth, name="Handbook")
    second = create_project(client, auth, name="Handbook")
    third = create_project(client, auth, name="handbook!")
    assert [first["slug"], second["slug"], third["slug"]] == [
        "handbook",
        "handbook-2",
        "handbook-3",
    ]
    long_a = create_project(client, auth, name="y" * 70)
    long_b = create_project(client, auth, name="y" * 70)
    assert long_a["slug"] == "y" * 63
    assert long_b["slug"] != long_a["slug"] and len(long_b["slug"]) <= 63

    # An explicit slug that is taken is a 409, on create and on rename.
    body = assert_problem(
        client.post(PROJECTS, json={"name": "Other", "slug": "handbook"}, headers=auth),
        409,
        "conflict",
    )
    assert "handbook" in body["detail"]
    assert_problem(
        client.patch(project_url(second["id"]), json={"slug": "handbook"}, headers=auth),
        409,
        "conflict",
    )
    assert client.get(project_url(second["id"]), headers=auth).get_json()["slug"] == "handbook-2"
    # Renaming to its own slug is no conflict.
    same = client.patch(project_url("handbook"), json={"slug": "handbook"}, headers=auth)
    assert same.status_code == 200

    # Slugs are unique per tenant only.
    assert create_project(client, other_auth, name="x", slug="handbook")["slug"] == "handbook"


@pytest.mark.parametrize(
    "slug", ["Bad Slug", "UPPER", "-lead", "trail-", "under_score", "a" * 64, "", "prj_x", "é"]
)
def test_invalid_explicit_slug_is_422(client, auth, slug):
    body = assert_problem(
        client.post(PROJECTS, json={"name": "x", "slug": slug}, headers=auth),
        422,
        "validation_error",
    )
    assert "slug" in body["errors"]
    project = create_project(client, auth, name="ok")
    body = assert_problem(
        client.patch(project_url(project["id"]), json={"slug": slug}, headers=auth),
        422,
        "validation_error",
    )
    assert "slug" in body["errors"]


# Pagination ---------------------------------------------------------------------------------


def test_list_is_paginated_with_x_pagination(client, auth):
    ids = [create_project(client, auth, name=f"p{i}")["id"] for i in range(7)]

    page2 = client.get(f"{PROJECTS}?page=2&page_size=3", headers=auth)
    assert page2.status_code == 200
    assert [p["id"] for p in page2.get_json()] == ids[3:6]  # oldest first
    pagination = json.loads(page2.headers["X-Pagination"])
    assert pagination["total"] == 7
    assert pagination["total_pages"] == 3
    assert pagination["page"] == 2
    assert pagination["next_page"] == 3
    assert pagination["previous_page"] == 1

    last = client.get(f"{PROJECTS}?page=3&page_size=3", headers=auth)
    assert [p["id"] for p in last.get_json()] == ids[6:]
    assert "next_page" not in json.loads(last.headers["X-Pagination"])

    everything = client.get(f"{PROJECTS}?page_size=1000", headers=auth)
    assert everything.status_code == 200
    assert [p["id"] for p in everything.get_json()] == ids
    # API.md: page_size may be up to 1000, not only flask-smorest's default of 100.
    assert client.get(f"{PROJECTS}?page_size=500", headers=auth).status_code == 200
    assert client.get(f"{PROJECTS}?page=9&page_size=3", headers=auth).get_json() == []


@pytest.mark.parametrize("query", ["page_size=1001", "page_size=0", "page=0", "page=-1", "page=x"])
def test_bad_pagination_is_422(client, auth, query):
    body = assert_problem(client.get(f"{PROJECTS}?{query}", headers=auth), 422, "validation_error")
    assert query.split("=")[0] in body["errors"]


def test_page_size_bound_is_documented(client):
    spec = client.get(f"{API}/openapi.json").get_json()
    params = {p["name"]: p for p in spec["paths"][PROJECTS]["get"]["parameters"]}
    assert params["page_size"]["schema"]["maximum"] == 1000


# Validation ---------------------------------------------------------------------------------


def test_metadata_limits(client, auth):
    at_limit = {"k": "x" * (64 * 1024 - 20)}
    assert (
        client.post(PROJECTS, json={"name": "a", "metadata": at_limit}, headers=auth).status_code
        == 201
    )
    too_big = {"k": "x" * (64 * 1024)}
    for response in (
        client.post(PROJECTS, json={"name": "b", "metadata": too_big}, headers=auth),
        client.patch(project_url("a"), json={"metadata": too_big}, headers=auth),
        client.post(
            PROJECTS, json={"name": "c", "metadata": ["not", "an", "object"]}, headers=auth
        ),
        client.post(PROJECTS, json={"name": "d", "metadata": "text"}, headers=auth),
        client.post(PROJECTS, json={"name": "e", "metadata": {"k" * 201: 1}}, headers=auth),
    ):
        body = assert_problem(response, 422, "validation_error")
        assert "metadata" in body["errors"]
    # The limit is on the stored JSON's UTF-8 bytes (not on \u-escaped text).
    wide = {"k": "€" * 25_000}  # 75 kB of UTF-8
    body = assert_problem(
        client.post(PROJECTS, json={"name": "f", "metadata": wide}, headers=auth),
        422,
        "validation_error",
    )
    assert "metadata" in body["errors"]
    fits = {"k": "€" * 15_000}  # 45 kB of UTF-8, 90 kB if every character were escaped
    assert (
        client.post(PROJECTS, json={"name": "g", "metadata": fits}, headers=auth).status_code == 201
    )
    assert client.get(project_url("g"), headers=auth).get_json()["metadata"] == fits
    assert client.get(project_url("a"), headers=auth).get_json()["metadata"] == at_limit
    assert [p["slug"] for p in client.get(PROJECTS, headers=auth).get_json()] == ["a", "g"]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "name"),
        ({"name": ""}, "name"),
        ({"name": "x" * 201}, "name"),
        ({"name": 5}, "name"),
        ({"name": "x", "description": "d" * 10001}, "description"),
        ({"name": "x", "bogus": 1}, "bogus"),
        ({"name": "x", "id": "prj_mine"}, "id"),
        ({"name": "x", "revision": 5}, "revision"),
    ],
)
def test_invalid_create_is_422_naming_the_field(client, auth, payload, field):
    body = assert_problem(
        client.post(PROJECTS, json=payload, headers=auth), 422, "validation_error"
    )
    assert field in body["errors"]
    assert client.get(PROJECTS, headers=auth).get_json() == []


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"bogus": 1}, "bogus"),
        ({"name": ""}, "name"),
        ({"id": "prj_x"}, "id"),
        ({"name": None}, "name"),
    ],
)
def test_invalid_update_is_422_naming_the_field(client, auth, payload, field):
    project = create_project(client, auth, name="Keep")
    response = client.patch(project_url(project["id"]), json=payload, headers=auth)
    body = assert_problem(response, 422, "validation_error")
    assert field in body["errors"]
    assert client.get(project_url(project["id"]), headers=auth).get_json() == project


@pytest.mark.parametrize("raw", [b"{not json", b'{"name": "x",}', b"\xff\xfe", b""])
def test_malformed_json_is_a_problem(client, auth, raw):
    response = client.post(PROJECTS, data=raw, headers={**auth, "Content-Type": "application/json"})
    assert response.status_code in (400, 422)
    assert_problem(response, response.status_code, response.get_json(force=True)["code"])
    assert client.get(PROJECTS, headers=auth).get_json() == []


def test_json_body_that_is_not_an_object_is_422(client, auth):
    response = client.post(PROJECTS, json=["name", "x"], headers=auth)
    assert_problem(response, 422, "validation_error")


# Tenants, restricted keys, roles --------------------------------------------------------------


def test_another_tenants_project_is_404_never_403(client, auth, other_auth):
    mine = create_project(client, auth, name="Secret", slug="secret")
    put_entry(client, auth, "secret", "a.txt", b"private", expect=201)
    for ref in (mine["id"], "secret"):
        for response in (
            client.get(project_url(ref), headers=other_auth),
            client.patch(project_url(ref), json={"name": "pwned"}, headers=other_auth),
            client.delete(project_url(ref), headers=other_auth),
            client.get(context_url(ref), headers=other_auth),
            client.get(entry_url(ref, "a.txt"), headers=other_auth),
            client.put(entry_url(ref, "b.txt"), data=b"x", headers=other_auth),
            client.delete(entry_url(ref, "a.txt"), headers=other_auth),
            client.get(f"{context_url(ref)}/revisions", headers=other_auth),
            client.get(f"{context_url(ref)}/revisions/1", headers=other_auth),
            client.post(
                f"{context_url(ref)}/commits",
                json={"put": [{"path": "c", "content": "x"}]},
                headers=other_auth,
            ),
        ):
            assert_problem(response, 404, "not_found")
    assert client.get(PROJECTS, headers=other_auth).get_json() == []
    # Untouched for its owner.
    project = client.get(project_url("secret"), headers=auth).get_json()
    assert project["name"] == "Secret" and project["revision"] == 1


def test_key_restricted_to_a_project_sees_others_as_absent(app, client, auth, tenant):
    a = create_project(client, auth, name="A", slug="a")
    b = create_project(client, auth, name="B", slug="b")
    put_entry(client, auth, "b", "x", b"b's", expect=201)
    restricted = bearer(make_api_key(app, tenant, project_ids=[a["id"]])[1])

    assert client.get(project_url("a"), headers=restricted).status_code == 200
    listed = client.get(PROJECTS, headers=restricted)
    assert [p["id"] for p in listed.get_json()] == [a["id"]]
    assert json.loads(listed.headers["X-Pagination"])["total"] == 1
    for ref in (b["id"], "b"):
        assert_problem(client.get(project_url(ref), headers=restricted), 404, "not_found")
        assert_problem(client.get(context_url(ref), headers=restricted), 404, "not_found")
        assert_problem(client.get(entry_url(ref, "x"), headers=restricted), 404, "not_found")
        assert_problem(
            client.put(entry_url(ref, "y"), data=b"1", headers=restricted), 404, "not_found"
        )
        assert_problem(
            client.patch(project_url(ref), json={"name": "z"}, headers=restricted), 404, "not_found"
        )
        assert_problem(client.delete(project_url(ref), headers=restricted), 404, "not_found")
    put_entry(client, restricted, "a", "y", b"ok", expect=201)
    assert client.get(project_url("b"), headers=auth).get_json()["revision"] == 1
    # It could not see a project it made, so it cannot make one.
    created = client.post(PROJECTS, json={"name": "C"}, headers=restricted)
    assert_problem(created, 403, "forbidden")
    assert len(client.get(PROJECTS, headers=auth).get_json()) == 2


def test_viewer_key_reads_but_cannot_write(app, client, auth, tenant):
    create_project(client, auth, name="P", slug="p")
    put_entry(client, auth, "p", "a", b"1", expect=201)
    viewer = bearer(make_api_key(app, tenant, scopes=["projects:read", "context:read"])[1])
    assert client.get(PROJECTS, headers=viewer).status_code == 200
    assert client.get(project_url("p"), headers=viewer).status_code == 200
    assert client.get(context_url("p"), headers=viewer).status_code == 200
    assert client.get(entry_url("p", "a"), headers=viewer).data == b"1"
    for response in (
        client.post(PROJECTS, json={"name": "n"}, headers=viewer),
        client.patch(project_url("p"), json={"name": "n"}, headers=viewer),
        client.delete(project_url("p"), headers=viewer),
        client.put(entry_url("p", "b"), data=b"2", headers=viewer),
        client.delete(entry_url("p", "a"), headers=viewer),
        client.post(
            f"{context_url('p')}/commits",
            json={"put": [{"path": "c", "content": "3"}]},
            headers=viewer,
        ),
    ):
        assert_problem(response, 403, "forbidden")
    assert client.get(project_url("p"), headers=auth).get_json()["revision"] == 1

    # A user with the viewer role, logged in: the same.
    user, password = make_user(app, tenant, role="viewer")
    token = login(client, tenant, user.username, password)["access_token"]
    assert client.get(entry_url("p", "a"), headers=bearer(token)).data == b"1"
    assert_problem(
        client.put(entry_url("p", "b"), data=b"2", headers=bearer(token)), 403, "forbidden"
    )
    assert_problem(
        client.post(PROJECTS, json={"name": "n"}, headers=bearer(token)), 403, "forbidden"
    )

    # A member-like key writes context but cannot manage projects.
    member = bearer(
        make_api_key(app, tenant, scopes=["projects:read", "context:read", "context:write"])[1]
    )
    put_entry(client, member, "p", "b", b"2", expect=201)
    assert_problem(client.delete(project_url("p"), headers=member), 403, "forbidden")


# Deletion ------------------------------------------------------------------------------------


def test_deleting_a_project_deletes_its_context_and_stored_objects(app, client, auth):
    doomed = create_project(client, auth, name="Doomed", slug="doomed")
    kept = create_project(client, auth, name="Kept", slug="kept")
    put_entry(client, auth, "doomed", "a.txt", b"one", expect=201)
    put_entry(client, auth, "doomed", "a.txt", b"two", expect=200)
    put_entry(client, auth, "doomed", "dir/b.bin", bytes(range(256)), expect=201)
    assert client.delete(entry_url("doomed", "dir/b.bin"), headers=auth).status_code == 204
    commit = client.post(
        f"{context_url('doomed')}/commits",
        json={"put": [{"path": "c.md", "content": "# c"}, {"path": "d", "content_base64": "AAE="}]},
        headers=auth,
    )
    assert commit.status_code == 201
    put_entry(client, auth, "kept", "a.txt", b"survivor", expect=201)

    doomed_keys = object_keys_of(app, doomed["id"])
    kept_keys = object_keys_of(app, kept["id"])
    assert len(doomed_keys) == 5 and len(kept_keys) == 1
    assert doomed_keys | kept_keys == stored_keys(app)

    assert client.delete(project_url("doomed"), headers=auth).status_code == 204

    # Every stored object of the project is gone; the other project's object stays.
    assert stored_keys(app) == kept_keys
    from ctxcloud.plugins.context.models import Entry, EntryVersion, Revision

    with app.app_context():
        for model in (Entry, EntryVersion, Revision):
            assert model.select().where(model.project == doomed["id"]).count() == 0
        assert EntryVersion.select().where(EntryVersion.project == kept["id"]).count() == 1
    assert client.get(entry_url("kept", "a.txt"), headers=auth).data == b"survivor"

    # A new project under the old slug starts empty.
    again = create_project(client, auth, name="Doomed", slug="doomed")
    assert again["id"] != doomed["id"] and again["revision"] == 0
    manifest = client.get(context_url("doomed"), headers=auth).get_json()
    assert manifest["entries"] == [] and manifest["revision"] == 0
    assert client.get(f"{context_url('doomed')}/revisions", headers=auth).get_json() == []
