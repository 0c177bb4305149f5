"""Every request example in the OpenAPI document works when sent as it stands.

A reader copies the examples of /api/v1/docs (request bodies, and parameter examples that
make a whole request). test_openapi.py checks that each is valid for its own schema; this
sends them all to the live app, with a credential holding the operation's permission (the
platform key for platform routes, else an owner key of the tenant the examples name), in an
order that makes what they refer to exist: `POST /tenants` makes the tenant `acme` that
`POST /auth/token` logs in to, `POST /projects` makes the project `handbook` the context
examples use, and a few writes (the arrangement steps below) bring that project to the
revision the examples name. Each must answer a documented 2xx: refused for validation
(400, 415, 422) means the example is wrong, or stale (a date now in the past).

One substitution, and the only exception: an opaque id the server chose (`usr_...`,
`tnt_...`, `key_...`) can never be known in advance, so the request uses the id of the
resource an earlier example made; the literal example ids are sent too and must be 404 (well
formed, naming nothing), never 400 or 422.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote, urlencode

import pytest

from tests.docs.openapi import NO_EXAMPLE, composed_example, operations, resolve
from tests.support.factories import bearer, make_api_key

# Path parameters holding an id the server chooses, and the example that creates each.
OPAQUE_IDS = {
    "user_id": "POST /api/v1/users",
    "tenant_id": "POST /api/v1/tenants",
    "key_id": "POST /api/v1/api-keys",
    "client_id": "POST /api/v1/oauth/clients",
    "link_id": "POST /api/v1/projects/{project}/context/links",
}
# Query parameters holding a secret the server chose: the link's token, from its `url`.
OPAQUE_QUERY = {"token"}
PLATFORM = "platform"
OWNER = "owner"
NOBODY = "nobody"
ENTRY = "/api/v1/projects/{project}/context/entries/{path}"


@dataclass
class Example:
    """One operation's request as the document's examples make it."""

    method: str
    path: str
    operation: dict
    path_values: dict[str, Any] = field(default_factory=dict)
    query: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, Any] = field(default_factory=dict)
    body: Any = NO_EXAMPLE

    @property
    def key(self) -> str:
        return f"{self.method} {self.path}"

    def url(self, ids: dict[str, str]) -> str:
        url = self.path
        for name, value in self.path_values.items():
            value = ids.get(name, value)
            url = url.replace(f"{{{name}}}", quote(str(value), safe="/" if name == "path" else ""))
        query = {k: ids.get(k, v) if k in OPAQUE_QUERY else v for k, v in self.query.items()}
        return f"{url}?{urlencode(query)}" if query else url


def request_examples(spec: dict) -> dict[str, Example]:
    """The operations whose examples make a whole request (every required parameter has one)."""
    found = {}
    for method, path, operation in operations(spec):
        example = Example(method, path, operation)
        complete, any_example = True, False
        parameters = spec["paths"][path].get("parameters", []) + operation.get("parameters", [])
        for parameter in map(lambda p: resolve(spec, p), parameters):
            value = parameter.get("example", parameter.get("schema", {}).get("example"))
            if value is None:
                complete = complete and not parameter.get("required")
                continue
            any_example = True
            {"path": example.path_values, "query": example.query, "header": example.headers}[
                parameter["in"]
            ][parameter["name"]] = value
        for media_type, media in operation.get("requestBody", {}).get("content", {}).items():
            if media_type == "application/json":
                body = media.get("example", composed_example(spec, media.get("schema", {})))
                if body is not NO_EXAMPLE:
                    example.body, any_example = body, True
        if any_example and complete:
            found[example.key] = example
    return found


def put_bytes(path: str, data: bytes) -> Callable:
    """An arrangement step: write an entry of the example project."""

    def step(client, credentials) -> None:
        url = f"/api/v1/projects/handbook/context/entries/{quote(path)}"
        response = client.put(url, data=data, headers=credentials[OWNER])
        assert response.status_code in (200, 201), response.get_data(as_text=True)

    step.__doc__ = f"PUT {path}"
    return step


def create_handbook_again(client, credentials) -> None:
    """The DELETE example removed `handbook`: the PATCH example needs it."""
    body = {"name": "Engineering handbook", "slug": "handbook"}
    assert client.post("/api/v1/projects", json=body, headers=credentials[OWNER]).status_code == 201


# (operation or arrangement step, credential), in the order the examples depend on.
PLAN: list[tuple[str | Callable, str]] = [
    ("POST /api/v1/tenants", PLATFORM),  # makes `acme`, whose owner key is made next
    ("GET /api/v1/tenants/{tenant_id}", PLATFORM),
    ("PATCH /api/v1/tenants/{tenant_id}/config", PLATFORM),
    ("GET /api/v1/tenants/{tenant_id}/config", PLATFORM),
    ("GET /api/v1/tenants/{tenant_id}/usage", PLATFORM),
    ("PATCH /api/v1/tenant/settings", OWNER),
    ("POST /api/v1/users", OWNER),  # makes `alice`, who logs in next
    ("POST /api/v1/auth/token", NOBODY),
    ("GET /api/v1/users/{user_id}", OWNER),
    ("PATCH /api/v1/users/{user_id}", OWNER),  # disables alice: after her login
    ("POST /api/v1/projects", OWNER),  # makes `handbook`
    ("GET /api/v1/projects/{project}", OWNER),
    (f"PUT {ENTRY}", OWNER),  # revision 1: docs/adr/0001.md
    (put_bytes("docs/old.md", b"old\n"), OWNER),  # 2: what the commit example deletes
    (put_bytes("docs/adr/0001.md", b"# Use PostgreSQL, really\n"), OWNER),  # 3
    ("GET /api/v1/projects/{project}/context", OWNER),  # revision=3
    ("GET /api/v1/projects/{project}/context/diff", OWNER),  # from 1 to 3
    ("GET /api/v1/projects/{project}/context/render", OWNER),  # revision=3
    # A link to revision 3 (links_enabled is on since PATCH /tenant/settings), read with no
    # credential through its URL: the manifest, an entry and the render; then revoked.
    ("POST /api/v1/projects/{project}/context/links", OWNER),
    ("GET /api/v1/projects/{project}/context/links", OWNER),
    ("GET /api/v1/links/{link_id}", NOBODY),
    ("GET /api/v1/links/{link_id}/entries/{path}", NOBODY),
    ("GET /api/v1/links/{link_id}/render", NOBODY),
    ("DELETE /api/v1/projects/{project}/context/links/{link_id}", OWNER),
    (f"GET {ENTRY}", OWNER),
    (f"HEAD {ENTRY}", OWNER),  # revision=3
    *((put_bytes(f"notes/{n}.md", b"n\n"), OWNER) for n in range(4)),  # 4-7
    ("POST /api/v1/projects/{project}/context/commits", OWNER),  # parent_revision 7
    # The project as an archive (encrypted: the passphrase example), imported as a copy.
    ("POST /api/v1/projects/{project}/export", OWNER),
    ("POST /api/v1/projects/import", OWNER),  # the archive above, as handbook-copy
    ("POST /api/v1/projects/{project}/context/uploads", OWNER),
    ("GET /api/v1/projects/{project}/context/revisions", OWNER),
    ("GET /api/v1/projects/{project}/context/revisions/{number}", OWNER),  # 7
    # since=3 (wait=30): the head is past it, so the answer comes at once.
    ("GET /api/v1/projects/{project}/context/changes", OWNER),
    (f"DELETE {ENTRY}", OWNER),
    ("POST /api/v1/api-keys", OWNER),
    ("GET /api/v1/api-keys/{key_id}", OWNER),
    ("DELETE /api/v1/api-keys/{key_id}", OWNER),
    ("GET /api/v1/audit-events", OWNER),  # filtered by type, actor, time and own tenant
    ("POST /api/v1/oauth/clients", OWNER),
    ("GET /api/v1/oauth/clients/{client_id}", OWNER),
    ("POST /api/v1/oauth/clients/{client_id}/secret", OWNER),
    ("DELETE /api/v1/oauth/clients/{client_id}", OWNER),
    ("DELETE /api/v1/projects/{project}", OWNER),
    (create_handbook_again, OWNER),
    ("PATCH /api/v1/projects/{project}", OWNER),  # renames it handbook-v2
    ("DELETE /api/v1/users/{user_id}", OWNER),
    ("PATCH /api/v1/tenants/{tenant_id}", PLATFORM),  # suspends acme: last but one
    ("DELETE /api/v1/tenants/{tenant_id}", PLATFORM),
]
BODY_OF_PUT = b"# Use PostgreSQL\n"  # raw bytes: the document has no example for them


@pytest.fixture
def spec(client) -> dict:
    return client.get("/api/v1/openapi.json").get_json()


def documented_successes(operation: dict) -> set[int]:
    return {int(status) for status in operation["responses"] if status.startswith("2")}


def send(client, example: Example, credential: dict, ids: dict[str, str]):
    url = example.url(ids)
    headers = {**credential, **{k: str(v) for k, v in example.headers.items()}}
    if example.body is not NO_EXAMPLE:
        return client.open(url, method=example.method, json=example.body, headers=headers)
    if example.key == f"PUT {ENTRY}":
        return client.put(url, data=BODY_OF_PUT, headers=headers)
    if example.key == "POST /api/v1/projects/import":  # the archive the export example made
        headers["Content-Type"] = "application/octet-stream"
        return client.post(url, data=ids["archive"], headers=headers)
    return client.open(url, method=example.method, headers=headers)


def test_the_plan_sends_every_request_example(spec):
    planned = [step for step, _ in PLAN if isinstance(step, str)]
    assert sorted(planned) == sorted(request_examples(spec)), "add new examples to PLAN"
    assert len(planned) == len(set(planned)) >= 28


def test_every_request_example_is_accepted(app, client, spec, platform_key):
    examples = request_examples(spec)
    credentials = {PLATFORM: bearer(platform_key), NOBODY: {}}
    ids: dict[str, str] = {}
    refused = []
    for step, who in PLAN:
        if not isinstance(step, str):
            step(client, credentials)
            continue
        example = examples[step]
        response = send(client, example, credentials[who], ids)
        if response.status_code not in documented_successes(example.operation):
            refused.append(
                f"{step} as {who}: {response.status_code} {response.get_data(as_text=True)}"
            )
            continue
        for name, creator in OPAQUE_IDS.items():
            if step == creator:
                body = response.get_json()
                ids[name] = body.get("id") or body[name]
                if name == "link_id":
                    ids["token"] = body["url"].split("token=", 1)[1]
        if step == "POST /api/v1/projects/{project}/export":
            ids["archive"] = response.get_data()
        if step == "POST /api/v1/tenants":  # an owner of the tenant the examples name
            tenant = SimpleNamespace(id=ids["tenant_id"])
            credentials[OWNER] = bearer(make_api_key(app, tenant, name="examples")[1])
    assert not refused, "\n".join(refused)


def test_example_ids_are_well_formed_but_name_nothing(client, spec, platform_key, owner_key):
    """The one exception above: ids the server chooses, which no example can know."""
    credential = {"tenant_id": bearer(platform_key)}
    sent = 0
    for example in request_examples(spec).values():
        opaque = set(example.path_values) & set(OPAQUE_IDS)
        if not opaque or example.method != "GET":
            continue
        headers = credential.get(next(iter(opaque)), bearer(owner_key))
        response = client.get(example.url({}), headers=headers)
        assert response.status_code == 404, f"{example.key}: {response.status_code}"
        sent += 1
    # A user, a key, an OAuth client, a tenant and its config and usage, and a link's three
    # reads (the example token signs nothing).
    assert sent == 9


def test_the_key_expiry_example_is_in_the_future(spec):
    """A fixed date in the document goes stale: the example is computed when it is built."""
    example = spec["components"]["schemas"]["ApiKeyCreate"]["properties"]["expires_at"]["example"]
    expires = datetime.datetime.fromisoformat(example.replace("Z", "+00:00"))
    now = datetime.datetime.now(datetime.UTC)
    assert now + datetime.timedelta(days=60) < expires < now + datetime.timedelta(days=120)
