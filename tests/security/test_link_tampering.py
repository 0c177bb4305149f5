"""A signed link reaches exactly what it names, and any change to its URL reaches nothing.

Every part of a link's URL is tampered with: the token's bytes, its key id, the link id, the
path, the revision, the project, the expiry, case, encoding, traversal and double slashes;
and the row behind it is changed under the signature (revision, path, project, tenant,
expiry). Each is the same 404 `not_found` "No such link." problem, with no header or detail
that tells one refusal from another (docs/links.md). Percent-encoding that decodes to the
very same bytes is the same URL (HTTP says so), and is not a tampering.
"""

from __future__ import annotations

import datetime
from urllib.parse import quote, urlsplit

import pytest

from ctxcloud.plugins.context import links
from ctxcloud.plugins.context.links import ContextLink
from tests.support.context import context_url, create_project
from tests.support.factories import bearer, make_api_key

P = "handbook"
DAY = 24 * 3600
SAME_ANSWER_HEADERS = {"Content-Type", "Content-Length"}


@pytest.fixture
def auth(app, tenant) -> dict:
    return bearer(make_api_key(app, tenant)[1])


@pytest.fixture
def world(client, auth) -> dict:
    """Two projects; `handbook` at revision 2 (a.md changed), a link to it at revision 1, a
    link to a.md at 1, and a link to `other`."""
    create_project(client, auth, name="Handbook", slug=P)
    create_project(client, auth, name="Other", slug="other")
    assert (
        client.patch(
            "/api/v1/tenant/settings", json={"links_enabled": True}, headers=auth
        ).status_code
        == 200
    )
    for project, files in [
        (P, {"a.md": "one", "docs/b.md": "bee"}),
        (P, {"a.md": "two"}),
        ("other", {"secret.md": "other project"}),
    ]:
        put = [{"path": path, "content": text} for path, text in files.items()]
        response = client.post(f"{context_url(project)}/commits", json={"put": put}, headers=auth)
        assert response.status_code == 201

    def make(project: str, **body) -> dict:
        response = client.post(
            f"{context_url(project)}/links", json={"expires_in": DAY, **body}, headers=auth
        )
        assert response.status_code == 201, response.get_data(as_text=True)
        made = response.get_json()
        parts = urlsplit(made["url"])
        made["path_part"], made["token"] = parts.path, parts.query.removeprefix("token=")
        return made

    return {
        "whole": make(P, revision=1),
        "entry": make(P, revision=1, path="a.md"),
        "other": make("other", revision=1),
    }


def url(path: str, token: str | None, extra: str = "") -> str:
    query = "" if token is None else f"?token={token}"
    if extra:
        query += ("&" if query else "?") + extra
    return path + query


def flip(text: str, index: int) -> str:
    """`text` with the character at `index` changed to another of the URL-safe alphabet."""
    char = text[index]
    return text[:index] + ("A" if char != "A" else "B") + text[index + 1 :]


def assert_refused(response, reference=None) -> None:
    assert response.status_code == 404, (response.status_code, response.get_data(as_text=True))
    body = response.get_json(force=True)
    assert body["code"] == "not_found" and body["detail"] == "No such link."
    assert set(body) == {"type", "title", "status", "detail", "code", "request_id"}
    for name in ("ETag", "Entry-Revision", "Entry-SHA256", "Set-Cookie", "Content-Range"):
        assert name not in response.headers
    if reference is not None:
        same = {k: v for k, v in body.items() if k != "request_id"}
        ref = reference.get_json(force=True)
        assert same == {k: v for k, v in ref.items() if k != "request_id"}
        for name in SAME_ANSWER_HEADERS:
            assert response.headers.get(name) == reference.headers.get(name)


def test_the_untampered_urls_work(client, world):
    whole, entry = world["whole"], world["entry"]
    assert client.get(url(whole["path_part"], whole["token"])).status_code == 200
    assert client.get(url(whole["path_part"] + "/entries/a.md", whole["token"])).data == b"one"
    assert client.get(url(entry["path_part"], entry["token"])).data == b"one"


def tampered_urls(world) -> dict[str, str]:
    whole, entry, other = world["whole"], world["entry"], world["other"]
    base, token = whole["path_part"], whole["token"]
    key_id, mac = token.split(".")
    link_id = base.rsplit("/", 1)[1]
    urls = {
        "no token": url(base, None),
        "empty token": url(base, ""),
        "token without key id": url(base, mac),
        "token without signature": url(base, key_id + "."),
        "token truncated": url(base, token[:-1]),
        "token extended": url(base, token + "A"),
        "key id unknown": url(base, "nokey." + mac),
        "key id upper case": url(base, key_id.upper() + "." + mac),
        "key id empty": url(base, "." + mac),
        "signature upper case": url(base, key_id + "." + mac.upper()),
        "token double encoded": url(base, "".join(f"%25{ord(c):02X}" for c in token)),
        "token with a NUL": url(base, token + "%00"),
        "token padded": url(base, token + "="),
        "token with spaces": url(base, "%20" + token),
        "token of another link": url(base, other["token"]),
        "token of the entry link": url(base, entry["token"]),
        "link id of another project": url(other["path_part"], token),
        "link id upper case": url(base.replace(link_id, link_id.upper()), token),
        "link id unknown": url(base.replace(link_id, "lnk_" + "a" * 20), token),
        "link id truncated": url(base[:-1], token),
        "link id with a trailing slash": url(base + "/", token),
        "link id doubled slash": url(base.replace("/links/", "/links//"), token),
        "link id traversal": url(f"{base}/../{link_id}", token),
        "link id encoded traversal": url(f"{base}/%2e%2e/{link_id}", token),
        "path of a path link": url(entry["path_part"] + "/entries/docs/b.md", entry["token"]),
        "own path of a path link": url(entry["path_part"] + "/entries/a.md", entry["token"]),
        "render of a path link": url(
            entry["path_part"] + "/render", entry["token"], "max_tokens=100"
        ),
        "traversal to another project": url(base + "/entries/../../other/entries/secret.md", token),
        "encoded traversal": url(base + "/entries/%2e%2e/a.md", token),
        "dot segment": url(base + "/entries/./a.md", token),
        "double slash in path": url(base + "/entries/docs//b.md", token),
        "leading slash in path": url(base + "/entries//a.md", token),
        "backslash in path": url(base + "/entries/docs%5Cb.md", token),
        "NUL in path": url(base + "/entries/a.md%00", token),
        "not UTF-8 in path": url(base + "/entries/%ff.md", token),
        "path case": url(base + "/entries/A.md", token),
        "path of another project": url(base + "/entries/secret.md", token),
        "empty path": url(base + "/entries/", token),
        "render without a token": url(base + "/render", None, "max_tokens=100"),
        "render with another token": url(base + "/render", other["token"], "max_tokens=100"),
    }
    standard = mac.replace("-", "+").replace("_", "/")
    if standard != mac:  # the same bytes in standard base64 (only when it differs)
        urls["signature in standard base64"] = url(base, key_id + "." + quote(standard, safe=""))
    for index in (0, len(mac) // 2, len(mac) - 1):
        urls[f"signature byte {index} changed"] = url(base, key_id + "." + flip(mac, index))
    for index in (0, len(key_id) - 1):
        urls[f"key id byte {index} changed"] = url(base, flip(key_id, index) + "." + mac)
    return urls


# URLs no route matches: the router's 404 `not_found`, decided by the URL's shape alone
# (before any link is looked at), so it tells nothing about any link either.
SHAPES = {
    "link id with a trailing slash",
    "link id doubled slash",
    "link id traversal",
    "link id encoded traversal",
}


def assert_no_route(response) -> None:
    assert response.status_code == 404, (response.status_code, response.get_data(as_text=True))
    body = response.get_json(force=True)
    assert body["code"] == "not_found" and "link" not in body["detail"].lower()
    for name in ("ETag", "Entry-Revision", "Entry-SHA256", "Location", "Content-Range"):
        assert name not in response.headers


def test_every_tampered_url_is_the_same_404(client, world):
    reference = client.get(url(world["whole"]["path_part"], None))
    assert_refused(reference)
    failures = {}
    for name, target in tampered_urls(world).items():
        response = client.get(target)
        try:
            if name in SHAPES:
                assert_no_route(response)
            else:
                assert_refused(response, reference)
        except AssertionError as exc:
            failures[name] = (target, str(exc)[:300])
    assert failures == {}, "\n".join(f"{k}: {v}" for k, v in failures.items())


def test_no_query_parameter_moves_a_link_to_another_revision_or_path(client, world):
    whole, entry = world["whole"], world["entry"]
    for extra in ("revision=2", "revision=0", "path=docs/b.md", "project=other", "prefix=docs/"):
        manifest = client.get(url(whole["path_part"], whole["token"], extra))
        assert manifest.status_code == 200 and manifest.get_json()["revision"] == 1
        assert len(manifest.get_json()["entries"]) == 2
        assert client.get(url(entry["path_part"], entry["token"], extra)).data == b"one"
    doubled = url(whole["path_part"], whole["token"], "token=" + world["other"]["token"])
    assert client.get(doubled).get_json()["project_id"] != world["other"]["project_id"]
    render = url(whole["path_part"] + "/render", whole["token"], "max_tokens=100&revision=2")
    rendered = client.get(render)  # the render takes no revision: it is the link's
    assert rendered.status_code == 200 and rendered.headers["Context-Revision"] == "1"


def test_percent_encoding_of_the_same_bytes_is_the_same_url(client, world):
    whole = world["whole"]
    encoded_token = "".join(f"%{ord(c):02X}" for c in whole["token"])
    assert client.get(url(whole["path_part"], encoded_token)).status_code == 200
    encoded_path = whole["path_part"] + "/entries/docs%2Fb.md"
    assert client.get(url(encoded_path, whole["token"])).data == b"bee"


@pytest.mark.parametrize(
    "change",
    ["revision", "path", "project", "tenant", "expiry earlier", "expiry later", "key id"],
)
def test_a_row_changed_under_its_signature_stops_working(app, client, world, tenant, change):
    target = world["entry"] if change == "path" else world["whole"]
    link_id = target["id"]
    with app.app_context():
        row = ContextLink.get_by_id(link_id)
        updates = {
            "revision": {"revision": 2},
            "path": {"path": "docs/b.md"},
            "project": {"project": world["other"]["project_id"]},
            "tenant": {"tenant_id": "tnt_" + "b" * 20},
            "expiry earlier": {"expires_at": row.expires_at - datetime.timedelta(seconds=1)},
            "expiry later": {"expires_at": row.expires_at + datetime.timedelta(days=1)},
            "key id": {"key_id": "another"},
        }[change]
        ContextLink.update(**updates).where(ContextLink.id == link_id).execute()
    assert_refused(client.get(url(target["path_part"], target["token"])))


def test_expired_revoked_and_unknown_links_answer_alike(client, auth, world, monkeypatch):
    unknown = client.get(url("/api/v1/links/lnk_" + "a" * 20, world["whole"]["token"]))
    assert_refused(unknown)
    whole = world["whole"]
    assert (
        client.delete(f"{context_url(P)}/links/{world['entry']['id']}", headers=auth).status_code
        == 204
    )
    assert_refused(client.get(url(world["entry"]["path_part"], world["entry"]["token"])), unknown)
    later = links.now() + datetime.timedelta(days=2)
    monkeypatch.setattr(links, "now", lambda: later)
    assert_refused(client.get(url(whole["path_part"], whole["token"])), unknown)
