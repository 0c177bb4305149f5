"""GET .../context/render: the project's text entries as one document within a token budget,
ordered by `order` metadata then path, with a trailer of what was left out and why
(docs/diff-and-render.md); and the token counter against a real tokenizer."""

from __future__ import annotations

import json
import re

import pytest

from ctxcloud.plugins.context.tokens import count_tokens
from tests.api.test_core import assert_problem
from tests.support.context import context_url, create_project, put_entry
from tests.support.factories import bearer, make_api_key

P = "p"
RENDER = f"{context_url(P)}/render"


@pytest.fixture
def auth(owner_key):
    return bearer(owner_key)


@pytest.fixture
def project(client, auth):
    return create_project(client, auth, slug=P)


def put(client, auth, path, data, content_type="text/markdown", metadata=None):
    headers = {**auth, "Content-Type": content_type}
    if metadata is not None:
        headers["Entry-Metadata"] = json.dumps(metadata)
    response = put_entry(client, headers, P, path, data)
    assert response.status_code in (200, 201), response.get_data(as_text=True)


def render(client, auth, expect=200, accept=None, **query):
    headers = {**auth, **({"Accept": accept} if accept else {})}
    response = client.get(RENDER, query_string=query, headers=headers)
    assert response.status_code == expect, response.get_data(as_text=True)
    return response


def sections(document: str) -> list[str]:
    return re.findall(r"^## (.+)$", document, flags=re.MULTILINE)


@pytest.fixture
def handbook(client, auth, project):
    put(client, auth, "b.md", b"# B\n\nbee\n")  # r1
    put(client, auth, "a.md", b"# A\n", metadata={"order": 2})  # r2
    put(client, auth, "z.md", b"# Z\n", metadata={"order": -1.5})  # r3
    put(client, auth, "c.md", b"# C\n", metadata={"order": "1"})  # r4: a string: no order
    put(client, auth, "logo.png", b"\x89PNG\r\n", content_type="image/png")  # r5
    put(client, auth, "src/main.py", b"print('```')\n", content_type="text/x-python")  # r6
    put(client, auth, "latin1.txt", b"caf\xe9\n", content_type="text/plain")  # r7


def test_ordered_by_order_metadata_then_path_with_a_trailer(client, auth, handbook):
    response = render(client, auth, max_tokens=1000)
    assert response.mimetype == "text/markdown"
    assert response.headers["Context-Revision"] == "7"
    document = response.get_data(as_text=True)
    assert sections(document) == ["z.md", "a.md", "b.md", "c.md", "src/main.py"]
    # Markdown goes in as it is; other text in a fence longer than any inside it.
    assert "## b.md\n\n# B\n\nbee\n" in document
    assert "## src/main.py\n\n````\nprint('```')\n````\n" in document
    assert document.endswith(
        "---\n\nLeft out: 2 of 7 entries:\n\n- latin1.txt: not_utf8\n- logo.png: binary\n"
    )
    assert int(response.headers["Render-Tokens"]) == count_tokens(document) <= 1000


def test_the_budget_is_obeyed_skipping_what_does_not_fit(client, auth, project):
    put(client, auth, "1-big.md", ("word " * 400).encode())
    put(client, auth, "2-small.md", b"small\n")
    put(client, auth, "3-small.md", b"also small\n")
    for max_tokens in (32, 40, 60, 100, 300, 500, 5000):
        response = render(client, auth, max_tokens=max_tokens)
        document = response.get_data(as_text=True)
        assert count_tokens(document) <= max_tokens
        assert int(response.headers["Render-Tokens"]) == count_tokens(document)
    # The big one does not fit 100 tokens: skipped, the smaller ones after it still go in.
    document = render(client, auth, max_tokens=100).get_data(as_text=True)
    assert sections(document) == ["2-small.md", "3-small.md"]
    assert "- 1-big.md: budget\n" in document
    whole = render(client, auth, max_tokens=5000).get_data(as_text=True)
    assert sections(whole) == ["1-big.md", "2-small.md", "3-small.md"]
    assert "Left out" not in whole  # nothing left out: no trailer


def test_the_trailer_counts_and_shrinks_to_fit(client, auth, project):
    commit = {
        "put": [
            {"path": f"bin/{i:02}.dat", "content_base64": "AAE=", "content_type": "image/png"}
            for i in range(40)
        ]
        + [{"path": "note.md", "content": "hello\n", "content_type": "text/markdown"}]
    }
    assert client.post(f"{context_url(P)}/commits", json=commit, headers=auth).status_code == 201
    document = render(client, auth, max_tokens=60).get_data(as_text=True)
    assert count_tokens(document) <= 60
    assert "Left out: 40 of 41 entries" in document
    assert re.search(r"- and \d+ more \(binary \d+\)\n$", document)
    tiny = render(client, auth, max_tokens=32).get_data(as_text=True)
    assert count_tokens(tiny) <= 32 and "Left out:" in tiny


def test_json_gives_the_parts_and_their_counts(client, auth, handbook):
    body = render(client, auth, max_tokens=1000, accept="application/json").get_json()
    assert body["revision"] == 7 and body["max_tokens"] == 1000
    assert body["counter"] == "approx-cl100k-1"
    assert [p["path"] for p in body["parts"]] == ["z.md", "a.md", "b.md", "c.md", "src/main.py"]
    b = body["parts"][2]
    assert b == {
        "path": "b.md",
        "content_type": "text/markdown",
        "revision": 1,
        "tokens": count_tokens("## b.md\n\n# B\n\nbee\n\n"),
        "text": "# B\n\nbee\n",
    }
    assert body["omitted"] == [
        {"path": "latin1.txt", "reason": "not_utf8"},
        {"path": "logo.png", "reason": "binary"},
    ]
    markdown = render(client, auth, max_tokens=1000).get_data(as_text=True)
    assert body["tokens"] == count_tokens(markdown)
    # format= overrides Accept.
    forced = render(client, auth, max_tokens=1000, format="json", accept="text/plain")
    assert forced.mimetype == "application/json"
    # Plain text by Accept.
    response = render(client, auth, max_tokens=1000, accept="text/plain")
    assert response.mimetype == "text/plain"
    document = response.get_data(as_text=True)
    assert document.startswith("==> z.md <==\n# Z\n\n==> a.md <==\n# A\n")
    assert "==> src/main.py <==\nprint('```')\n" in document
    assert document.endswith(
        "==> Left out: 2 of 7 entries <==\n- latin1.txt: not_utf8\n- logo.png: binary\n"
    )
    assert count_tokens(document) <= 1000
    # Anything else acceptable: Markdown.
    assert render(client, auth, max_tokens=1000, accept="*/*").mimetype == "text/markdown"


def test_prefix_and_revision_and_the_render_function(app, client, auth, handbook, project):
    body = render(
        client, auth, max_tokens=1000, accept="application/json", prefix="src/"
    ).get_json()
    assert [p["path"] for p in body["parts"]] == ["src/main.py"] and body["omitted"] == []
    past = render(client, auth, max_tokens=1000, revision=2, accept="application/json")
    assert [p["path"] for p in past.get_json()["parts"]] == ["a.md", "b.md"]
    assert past.get_json()["revision"] == 2
    put(client, auth, "b.md", b"# B2\n")  # r8: revision 2 still renders as it was
    again = render(client, auth, max_tokens=1000, revision=2, accept="application/json")
    assert again.get_json()["parts"][1]["text"] == "# B\n\nbee\n"
    render(client, auth, expect=400, max_tokens=1000, prefix="a/\u202eb")
    # What signed links call: the project row, a revision, a budget, a prefix, a format;
    # no request actor.
    from ctxcloud.plugins.context.models import Project
    from ctxcloud.plugins.context.render import render as render_project

    with app.test_request_context():
        row = Project.get_by_id(project["id"])
        rendered = render_project(row, 3, 200, "", "markdown")
        assert rendered.revision == 3 and [p.path for p in rendered.parts] == [
            "z.md",
            "a.md",
            "b.md",
        ]
        assert rendered.tokens == count_tokens(rendered.document) <= 200
        assert rendered.response().mimetype == "text/markdown"
        assert render_project(row, None, 200, "src/", "json").as_json()["revision"] == 8


BAD_QUERIES = [
    {},
    {"max_tokens": "x"},
    {"max_tokens": 31},
    {"max_tokens": 10**7},
    {"max_tokens": 100, "revision": -1},
    {"max_tokens": 100, "format": "html"},
]


def test_bad_parameters_are_refused(client, auth, project):
    for query in BAD_QUERIES:
        response = client.get(RENDER, query_string=query, headers=auth)
        assert_problem(response, 422, "validation_error")


def test_unknown_revisions_are_404s_and_pruned_ones_410s(app, client, auth, project):
    for i in range(4):
        put(client, auth, "a.md", f"v{i}\n".encode())
    result = app.test_cli_runner().invoke(args=["context", "prune", "--keep", "2", "--json"])
    assert result.exit_code == 0, result.output
    response = client.get(RENDER, query_string={"max_tokens": 100, "revision": 1}, headers=auth)
    body = assert_problem(response, 410, "history_pruned")
    assert body["history_starts_at"] == 3 and body["revision"] == 4 and "pruned" in body["detail"]
    response = client.get(RENDER, query_string={"max_tokens": 100, "revision": 5}, headers=auth)
    assert_problem(response, 404, "not_found")
    assert render(client, auth, max_tokens=100, revision=3).get_data(as_text=True) == (
        "## a.md\n\nv2\n\n"
    )


def test_isolation_and_permission(app, client, auth, handbook, other_tenant, tenant):
    stranger = bearer(make_api_key(app, other_tenant)[1])
    response = client.get(RENDER, query_string={"max_tokens": 100}, headers=stranger)
    assert_problem(response, 404, "not_found")
    no_read = bearer(make_api_key(app, tenant, scopes=["projects:read"])[1])
    response = client.get(RENDER, query_string={"max_tokens": 100}, headers=no_read)
    assert_problem(response, 403, "forbidden")
    assert client.get(RENDER, query_string={"max_tokens": 100}).status_code == 401


def test_many_and_large_entries_are_bounded(app, client, auth, project, monkeypatch):
    app.config.update(RENDER_MAX_ENTRIES=5, RENDER_MAX_ENTRY_BYTES=1000, RENDER_MAX_READ_BYTES=50)
    commit = {
        "put": [
            {"path": f"n/{i:02}.md", "content": f"note {i}\n", "content_type": "text/markdown"}
            for i in range(12)
        ]
        + [{"path": "a-big.md", "content": "x\n" * 600, "content_type": "text/markdown"}]
    }
    assert client.post(f"{context_url(P)}/commits", json=commit, headers=auth).status_code == 201
    from ctxcloud import objects

    reads = []
    real_read = objects.read

    def counting_read(tenant_id, project_id, key, size, *args):
        reads.append(size)
        return real_read(tenant_id, project_id, key, size, *args)

    monkeypatch.setattr(objects, "read", counting_read)
    body = render(client, auth, max_tokens=10000, accept="application/json").get_json()
    reasons = {o["path"]: o["reason"] for o in body["omitted"]}
    assert reasons["a-big.md"] == "too_large"  # 1200 bytes: never read
    assert [p["path"] for p in body["parts"]] == [f"n/{i:02}.md" for i in range(4)]
    assert all(reasons[f"n/{i:02}.md"] == "entry_limit" for i in range(4, 12))
    assert sum(reads) <= 50 and max(reads) < 1000
    app.config.update(RENDER_MAX_READ_BYTES=20)
    body = render(client, auth, max_tokens=10000, accept="application/json").get_json()
    assert [p["path"] for p in body["parts"]] == ["n/00.md", "n/01.md"]
    assert {o["reason"] for o in body["omitted"]} == {"too_large", "read_limit", "entry_limit"}


@pytest.mark.slow  # a few seconds of tokenizing, the same on every stack: the embedded run has it
def test_the_counter_is_close_to_cl100k_base_on_this_repository():
    """The figures docs/diff-and-render.md gives (bench/token_count.py measures them)."""
    pytest.importorskip("tiktoken")
    from bench.token_count import corpus, measure, real_tokenizer

    encoding = real_tokenizer()
    prose = measure(corpus()["prose"], encoding)
    assert prose["worst_under"]["error"] > -0.05 and prose["mean_error"] > 0
    everything = measure([p for paths in corpus().values() for p in paths], encoding)
    assert everything["worst_under"]["error"] > -0.10 and everything["worst_over"]["error"] < 0.35
    assert 0 < everything["mean_error"] < 0.12


def test_a_documents_tokens_are_the_sum_of_its_sections_and_trailer():
    """What lets a render add up its sections' counts instead of recounting the whole: no
    piece of the counter spans two sections (each ends in a newline, the next starts with a
    mark), whatever the entries hold."""
    import random
    from types import SimpleNamespace

    from ctxcloud.plugins.context.render import Omission, section, trailer

    rng = random.Random(13)
    alphabet = ["a", "Z", "é", "日", "1", " ", "  ", "\n", "\r", "\t", "`", "#", "'", "_", "-"]
    for _ in range(300):
        fmt = rng.choice(["markdown", "text"])
        pieces = []
        for n in range(rng.randint(1, 4)):
            text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
            kind = rng.choice(["text/markdown", "text/plain"])
            version = SimpleNamespace(path=f"d/{n}.txt", content_type=kind)
            pieces.append(section(version, text, fmt))
        pieces.append(trailer(fmt, [Omission("x.bin", "binary")], 5, 1000))
        assert count_tokens("".join(pieces)) == sum(map(count_tokens, pieces))


def test_etag_and_not_modified(client, auth, handbook):
    first = render(client, auth, max_tokens=1000)
    etag = first.headers["ETag"]
    again = client.get(
        RENDER, query_string={"max_tokens": 1000}, headers={**auth, "If-None-Match": etag}
    )
    assert again.status_code == 304 and again.headers["ETag"] == etag and not again.data
    # Another budget, format or revision is another answer; a new revision changes the head's.
    for query, accept in (
        ({"max_tokens": 999}, None),
        ({"max_tokens": 1000}, "application/json"),
        ({"max_tokens": 1000, "revision": 6}, None),
    ):
        assert render(client, auth, accept=accept, **query).headers["ETag"] != etag
    put(client, auth, "b.md", b"# B2\n")
    changed = client.get(
        RENDER, query_string={"max_tokens": 1000}, headers={**auth, "If-None-Match": etag}
    )
    assert changed.status_code == 200 and changed.headers["ETag"] != etag
    pinned = render(client, auth, max_tokens=1000, revision=7)
    assert pinned.headers["ETag"] == etag and pinned.data == first.data
