"""Every JSON a client sends is read by one strict reader (app/json_input.py), before any
rule of the operation and before authentication matters.

Each JSON operation of the OpenAPI document (the pre-auth POST /auth/token and the platform's
POST /tenants among them) and the Entry-Metadata header of an entry PUT get the inputs that
once answered 500 (1,000-deep nesting, a 5,000-digit integer), were stored and echoed as
invalid JSON (1e309, NaN, Infinity), were misread silently (duplicate keys, a body without
Content-Type, a PATCH without a body) or answered werkzeug's boilerplate (malformed JSON, a
chunked body past the limit). Each must be a 4xx problem+json with the right code and rule,
and must leave every listing as it was.
"""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import flask
import peewee
import pytest
import requests

from ctxcloud import db, json_input
from ctxcloud.errors import InvalidJson, ProblemError
from ctxcloud.plugins.context.models import EntryVersion, Project
from tests.docs.openapi import NO_EXAMPLE, composed_example, operations
from tests.support.context import context_url, entry_url, project_url
from tests.support.factories import bearer, make_api_key, make_platform_key, make_user
from tests.support.server import ROOT, gunicorn

API = "/api/v1"
MiB = 1024 * 1024
PROBLEM = "application/problem+json"
DEEP = "[" * 1000 + "]" * 1000

# name: (the JSON text, the rule it breaks)
BAD_TEXTS: dict[str, tuple[str | bytes, str]] = {
    "nesting 1000 deep": ('{"name": "x", "metadata": {"a": ' + DEEP + "}}", "depth"),
    "nesting 1000 deep at the top": (DEEP, "depth"),
    "integer of 5000 digits": ('{"name": "x", "n": ' + "7" * 5000 + "}", "number_digits"),
    "1e309": ('{"name": "x", "metadata": {"n": 1e309}}', "non_finite_number"),
    "-1e309": ('{"name": "x", "metadata": {"n": [1, -1e309]}}', "non_finite_number"),
    "NaN": ('{"name": "x", "metadata": {"n": NaN}}', "non_finite_number"),
    "Infinity": ('{"name": "x", "metadata": {"n": Infinity}}', "non_finite_number"),
    "-Infinity": ('{"name": "x", "metadata": {"n": -Infinity}}', "non_finite_number"),
    "duplicate key": ('{"name": "a", "slug": "s", "name": "b"}', "duplicate_key"),
    "duplicate key, escaped": ('{"name": "a", "n\\u0061me": "b"}', "duplicate_key"),
    "unpaired surrogate": ('{"name": "a\\ud800"}', "encoding"),
    "not UTF-8": (b'{"name": "\xff"}', "encoding"),
    "byte order mark": (b'\xef\xbb\xbf{"name": "x"}', "encoding"),
}
MALFORMED = '{\n  "name": "a"\n  "slug": "b"\n}'  # line 3, column 3: Expecting ',' delimiter
NOT_JSON_TYPES = [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]


@pytest.fixture
def world(app, client, tenant) -> dict[str, Any]:
    """A tenant with an owner key, a project, an entry, a second user, and a platform key."""
    owner = bearer(make_api_key(app, tenant, name="owner")[1])
    platform = bearer(make_platform_key(app)[1])
    created = client.post(f"{API}/projects", json={"name": "P", "slug": "p"}, headers=owner)
    assert created.status_code == 201
    put = client.put(entry_url("p", "a.md"), data=b"# a", headers=owner)
    assert put.status_code == 201
    user, _ = make_user(app, tenant, role="member")
    spec = client.get(f"{API}/openapi.json").get_json()
    return {
        "owner": owner,
        "platform": platform,
        "spec": spec,
        "params": {"project": "p", "user_id": user.id, "tenant_id": tenant.id, "name": "kc"},
    }


@pytest.fixture
def app_config(app_config):
    """Dozens of requests per test, some without a credential: no rate limit in the way."""
    return {**app_config, "RATE_LIMIT_ENABLED": False}


def json_operations(world: dict) -> list[tuple[str, str, dict, dict]]:
    """(METHOD, url, headers, a valid-looking body) of every operation taking a JSON body."""
    found = []
    spec = world["spec"]
    for method, path, op in operations(spec):
        content = (op.get("requestBody") or {}).get("content", {})
        if "application/json" not in content:
            continue
        if op.get("security") == []:
            headers: dict = {}
        elif op.get("x-permission") == "platform:admin":
            headers = world["platform"]
        else:
            headers = world["owner"]
        url = path.format(**world["params"])
        example = composed_example(spec, content["application/json"]["schema"])
        found.append((method, url, headers, {"name": "x"} if example is NO_EXAMPLE else example))
    return found


def test_the_walk_covers_every_json_operation(world):
    walked = {(method, url) for method, url, _, _ in json_operations(world)}
    assert ("POST", f"{API}/auth/token") in walked  # before any credential
    assert ("POST", f"{API}/tenants") in walked  # a platform route
    assert ("POST", f"{context_url('p')}/commits") in walked
    assert ("PATCH", project_url("p")) in walked
    assert len(walked) >= 11


def state(client, world: dict) -> dict[str, Any]:
    """What a bad request could change, read through the API."""
    owner, platform = world["owner"], world["platform"]
    tenant_id = world["params"]["tenant_id"]
    reads = {
        "projects": (f"{API}/projects", owner),
        "users": (f"{API}/users", owner),
        "api_keys": (f"{API}/api-keys", owner),
        "manifest": (context_url("p"), owner),
        "revisions": (f"{context_url('p')}/revisions", owner),
        "tenants": (f"{API}/tenants", platform),
        "config": (f"{API}/tenants/{tenant_id}/config", platform),
    }
    seen = {}
    for name, (url, headers) in reads.items():
        response = client.get(url, headers=headers)
        assert response.status_code == 200, (url, response.get_data(as_text=True))
        seen[name] = response.get_json()
    for key in seen["api_keys"]:
        key.pop("last_used_at")  # recorded on use, at most once a minute: not a change
    return seen


def problem(response, status: int, code: str, where: str) -> dict:
    """The response's problem, strictly parsed, after checking its status and code."""
    text = response.get_data(as_text=True)
    assert response.status_code == status, f"{where}: {response.status_code} {text[:300]}"
    assert response.mimetype == PROBLEM, where
    body = json_input.loads(response.get_data())
    assert body["code"] == code and body["status"] == status, f"{where}: {body}"
    assert body["request_id"] == response.headers["X-Request-ID"]
    return body


def send(client, method: str, url: str, headers: dict, body: bytes | str | None, **kwargs):
    return client.open(url, method=method, data=body, headers=headers, **kwargs)


@pytest.mark.parametrize("name", list(BAD_TEXTS))
def test_json_bodies_that_break_a_rule_are_400_invalid_json_naming_the_rule(client, world, name):
    text, rule = BAD_TEXTS[name]
    before = state(client, world)
    for method, url, headers, _ in json_operations(world):
        where = f"{name}: {method} {url}"
        response = send(client, method, url, headers, text, content_type="application/json")
        body = problem(response, 400, "invalid_json", where)
        assert body["rule"] == rule, f"{where}: {body}"
        assert body["detail"].startswith("The body "), where
        if rule == "duplicate_key":
            assert '"name"' in body["detail"], where
        assert {"line", "column"} <= set(body), where  # where it broke
    assert state(client, world) == before


def test_malformed_json_says_where(client, world):
    before = state(client, world)
    for method, url, headers, _ in json_operations(world):
        where = f"{method} {url}"
        response = send(client, method, url, headers, MALFORMED, content_type="application/json")
        body = problem(response, 400, "invalid_json", where)
        assert (body["rule"], body["line"], body["column"]) == ("syntax", 3, 3), where
        assert body["detail"] == (
            "The body is not valid JSON: Expecting ',' delimiter (line 3, column 3)."
        )
        assert "browser (or proxy)" not in body["detail"]
    assert state(client, world) == before


@pytest.mark.parametrize("content_type", NOT_JSON_TYPES)
def test_a_json_body_sent_as_another_type_is_415(client, world, content_type):
    """The body is fine JSON; read as if it were absent, it used to become `{}` (or 422s)."""
    before = state(client, world)
    for method, url, headers, example in json_operations(world):
        where = f"{content_type}: {method} {url}"
        response = send(
            client, method, url, headers, json.dumps(example), content_type=content_type
        )
        body = problem(response, 415, "unsupported_media_type", where)
        assert "Content-Type: application/json" in body["detail"], where
    assert state(client, world) == before


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "application/x+json"])
def test_json_media_types_with_parameters_or_a_suffix_are_json(client, world, content_type):
    response = client.patch(
        project_url("p"), data='{"name": "Q"}', content_type=content_type, headers=world["owner"]
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["name"] == "Q"


@pytest.mark.parametrize("content_type", [None, "application/json", "text/plain"])
def test_a_required_body_that_is_absent_is_400_never_an_empty_change(client, world, content_type):
    """PATCH without a body answered 200 and changed nothing (the document marks it required)."""
    before = state(client, world)
    for method, url, headers, _ in json_operations(world):
        where = f"{content_type}: {method} {url}"
        response = send(client, method, url, headers, b"", content_type=content_type)
        body = problem(response, 400, "invalid_json", where)
        assert body["rule"] == "empty", where
        assert "no body" in body["detail"], where
    assert state(client, world) == before


def test_bodies_past_the_limit_are_413_chunked_or_not(client, world):
    """A chunked body (no Content-Length) past MAX_JSON_BYTES was cut at the limit by werkzeug
    and then read as malformed JSON (400): it is a 413, like a declared one."""
    big = b'{"message": "' + b"a" * (17 * MiB) + b'"}'
    before = state(client, world)
    for method, url, headers, _ in json_operations(world):
        chunked = send(
            client,
            method,
            url,
            {**headers, "Transfer-Encoding": "chunked"},
            None,
            input_stream=io.BytesIO(big),
            content_type="application/json",
            environ_overrides={"wsgi.input_terminated": True},  # as gunicorn sets it
        )
        body = problem(chunked, 413, "payload_too_large", f"chunked: {method} {url}")
        assert str(16 * MiB) in body["detail"]
        declared = send(client, method, url, headers, big, content_type="application/json")
        problem(declared, 413, "payload_too_large", f"Content-Length: {method} {url}")
    assert state(client, world) == before


def test_a_chunked_body_within_the_limit_is_read_whole(client, world):
    body = json.dumps({"put": [{"path": "b.md", "content": "b" * MiB}]}).encode()
    response = client.post(
        f"{context_url('p')}/commits",
        input_stream=io.BytesIO(body),
        content_type="application/json",
        headers={**world["owner"], "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert response.status_code == 201, response.get_data(as_text=True)


METADATA_TEXTS = {
    "nesting 1000 deep": ('{"a": ' + DEEP + "}", "depth"),
    "integer of 5000 digits": ('{"n": ' + "7" * 5000 + "}", "number_digits"),
    "1e309": ('{"n": 1e309}', "non_finite_number"),
    "-1e309": ('{"n": -1e309}', "non_finite_number"),
    "NaN": ('{"n": NaN}', "non_finite_number"),
    "Infinity": ('{"n": Infinity}', "non_finite_number"),
    "-Infinity": ('{"n": -Infinity}', "non_finite_number"),
    "duplicate key": ('{"author": "a", "author": "b"}', "duplicate_key"),
    "unpaired surrogate": ('{"author": "\\udc00"}', "encoding"),
    "not UTF-8": ('{"author": "\xff"}', "encoding"),  # the header's byte 0xff
    "malformed": ('{"author" "a"}', "syntax"),
    "empty": ("", "empty"),
}


@pytest.mark.parametrize("name", list(METADATA_TEXTS))
def test_the_entry_metadata_header_is_read_by_the_same_reader(client, world, name):
    text, rule = METADATA_TEXTS[name]
    before = state(client, world)
    for path in ("a.md", "new.md"):  # a replacement and a creation
        response = client.put(
            entry_url("p", path),
            data=b"changed",
            headers={**world["owner"], "Entry-Metadata": text},
        )
        body = problem(response, 400, "invalid_json", f"{name}: {path}")
        assert body["rule"] == rule, body
        assert body["detail"].startswith("The Entry-Metadata header "), body
    assert state(client, world) == before


def test_entry_metadata_is_read_as_utf8(client, world):
    raw = '{"author": "José"}'.encode().decode("latin-1")  # the bytes, as WSGI hands them over
    response = client.put(
        entry_url("p", "a.md"), data=b"x", headers={**world["owner"], "Entry-Metadata": raw}
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["metadata"] == {"author": "José"}


def test_login_before_authentication_never_fails_with_a_500(client, world):
    """POST /auth/token reads its body before any credential: every rule holds there too."""
    for name, (text, rule) in BAD_TEXTS.items():
        response = client.post(f"{API}/auth/token", data=text, content_type="application/json")
        assert problem(response, 400, "invalid_json", name)["rule"] == rule


def test_flask_get_json_reads_strictly(app):
    with app.test_request_context(method="POST", data=DEEP, content_type="application/json"):
        with pytest.raises(InvalidJson) as refused:
            flask.request.get_json()
        assert refused.value.extra["rule"] == "depth"
        assert flask.request.get_json(silent=True) is None
    body = '{"a": 1, "a": 2}'
    with app.test_request_context(method="POST", data=body, content_type="application/json"):
        with pytest.raises(InvalidJson) as refused:
            flask.request.get_json()
        assert refused.value.extra["rule"] == "duplicate_key"
    with app.test_request_context(method="POST", data="{}", content_type="text/plain"):
        with pytest.raises(ProblemError) as refused:
            flask.request.get_json()
        assert (refused.value.status, refused.value.code) == (415, "unsupported_media_type")
    with app.app_context():
        assert flask.json.loads('{"a": [1, 2.5, "x"]}') == {"a": [1, 2.5, "x"]}
        with pytest.raises(InvalidJson):
            flask.json.loads('{"a": NaN}')


def test_responses_are_strict_json_even_for_a_nan(app):
    with app.app_context():
        assert flask.json.dumps({"a": float("nan"), "b": [float("-inf"), 1.5]}) == (
            '{"a": null, "b": [null, 1.5]}'
        )


def test_stored_nan_and_infinity_read_as_null(app, client, world, caplog, monkeypatch):
    """Rows written before the reader refused them may hold NaN or Infinity: listings stay
    valid JSON (strict clients failed on them: any member could break them for everyone)."""
    monkeypatch.setattr(db, "_NON_FINITE_COLUMNS", set())
    stored = '{"n": NaN, "big": Infinity, "list": [-Infinity, 1.5], "s": "NaN"}'
    with app.app_context():
        Project.update(metadata=peewee.Value(stored, converter=False)).execute()
        EntryVersion.update(metadata=peewee.Value(stored, converter=False)).execute()
    expected = {"n": None, "big": None, "list": [None, 1.5], "s": "NaN"}
    owner = world["owner"]
    with caplog.at_level(logging.WARNING, logger="ctxcloud.db"):
        for url in (f"{API}/projects", project_url("p"), context_url("p")):
            response = client.get(url, headers=owner)
            assert response.status_code == 200
            json_input.loads(response.get_data())  # strict RFC 8259, or this raises
        listed = client.get(f"{API}/projects", headers=owner).get_json()
        entry = client.get(entry_url("p", "a.md"), headers=owner)
    assert listed[0]["metadata"] == expected
    assert client.get(context_url("p"), headers=owner).get_json()["entries"][0]["metadata"] == (
        expected
    )
    assert json_input.loads(entry.headers["Entry-Metadata"]) == expected
    warned = [r for r in caplog.records if "NaN or Infinity" in r.getMessage()]
    assert len(warned) == 2  # once per column (project.metadata, the entries'), not per read


@pytest.mark.server
def test_a_chunked_body_past_the_limit_is_413_under_gunicorn(app, app_config, tenant, tmp_path):
    """gunicorn de-chunks the body and ends the stream itself (wsgi.input_terminated): werkzeug
    then cut the body at the limit, which read as malformed JSON (400). It is a 413, before
    authentication too, and a chunked body within the limit is read whole."""
    key = bearer(make_api_key(app, tenant)[1])
    env = {f"CTXCLOUD_{name}": str(value) for name, value in app_config.items()}

    def commit(size: int):
        """A commit of one entry of `size` bytes, sent in 1 MiB chunks."""
        yield b'{"put": [{"path": "big.md", "content": "'
        for _ in range(size // MiB):
            yield b"a" * MiB
        yield b'"}]}'

    with gunicorn(env, tmp_path / "logs", workers=1, threads=2) as server:
        created = requests.post(
            f"{server.url}{API}/projects", json={"name": "P", "slug": "p"}, headers=key, timeout=30
        )
        assert created.status_code == 201, created.text
        commits = f"{server.url}{context_url('p')}/commits"
        json_type = {"Content-Type": "application/json"}
        for url, headers in ((commits, key), (f"{server.url}{API}/auth/token", {})):
            response = requests.post(
                url, data=commit(17 * MiB), headers={**headers, **json_type}, timeout=60
            )
            assert response.request.headers["Transfer-Encoding"] == "chunked"
            assert response.status_code == 413, response.text[:300]
            assert response.headers["Content-Type"] == PROBLEM
            assert response.json()["code"] == "payload_too_large"
        revisions = f"{server.url}{context_url('p')}/revisions"
        assert requests.get(revisions, headers=key, timeout=30).json() == []
        within = requests.post(commits, data=commit(MiB), headers={**key, **json_type}, timeout=60)
        assert within.status_code == 201, within.text[:300]
        entry = requests.get(f"{server.url}{entry_url('p', 'big.md')}", headers=key, timeout=30)
        assert entry.content == b"a" * MiB
        log = server.log()
    assert "Traceback" not in log, log[-5000:]


def test_every_rule_is_tested_and_documented():
    tested = {rule for _, rule in BAD_TEXTS.values()} | {"syntax", "empty"}
    assert tested == set(json_input.RULES)
    docs = (ROOT / "docs" / "index.md").read_text()
    section = docs[docs.index("### JSON input") :]
    for rule in json_input.RULES:
        assert f"| `{rule}` |" in section, rule
