"""The changes feed: what changed after revision N, paginated, with pruned history and bad input."""

from __future__ import annotations

import json

import pytest

from tests.support.context import (
    context_url,
    create_project,
    entry_url,
    put_entry,
    sha256,
)
from tests.support.factories import bearer, make_api_key


@pytest.fixture
def auth(owner_key):
    return bearer(owner_key)


def commit_url(project: str) -> str:
    return context_url(project) + "/commits"


def changes_url(project: str, **query) -> str:
    return (
        context_url(project).rstrip("/")
        + "/changes?"
        + "&".join(f"{name}={value}" for name, value in query.items())
    )


def feed(client, auth, project, **query):
    response = client.get(changes_url(project, **query), headers=auth)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()


def make_history(client, auth) -> dict:
    project = create_project(client, auth, slug="p")
    put_entry(client, auth, "p", "a.md", b"a1", expect=201)  # r1
    put_entry(client, auth, "p", "b.md", b"bee", expect=201)  # r2
    response = client.post(
        commit_url("p"),
        json={"message": "two", "put": [{"path": "c.md", "content": "cc"}], "delete": ["a.md"]},
        headers=auth,
    )  # r3
    assert response.status_code == 201, response.get_data(as_text=True)
    assert client.delete(entry_url("p", "b.md"), headers=auth).status_code == 204  # r4
    return project


def test_the_feed_lists_every_change_after_since_by_revision_then_path(client, auth):
    make_history(client, auth)
    body = feed(client, auth, "p", since=0)
    assert body == {
        "from_revision": 0,
        "revision": 4,
        "history_starts_at": 0,
        "changes": [
            {"revision": 1, "path": "a.md", "action": "put", "size": 2, "sha256": sha256(b"a1")},
            {"revision": 2, "path": "b.md", "action": "put", "size": 3, "sha256": sha256(b"bee")},
            {"revision": 3, "path": "a.md", "action": "delete"},
            {"revision": 3, "path": "c.md", "action": "put", "size": 2, "sha256": sha256(b"cc")},
            {"revision": 4, "path": "b.md", "action": "delete"},
        ],
    }
    later = feed(client, auth, "p", since=3)
    assert later["from_revision"] == 3 and later["revision"] == 4
    assert later["changes"] == [{"revision": 4, "path": "b.md", "action": "delete"}]
    # Caught up: nothing after the head, and the answer says where the caller is.
    assert feed(client, auth, "p", since=4) == {
        "from_revision": 4,
        "revision": 4,
        "history_starts_at": 0,
        "changes": [],
    }


def test_the_feed_matches_the_revision_log(client, auth):
    make_history(client, auth)
    log = client.get(context_url("p") + "/revisions?page_size=100", headers=auth).get_json()
    logged = sorted(
        (revision["revision"], change["path"], change["action"])
        for revision in log
        for change in revision["changes"]
    )
    listed = [
        (c["revision"], c["path"], c["action"]) for c in feed(client, auth, "p", since=0)["changes"]
    ]
    assert listed == logged


def test_the_feed_is_paginated_as_every_list(client, auth):
    make_history(client, auth)
    whole = feed(client, auth, "p", since=0)["changes"]
    pages = []
    for page in (1, 2, 3):
        response = client.get(changes_url("p", since=0, page=page, page_size=2), headers=auth)
        assert response.status_code == 200
        pagination = json.loads(response.headers["X-Pagination"])
        assert pagination["total"] == 5 and pagination["total_pages"] == 3
        pages.extend(response.get_json()["changes"])
    assert pages == whole
    past = client.get(changes_url("p", since=0, page=9, page_size=2), headers=auth)
    assert past.status_code == 200 and past.get_json()["changes"] == []
    assert client.get(changes_url("p", since=0, page_size=1001), headers=auth).status_code == 422


def test_a_pruned_since_is_410_with_where_history_starts(app, client, auth):
    make_history(client, auth)
    result = app.test_cli_runner().invoke(args=["context", "prune", "--json", "--keep", "2"])
    assert result.exit_code == 0, result.output  # keeps revisions 3 and 4
    response = client.get(changes_url("p", since=2), headers=auth)
    assert response.status_code == 410
    problem = response.get_json()
    assert problem["code"] == "history_pruned"
    assert problem["history_starts_at"] == 3 and problem["revision"] == 4
    # From where history starts, the feed is whole again.
    body = feed(client, auth, "p", since=3)
    assert body["history_starts_at"] == 3
    assert body["changes"] == [{"revision": 4, "path": "b.md", "action": "delete"}]


def test_a_since_past_the_head_is_409(client, auth):
    make_history(client, auth)
    response = client.get(changes_url("p", since=5), headers=auth)
    assert response.status_code == 409
    assert response.get_json()["code"] == "revision_ahead"
    assert response.get_json()["revision"] == 4


@pytest.mark.parametrize(
    "query",
    [
        "",
        "since=",
        "since=-1",
        "since=abc",
        "since=1.5",
        f"since={2**63}",
        "since=0&wait=0",
        "since=0&wait=-1",
        "since=0&wait=61",
        "since=0&wait=nan",
        "since=0&wait=inf",
        "since=0&wait=soon",
    ],
)
def test_bad_parameters_are_a_422_problem_and_never_wait(client, auth, query):
    create_project(client, auth, slug="p")
    url = context_url("p") + "/changes?" + query
    response = client.get(url, headers=auth)
    assert response.status_code == 422, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    assert response.get_json()["code"] == "validation_error"


def test_another_tenants_project_is_404_and_a_read_permission_is_needed(
    app, client, auth, tenant, other_tenant
):
    project = make_history(client, auth)
    stranger = bearer(make_api_key(app, other_tenant)[1])
    for ref in ("p", project["id"]):
        response = client.get(changes_url(ref, since=0), headers=stranger)
        assert response.status_code == 404
        assert "a.md" not in response.get_data(as_text=True)
    writer_only = bearer(make_api_key(app, tenant, scopes=["context:write"])[1])
    assert client.get(changes_url("p", since=0), headers=writer_only).status_code == 403
    assert client.get(changes_url("p", since=0)).status_code == 401


def test_the_head_read_bounds_the_answer(client, auth):
    """`revision` is the head the answer was read at: nothing after it is listed."""
    make_history(client, auth)
    body = feed(client, auth, "p", since=0)
    assert max(change["revision"] for change in body["changes"]) == body["revision"]
