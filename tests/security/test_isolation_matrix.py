"""Every route x every method x every kind of credential: tenant B is invisible and untouched.

The matrix is generated from the app, not hand-listed: it walks ``app.url_map``, takes each
route's declared policy from ``ctxcloud.auth.route_policy`` (a permission, ``public`` or
``authenticated``), fills the path parameters with real resources of tenant B (the victim)
and calls every method with every credential kind below. What a call must answer follows
from the policy alone (docs/authentication.md, docs/security.md, docs/tenants.md#isolation):

- no credential, or a bad one (unknown key, garbage JWT, a JWT with B's claims signed with
  the wrong key, B's revoked key, B's expired key) -> 401 on every non-public route;
- a credential of tenant A (an owner key and an owner's JWT: every tenant permission) ->
  404 on routes naming a tenant resource (project, user, key), exactly like a resource that
  does not exist; on routes naming none (POST /projects, GET /users...) it acts on A's own
  tenant: 2xx, and B's data is unchanged; 403 on platform routes;
- a credential of tenant B without the route's permission (a key holding every tenant
  permission but the one required; B's viewer for what a viewer lacks) -> 403;
- B's key restricted to B's other project -> 404 on project routes, like a missing project;
- a platform key on tenant routes -> 403 (it holds no tenant permission).

Every error that names a B resource is compared with the same call on a resource that does
not exist: same status, same body (request id aside), same header names. Every response,
headers included, is searched for anything of B (ids, slug, names, paths, contents, digests,
distinctive sizes, secrets: every name, path and content of B carries the marker ``qz7kvx``).
After the whole matrix, B's rows (every table, every row naming B or its projects), its
stored objects' bytes and its API views (manifest with contents, revisions, users, keys,
tenant, config and usage) are compared with a snapshot taken before: nothing changed.
"""

from __future__ import annotations

import datetime
import hashlib
import itertools
import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import jwt
import pytest

from ctxcloud.auth import AUTHENTICATED, route_policy
from ctxcloud.roles import ROLE_PERMISSIONS, TENANT_PERMISSIONS
from tests.api.test_export_import import minimal_archive
from tests.support.context import stored_keys
from tests.support.factories import (
    bearer,
    login,
    make_api_key,
    make_platform_key,
    make_tenant,
    make_user,
)
from tests.support.fake_oidc import fake_identity_provider, provider_body
from tests.support.oauth import basic, make_oauth_client

API = "/api/v1"
MARK = "qz7kvx"  # carried by every name, slug, path and content of tenant B
PLAN_PATH = f"docs/{MARK}-plan.md"
BLOB_PATH = f"data/{MARK}-blob.bin"
BLOB_SIZE = 70_001  # > one 64 KiB encryption segment, and a number no other response holds
PLATFORM_POLICY = "platform:admin"

# Path parameters that name a tenant resource: another tenant's credential gets 404 there.
TENANT_RESOURCE_PARAMS = {
    "project",
    "user_id",
    "key_id",
    "client_id",
    "name",
    "upload_id",
    "link_id",
}
PROVIDER_NAME = f"idp-{MARK}"
# Registering a provider is create-or-replace by name within the caller's own tenant: another
# tenant's credential PUTting B's provider name makes a provider of its own (2xx), never
# touches B's (the matrix removes it again at once, so the calls after it still see none).
OWN_NAMESPACE_PUTS = {("identity_providers.IdentityProviderItem", "PUT")}

# Documented answers of a valid credential on routes needing no permission (policy
# "authenticated"), where they are not the generic 2xx:
#  - POST /auth/revoke needs a user's access token: an API key gets 400 (authentication.md);
#  - with tenant A's JWT it logs out A's own login (204): the matrix logs A in again after.
AUTHENTICATED_EXCEPTIONS = {
    ("auth.Revoke", "POST", "api_key"): 400,
    ("auth.Revoke", "POST", "jwt"): 204,
}
# Routes where a platform key reads every tenant's records, B's included, by design (the
# audit log: docs/audit.md); a tenant's credential there still sees only its own.
PLATFORM_READS_EVERY_TENANT = {("audit_events.AuditEvents", "GET")}
AUDIT_EVENTS, AUDIT_HEADS = "audit_event", "audit_chain"
# Flask answers OPTIONS itself (the Allow header of the route template), with no credential
# and without looking at any resource: 200 for every caller, and it must leak nothing.
AUTOMATIC_METHODS = {"OPTIONS"}

# The credential kinds. Each is (name, family); the family decides the expected answer.
UNAUTHENTICATED = "unauthenticated"
OTHER_TENANT = "other_tenant"
VICTIM_LACKING = "victim_lacking"
VICTIM_VIEWER = "victim_viewer"
VICTIM_RESTRICTED = "victim_restricted"
PLATFORM = "platform"
KINDS = {
    "none": UNAUTHENTICATED,
    "unknown api key": UNAUTHENTICATED,
    "unknown api key in X-API-Key": UNAUTHENTICATED,
    "garbage jwt": UNAUTHENTICATED,
    "jwt with B's claims, wrong key": UNAUTHENTICATED,
    "B's revoked key": UNAUTHENTICATED,
    "B's expired key": UNAUTHENTICATED,
    "B's revoked client token": UNAUTHENTICATED,
    "B's federated token matching no rule": UNAUTHENTICATED,
    "A's owner key": OTHER_TENANT,
    "A's owner jwt": OTHER_TENANT,
    "A's client token": OTHER_TENANT,
    "A's federated owner token": OTHER_TENANT,
    "B's key without the permission": VICTIM_LACKING,
    "B's viewer jwt": VICTIM_VIEWER,
    "B's federated viewer token": VICTIM_VIEWER,
    "B's key restricted to another project": VICTIM_RESTRICTED,
    "B's client token restricted to another project": VICTIM_RESTRICTED,
    "platform key": PLATFORM,
}
# Kinds that also call public routes (and OPTIONS): only to check they leak nothing.
PUBLIC_KINDS = ("none", "A's owner key")

_serial = itertools.count(1)


@pytest.fixture
def app_config(app_config):
    """Keys write last_used_at once (before the snapshot), and no rate limit gets in the way."""
    return {
        **app_config,
        "API_KEY_LAST_USED_INTERVAL": 10**9,
        "RATE_LIMIT_DEFAULT": "1000000/minute",
    }


@dataclass
class Victim:
    """Tenant B and everything the matrix aims at, plus what must never leak of it."""

    tenant: Any
    owner_key: str
    alpha: dict  # the target project: several entries and revisions
    beta: dict  # the project B's restricted key may see
    member_id: str
    spare_key_id: str
    lacking_keys: dict[str, str]  # permission -> secret of a key holding all others
    restricted_key: str
    viewer_token: str
    revoked_key: str
    expired_key: str
    client_id: str  # an OAuth client of B (every tenant permission)
    client_secret: str
    restricted_client_token: str  # a client-credentials token restricted to beta
    revoked_client_token: str
    upload_id: str = ""  # a staged upload of alpha (bytes sent, not committed)
    link_id: str = ""  # a live signed link to alpha (its token is searched for, never sent)
    federated_viewer_token: str = ""  # of B's identity provider (when the test runs one)
    federated_refused_token: str = ""  # of B's provider, matching none of its rules
    strings: set[str] = field(default_factory=set)  # searched case-insensitively
    numbers: set[int] = field(default_factory=set)  # searched as whole numbers


@dataclass
class Attacker:
    tenant: Any
    owner_key: str
    username: str
    password: str
    token: str = ""
    client_token: str = ""
    federated_token: str = ""
    idp: Any = None  # A's own identity provider, when the test runs one


def client_token(client, pair: tuple[str, str]) -> str:
    form = {"grant_type": "client_credentials"}
    response = client.post(f"{API}/oauth/token", data=form, headers=basic(*pair))
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["access_token"]


def _put(client, headers, project_id, path, data, content_type="text/markdown"):
    url = f"{API}/projects/{project_id}/context/entries/{quote(path, safe='/')}"
    response = client.put(url, data=data, headers={**headers, "Content-Type": content_type})
    assert response.status_code in (200, 201), response.get_data(as_text=True)
    return response


def register_provider(client, headers: dict, idp, name: str, **overrides) -> dict:
    response = client.put(
        f"{API}/tenant/identity-providers/{name}",
        json=provider_body(idp, **overrides),
        headers=headers,
    )
    assert response.status_code in (200, 201), response.get_data(as_text=True)
    return response.get_json()


def make_victim(app, client, idp=None) -> Victim:
    tenant = make_tenant(app, slug=f"victim-{MARK}", name=f"Victim {MARK.upper()} Holdings")
    owner, _ = make_user(app, tenant, "owner", f"owner-{MARK}")
    member, _ = make_user(app, tenant, "member", f"member-{MARK}")
    _, viewer_password = make_user(app, tenant, "viewer", f"viewer-{MARK}")
    owner_key_row, owner_key = make_api_key(app, tenant, name=f"owner-key-{MARK}")
    headers = bearer(owner_key)

    def project(name: str, slug: str) -> dict:
        response = client.post(
            f"{API}/projects",
            json={
                "name": name,
                "slug": slug,
                "description": f"secret plans {MARK}",
                "metadata": {"codename": f"meta-{MARK}"},
            },
            headers=headers,
        )
        assert response.status_code == 201, response.get_data(as_text=True)
        return response.get_json()

    alpha = project(f"Vault {MARK.upper()} Alpha", f"vault-{MARK}-alpha")
    beta = project(f"Vault {MARK.upper()} Beta", f"vault-{MARK}-beta")
    plan_v1 = f"# plan {MARK}\nfirst draft CONTENT-{MARK}-one\n".encode()
    plan_v2 = f"# plan {MARK}\nsecond draft CONTENT-{MARK}-two\n".encode()
    blob = (f"BLOB-{MARK}-".encode() * (BLOB_SIZE // 10 + 1))[:BLOB_SIZE]
    etags = set()
    etags.add(_put(client, headers, alpha["id"], PLAN_PATH, plan_v1).headers["ETag"])  # r1
    etags.add(_put(client, headers, alpha["id"], PLAN_PATH, plan_v2).headers["ETag"])  # r2
    etags.add(  # r3
        _put(client, headers, alpha["id"], BLOB_PATH, blob, "application/octet-stream").headers[
            "ETag"
        ]
    )
    commit = client.post(  # r4
        f"{API}/projects/{alpha['id']}/context/commits",
        json={
            "message": f"commit message {MARK}",
            "put": [
                {"path": f"notes/{MARK}-a.txt", "content": f"note a CONTENT-{MARK}-a"},
                {"path": f"notes/{MARK}-b.txt", "content": f"note b CONTENT-{MARK}-b"},
            ],
        },
        headers=headers,
    )
    assert commit.status_code == 201, commit.get_data(as_text=True)
    deleted = client.delete(  # r5
        f"{API}/projects/{alpha['id']}/context/entries/notes/{MARK}-b.txt", headers=headers
    )
    assert deleted.status_code == 204
    etags.add(
        _put(
            client, headers, beta["id"], f"beta/{MARK}.md", f"beta CONTENT-{MARK}".encode()
        ).headers["ETag"]
    )
    manifest = client.get(f"{API}/projects/{alpha['id']}/context", headers=headers).get_json()
    assert manifest["revision"] == 5 and len(manifest["entries"]) == 3

    spare, _ = make_api_key(app, tenant, scopes=["context:read"], name=f"spare-{MARK}")
    lacking = {
        permission: make_api_key(
            app,
            tenant,
            scopes=sorted(TENANT_PERMISSIONS - {permission}),
            name=f"lacking-{permission}-{MARK}",
        )[1]
        for permission in sorted(TENANT_PERMISSIONS)
    }
    restricted_row, restricted = make_api_key(
        app, tenant, project_ids=[beta["id"]], name=f"restricted-{MARK}"
    )
    revoked_row, revoked = make_api_key(app, tenant, name=f"revoked-{MARK}")
    assert client.delete(f"{API}/api-keys/{revoked_row.id}", headers=headers).status_code == 204
    expired_row, expired = make_api_key(
        app,
        tenant,
        name=f"expired-{MARK}",
        expires_at=datetime.datetime.now(datetime.UTC) - datetime.timedelta(hours=1),
    )
    viewer_tokens = login(client, tenant, f"viewer-{MARK}", viewer_password)
    oauth_pair = make_oauth_client(app, tenant, TENANT_PERMISSIONS, name=f"client-{MARK}")
    restricted_pair = make_oauth_client(
        app, tenant, TENANT_PERMISSIONS, [beta["id"]], name=f"restricted-client-{MARK}"
    )
    restricted_client_token = client_token(client, restricted_pair)
    revoked_client_token = client_token(client, oauth_pair)
    revoking = client.post(
        f"{API}/oauth/revoke", data={"token": revoked_client_token}, headers=basic(*oauth_pair)
    )
    assert revoking.status_code == 200

    victim = Victim(
        tenant=tenant,
        owner_key=owner_key,
        alpha=alpha,
        beta=beta,
        member_id=member.id,
        spare_key_id=spare.id,
        lacking_keys=lacking,
        restricted_key=restricted,
        viewer_token=viewer_tokens["access_token"],
        revoked_key=revoked,
        expired_key=expired,
        client_id=oauth_pair[0],
        client_secret=oauth_pair[1],
        restricted_client_token=restricted_client_token,
        revoked_client_token=revoked_client_token,
    )
    upload = client.post(f"{API}/projects/{alpha['id']}/context/uploads", headers=headers)
    assert upload.status_code == 201, upload.get_data(as_text=True)
    victim.upload_id = upload.get_json()["upload_id"]
    staged = client.put(
        f"{API}/projects/{alpha['id']}/context/uploads/{victim.upload_id}",
        data=f"STAGED-{MARK}".encode(),
        headers=headers,
    )
    assert staged.status_code == 200, staged.get_data(as_text=True)
    victim.strings |= {victim.upload_id, staged.get_json()["sha256"]}
    enabled = client.patch(f"{API}/tenant/settings", json={"links_enabled": True}, headers=headers)
    assert enabled.status_code == 200, enabled.get_data(as_text=True)
    link = client.post(
        f"{API}/projects/{alpha['id']}/context/links",
        json={"revision": 2, "path": PLAN_PATH, "expires_in": 3600},
        headers=headers,
    )
    assert link.status_code == 201, link.get_data(as_text=True)
    victim.link_id = link.get_json()["id"]
    victim.strings |= {victim.link_id, link.get_json()["url"].split("token=")[1]}
    if idp is not None:  # B signs its people in with its own provider, as viewers
        provider = register_provider(
            client,
            headers,
            idp,
            PROVIDER_NAME,
            audiences=[f"aud-{MARK}"],
            claim_rules=[{"claim": "groups", "contains": f"viewers-{MARK}", "role": "viewer"}],
        )
        victim.federated_viewer_token = idp.token(
            audience=f"aud-{MARK}", sub=f"sub-{MARK}", groups=[f"viewers-{MARK}"], lifetime=3600
        )
        victim.federated_refused_token = idp.token(
            audience=f"aud-{MARK}", sub=f"nobody-{MARK}", groups=["strangers"], lifetime=3600
        )
        victim.strings |= {provider["id"], idp.issuer, victim.federated_viewer_token}
        victim.strings.add(victim.federated_refused_token)
    # Warm every B key once, so last_used_at is written before the snapshot and never again.
    for secret in [owner_key, restricted, restricted_client_token, *lacking.values()]:
        assert client.get(f"{API}/auth/whoami", headers=bearer(secret)).status_code == 200

    # What must never appear in a response to anyone but B's own authorised callers.
    with app.app_context():
        from ctxcloud.plugins.auth_apikey.models import ApiKey
        from ctxcloud.plugins.context.models import EntryVersion
        from ctxcloud.plugins.users.models import TokenFamily

        keys = list(ApiKey.select().where(ApiKey.tenant_id == tenant.id))
        families = [f.id for f in TokenFamily.select().where(TokenFamily.tenant_id == tenant.id)]
        digests = [
            v.sha256
            for v in EntryVersion.select().where(
                EntryVersion.project.in_([alpha["id"], beta["id"]])
            )
            if v.sha256
        ]
    victim.strings |= {
        MARK,
        tenant.id,
        tenant.slug,
        tenant.name,
        owner.id,
        member.id,
        alpha["id"],
        beta["id"],
        *(k.id for k in keys),
        *(f"ctx_{k.prefix}_" for k in keys),
        *families,
        *digests,
        *(tag.strip('"') for tag in etags),
        owner_key,
        restricted,
        revoked,
        expired,
        *lacking.values(),
        viewer_tokens["access_token"],
        viewer_tokens["refresh_token"],
        *oauth_pair,
        *restricted_pair,
        restricted_client_token,
        revoked_client_token,
        owner_key_row.id,
        restricted_row.id,
        expired_row.id,
    }
    victim.numbers |= {BLOB_SIZE, manifest["total_size"]}
    return victim


def make_attacker(app, client, idp=None) -> Attacker:
    tenant = make_tenant(app, slug="attacker-corp", name="Attacker Corp")
    username = "mallory"
    _, password = make_user(app, tenant, "owner", username)
    attacker = Attacker(
        tenant, make_api_key(app, tenant, name="attacker-owner")[1], username, password
    )
    attacker.token = login(client, tenant, username, password)["access_token"]
    pair = make_oauth_client(app, tenant, TENANT_PERMISSIONS, name="attacker-client")
    attacker.client_token = client_token(client, pair)
    if idp is not None:  # A's own provider, whose people are owners of A
        register_provider(
            client,
            bearer(attacker.owner_key),
            idp,
            "attacker-idp",
            claim_rules=[],
            default_role="owner",
        )
        attacker.federated_token = idp.token(lifetime=3600)
        attacker.idp = idp
    return attacker


# --- the snapshot ------------------------------------------------------------------------


def snapshot(app, client, victim: Victim) -> dict:
    """Everything of B, read from the database, the storage backend and B's own API view."""
    ext = app.extensions["ctxcloud"]
    ids = {victim.tenant.id, victim.alpha["id"], victim.beta["id"]}
    rows: dict[str, list[str]] = {}
    with app.app_context():
        db = ext.database
        for table in sorted(db.get_tables()):
            cursor = db.execute_sql(f'SELECT * FROM "{table}"')
            names = [column[0] for column in cursor.description]
            mine = [
                repr(sorted(zip(names, (_plain(v) for v in row), strict=True)))
                for row in cursor.fetchall()
                if any(isinstance(v, str) and v in ids for v in row)
            ]
            if mine:
                rows[table] = sorted(mine)
        # B's audit log only grows (B's own refused calls add events): compared as a prefix.
        rows.pop(AUDIT_HEADS, None)
        audit = rows.pop(AUDIT_EVENTS, [])
        from ctxcloud.plugins.context.models import EntryVersion

        object_keys = sorted(
            key
            for (key,) in EntryVersion.select(EntryVersion.object_key)
            .where(EntryVersion.project.in_([victim.alpha["id"], victim.beta["id"]]))
            .tuples()
            if key
        )
        db.close()
    objects = {
        key: hashlib.sha256(b"".join(ext.storage.get(key))).hexdigest() for key in object_keys
    }

    headers = bearer(victim.owner_key)

    def get(url: str) -> Any:
        response = client.get(url, headers=headers)
        assert response.status_code == 200, (url, response.get_data(as_text=True))
        return response.get_json() if response.is_json else response.get_data()

    own = get(f"{API}/tenant")
    own["usage"].pop("requests", None)  # B's own calls in the matrix spend its rate window
    api: dict[str, Any] = {
        "tenant": own,
        "users": get(f"{API}/users?page_size=1000"),
        "keys": get(f"{API}/api-keys?page_size=1000"),
        "projects": get(f"{API}/projects?page_size=1000"),
    }
    for project in api["projects"]:
        base = f"{API}/projects/{project['id']}/context"
        manifest = get(f"{base}?include_content=true&max_bytes=10000000")
        revisions = get(f"{base}/revisions?page_size=1000")
        api[project["id"]] = {
            "manifest": manifest,
            "revisions": [get(f"{base}/revisions/{r['revision']}") for r in revisions],
            "bytes": {
                entry["path"]: hashlib.sha256(
                    get(f"{base}/entries/{quote(entry['path'], safe='/')}")
                ).hexdigest()
                for entry in manifest["entries"]
            },
        }
    return {
        "rows": rows,
        "audit": audit,
        "objects": objects,
        "all_object_keys": stored_keys(app),
        "api": api,
    }


def _plain(value: Any) -> Any:
    if isinstance(value, memoryview):
        return bytes(value)
    return value


# --- the walker --------------------------------------------------------------------------


@dataclass
class Call:
    endpoint: str
    rule: str
    method: str
    policy: str
    url: str
    twin_url: str | None  # the same call on resources that do not exist, if it names any
    params: frozenset[str]


PARAM_PATTERN = re.compile(r"<(?:[^:<>]+:)?(\w+)>")


def route_values(victim: Victim) -> dict[str, list[tuple[str, str]]]:
    """For each path parameter: (value naming B's resource, value naming nothing) pairs."""
    return {
        "project": [
            (victim.alpha["id"], "prj_zzzzzzzzzzzzzzzzzzzz"),
            (victim.alpha["slug"], "vault-nothing-here"),
        ],
        "path": [(PLAN_PATH, "docs/nothing-here.md")],
        "number": [("2", "2")],  # paired with the project: a missing project has no revision 2
        "user_id": [(victim.member_id, "usr_zzzzzzzzzzzzzzzzzzzz")],
        "key_id": [(victim.spare_key_id, "key_zzzzzzzzzzzzzzzzzzzz")],
        "client_id": [(victim.client_id, "ctxc_zzzzzzzzzzzzzzzzzzzz")],
        "name": [(PROVIDER_NAME, "idp-nothing-here")],
        "upload_id": [(victim.upload_id, "upl_zzzzzzzzzzzzzzzzzzzz")],
        # Public link reads get no token: B's link answers like a missing one.
        "link_id": [(victim.link_id, "lnk_zzzzzzzzzzzzzzzzzzzz")],
        "tenant_id": [(victim.tenant.id, "tnt_zzzzzzzzzzzzzzzzzzzz")],
        "filename": [("swagger-ui.css", "swagger-ui.css")],
    }


def _fill(rule: str, values: dict[str, str]) -> str:
    def one(match: re.Match) -> str:
        name = match.group(1)
        return quote(values[name], safe="/" if name == "path" else "")

    return PARAM_PATTERN.sub(one, rule)


def walk(app, victim: Victim) -> list[Call]:
    calls = []
    choices = route_values(victim)
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if not rule.rule.startswith(API):
            continue  # only the API (static files of Flask itself, if any, are not tenant data)
        view = app.view_functions[rule.endpoint]
        unknown = set(rule.arguments) - set(choices)
        assert not unknown, f"{rule.rule}: teach the matrix a value of tenant B for {unknown}"
        names = sorted(rule.arguments)
        for method in sorted(rule.methods or ()):
            policy = route_policy(view, method)
            if policy is None and method == "HEAD":
                policy = route_policy(view, "GET")  # Flask answers HEAD with the GET view
            if method in AUTOMATIC_METHODS:
                policy = "public"
            assert policy is not None, f"{method} {rule.rule} declares no policy"
            for combo in itertools.product(*(choices[n] for n in names)):
                real = {n: pair[0] for n, pair in zip(names, combo, strict=True)}
                fake = {n: pair[1] for n, pair in zip(names, combo, strict=True)}
                resource = set(names) & (TENANT_RESOURCE_PARAMS | {"tenant_id"})
                calls.append(
                    Call(
                        endpoint=rule.endpoint,
                        rule=rule.rule,
                        method=method,
                        policy=policy,
                        url=_fill(rule.rule, real),
                        twin_url=_fill(rule.rule, fake) if resource else None,
                        params=frozenset(names),
                    )
                )
    return calls


def request_kwargs(call: Call, victim: Victim, attacker: Attacker | None = None) -> dict:
    """A valid request body, so that a 404 or 403 is never a 422 in disguise."""
    n = next(_serial)
    bodies: dict[tuple[str, str], Callable[[], dict]] = {
        ("projects.Projects", "POST"): lambda: {"json": {"name": f"Attack project {n}"}},
        ("projects.ProjectItem", "PATCH"): lambda: {"json": {"description": "defaced"}},
        ("context.EntryItem", "PUT"): lambda: {
            "data": b"attacker bytes",
            "headers": {"Content-Type": "text/markdown"},
        },
        ("context_uploads.Uploads", "POST"): lambda: {},
        ("context_uploads.UploadItem", "PUT"): lambda: {"data": b"attacker bytes"},
        ("context.Commits", "POST"): lambda: {
            "json": {"message": "attack", "put": [{"path": "evil.md", "content": "x"}]}
        },
        ("project_export.ProjectExport", "POST"): lambda: {},
        ("context_links.Links", "POST"): lambda: {"json": {"revision": 1, "expires_in": 3600}},
        # A valid archive (of a project of nobody's), under a fresh slug each time: a
        # credential of A imports it into A (2xx), and B's is refused before it is read.
        ("project_import.ProjectImport", "POST"): lambda: {
            "data": minimal_archive(f"imported-{n}", f"Imported {n}"),
            "headers": {"Content-Type": "application/x-tar"},
            "query_string": {"slug": f"imported-{n}"},
        },
        ("users.Users", "POST"): lambda: {
            "json": {
                "username": f"intruder{n}",
                "password": "correct horse battery",
                "role": "owner",
            }
        },
        ("users.UserItem", "PATCH"): lambda: {"json": {"role": "owner", "disabled": True}},
        ("api_keys.ApiKeys", "POST"): lambda: {
            "json": {"name": f"intruder-{n}", "scopes": ["context:read"]}
        },
        ("oauth_clients.Clients", "POST"): lambda: {
            "json": {"name": f"intruder-{n}", "scopes": ["context:read"]}
        },
        ("oauth_clients.ClientSecret", "POST"): lambda: {},
        # Public: B's client with a wrong secret, and B's token without B's client's secret
        # (answers that must say nothing about B, and change nothing).
        ("oauth.TokenEndpoint", "POST"): lambda: {
            "data": {"grant_type": "client_credentials"},
            "headers": basic(victim.client_id, "ctxs_" + "W" * 43),
        },
        ("oauth.IntrospectionEndpoint", "POST"): lambda: {
            "data": {"token": victim.restricted_client_token, "client_id": victim.client_id}
        },
        ("oauth.RevocationEndpoint", "POST"): lambda: {
            "data": {"token": victim.restricted_client_token, "client_id": victim.client_id}
        },
        # A provider of the attacker's (only A's credentials get past the permission check):
        # a fresh audience each time, as one tenant holds an (issuer, audience) pair once.
        ("identity_providers.IdentityProviderItem", "PUT"): lambda: {
            "json": provider_body(attacker.idp, audiences=[f"attack-{n}"], default_role="owner")
            if attacker is not None and attacker.idp is not None
            else {}
        },
        ("identity_providers.IdentityProviderDryRun", "POST"): lambda: {
            "json": {"claims": {"sub": f"probe-{n}", "groups": ["ctx-admins"]}}
        },
        ("tenant.OwnTenantSettings", "PATCH"): lambda: {
            "json": {"default_content_type": "text/plain"}
        },
        ("tenants.Tenants", "POST"): lambda: {"json": {"slug": f"intruder-{n}"}},
        ("tenants.TenantItem", "PATCH"): lambda: {"json": {"status": "suspended"}},
        ("tenants.TenantConfig", "PATCH"): lambda: {"json": {"quotas": {"max_projects": 0}}},
        # Public: a wrong password for B's owner (a 401 that must say nothing about B).
        ("auth.Token", "POST"): lambda: {
            "json": {
                "tenant": victim.tenant.slug,
                "username": f"owner-{MARK}",
                "password": "not the password at all",
            }
        },
    }
    if call.method in ("POST", "PUT", "PATCH") and call.endpoint not in (
        "auth.Revoke",
        "auth.Refresh",
    ):
        maker = bodies.get((call.endpoint, call.method))
        assert maker is not None, f"{call.method} {call.rule}: teach the matrix a valid body"
        return maker()
    if call.endpoint == "context.Manifest":
        return {"query_string": {"include_content": "true", "max_bytes": "10000000"}}
    if call.endpoint == "context_diff.Diff":
        return {"query_string": {"from": "0", "max_bytes": "4194304"}}  # B's every entry
    if call.endpoint == "context_render.Render":
        return {"query_string": {"max_tokens": "1000000", "format": "json"}}
    if call.endpoint == "context_changes.Changes":
        return {"query_string": {"since": "0"}}  # every change of B's project
    return {}


def expected(call: Call, kind: str) -> int | str | None:
    """The answer `kind` must get; "2xx" for any success; None: this kind does not apply."""
    family = KINDS[kind]
    if call.policy == "public":
        return "any" if kind in PUBLIC_KINDS else None
    if family == UNAUTHENTICATED:
        return 401
    credential = "jwt" if "jwt" in kind else "api_key"
    if call.policy == AUTHENTICATED:
        if family in (VICTIM_LACKING, VICTIM_VIEWER, VICTIM_RESTRICTED):
            return None  # B's own valid credential on "whoami": legitimately B's answer
        return AUTHENTICATED_EXCEPTIONS.get((call.endpoint, call.method, credential), "2xx")
    if call.policy == PLATFORM_POLICY:
        return None if family in (PLATFORM, VICTIM_RESTRICTED) else 403
    # A tenant permission.
    if family == OTHER_TENANT and (call.endpoint, call.method) in OWN_NAMESPACE_PUTS:
        return "2xx"
    if family == OTHER_TENANT:
        return 404 if call.params & TENANT_RESOURCE_PARAMS else "2xx"
    if family == VICTIM_LACKING:
        return 403
    if family == VICTIM_VIEWER:
        return None if call.policy in ROLE_PERMISSIONS["viewer"] else 403
    if family == VICTIM_RESTRICTED:
        return 404 if "project" in call.params else None
    if family == PLATFORM:
        return 403
    raise AssertionError(kind)


PROBLEM_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found"}


def leaks(response, victim: Victim, echoed: str = "") -> list[str]:
    """What of B the response shows, body and headers (its own request id aside, and what
    the caller itself chose and sent, `echoed`)."""
    request_id = response.headers.get("X-Request-ID", "")
    text = response.get_data().decode("utf-8", "replace")
    if echoed:
        text = text.replace(echoed, "")
    headers = "\n".join(f"{k}: {v}" for k, v in response.headers if k != "X-Request-ID")
    haystack = (text + "\n" + headers).replace(request_id, "") if request_id else text + headers
    lowered = haystack.lower()
    found = [s for s in victim.strings if s and s.lower() in lowered]
    found += [str(n) for n in victim.numbers if re.search(rf"(?<![\w.]){n}(?![\w.])", haystack)]
    return found


def _comparable(response) -> tuple:
    body = response.get_data()
    if response.mimetype in ("application/json", "application/problem+json") and body:
        data = json.loads(body)
        if isinstance(data, dict):
            data.pop("request_id", None)
        body = json.dumps(data, sort_keys=True).encode()
    return response.status_code, body, sorted({k for k, _ in response.headers})


@pytest.fixture
def providers():
    """B's identity provider (its issuer carries the marker) and A's, on loopback."""
    with (
        fake_identity_provider(realm=f"/realms/{MARK}") as victims,
        fake_identity_provider(realm="/realms/attacker") as attackers,
    ):
        yield victims, attackers


def test_isolation_matrix(app, client, report_figure, providers):
    victim = make_victim(app, client, providers[0])
    attacker = make_attacker(app, client, providers[1])
    _, platform_key = make_platform_key(app)
    now = int(time.time())
    forged = jwt.encode(
        {
            "sub": victim.member_id,
            "tid": victim.tenant.id,
            "role": "owner",
            "fid": "fam_zzzzzzzzzzzzzzzzzzzz",
            "jti": "forged",
            "type": "access",
            "iss": "ctxcloud",
            "aud": "ctxcloud-api",
            "iat": now,
            "nbf": now,
            "exp": now + 600,
        },
        "an attacker's guess at the secret, long enough",
        algorithm="HS256",
    )

    def credential(kind: str, call: Call) -> dict[str, str]:
        secrets = {
            "none": None,
            "unknown api key": "ctx_abcd1234_" + "A" * 43,
            "garbage jwt": "eyJhbGciOiJIUzI1NiJ9.eyJnYXJiYWdlIjp0cnVlfQ.c2lnbmF0dXJl",
            "jwt with B's claims, wrong key": forged,
            "B's revoked key": victim.revoked_key,
            "B's expired key": victim.expired_key,
            "B's revoked client token": victim.revoked_client_token,
            "A's owner key": attacker.owner_key,
            "A's owner jwt": attacker.token,
            "A's client token": attacker.client_token,
            "A's federated owner token": attacker.federated_token,
            "B's federated viewer token": victim.federated_viewer_token,
            "B's federated token matching no rule": victim.federated_refused_token,
            "B's key without the permission": victim.lacking_keys.get(call.policy)
            or victim.owner_key,  # platform routes: B's every tenant permission is not enough
            "B's viewer jwt": victim.viewer_token,
            "B's key restricted to another project": victim.restricted_key,
            "B's client token restricted to another project": victim.restricted_client_token,
            "platform key": platform_key,
        }
        if kind == "unknown api key in X-API-Key":
            return {"X-API-Key": secrets["unknown api key"]}
        secret = secrets[kind]
        return {} if secret is None else bearer(secret)

    before = snapshot(app, client, victim)
    calls = walk(app, victim)
    failures: list[str] = []
    performed = twins = 0
    route_methods = {(c.rule, c.method) for c in calls}
    for call in calls:
        for kind in KINDS:
            want = expected(call, kind)
            if want is None:
                continue
            kwargs = request_kwargs(call, victim, attacker)
            headers = {**credential(kind, call), **kwargs.pop("headers", {})}
            response = client.open(call.url, method=call.method, headers=headers, **kwargs)
            performed += 1
            where = f"{call.method} {call.url} as {kind}"
            status = response.status_code
            if status >= 500:
                failures.append(f"{where}: {status} {response.get_data(as_text=True)[:200]}")
            elif want == "2xx" and not 200 <= status < 300:
                failures.append(f"{where}: {status}, expected 2xx")
            elif isinstance(want, int) and status != want:
                failures.append(f"{where}: {status}, expected {want}")
            elif isinstance(want, int) and want >= 400 and call.method != "HEAD":
                body = response.get_json(force=True, silent=True) or {}
                if (
                    response.mimetype != "application/problem+json"
                    or body.get("code") != PROBLEM_CODES[want]
                ):
                    failures.append(f"{where}: not a {want} problem: {body}")
                if want == 401 and not response.headers.get("WWW-Authenticate", "").startswith(
                    "Bearer"
                ):
                    failures.append(f"{where}: 401 without WWW-Authenticate: Bearer")
            own_put = (call.endpoint, call.method) in OWN_NAMESPACE_PUTS
            leaked = leaks(response, victim, PROVIDER_NAME if own_put else "")
            if KINDS[kind] == PLATFORM and (call.endpoint, call.method) in (
                PLATFORM_READS_EVERY_TENANT
            ):
                leaked = []
            if leaked:
                failures.append(f"{where}: leaks {sorted(leaked)}")
            if isinstance(want, int) and want >= 400 and call.twin_url:
                kwargs = request_kwargs(call, victim, attacker)
                headers = {**credential(kind, call), **kwargs.pop("headers", {})}
                twin = client.open(call.twin_url, method=call.method, headers=headers, **kwargs)
                twins += 1
                if _comparable(twin) != _comparable(response):
                    failures.append(
                        f"{where}: distinguishable from a missing resource: "
                        f"{_comparable(response)} vs {_comparable(twin)}"
                    )
            if (
                (call.endpoint, call.method) in OWN_NAMESPACE_PUTS
                and KINDS[kind] == OTHER_TENANT
                and 200 <= response.status_code < 300
            ):
                removed = client.delete(call.url, headers=bearer(attacker.owner_key))
                assert removed.status_code == 204, removed.get_data(as_text=True)
            if (
                kind == "A's owner jwt"
                and call.endpoint == "auth.Revoke"
                and response.status_code == 204
            ):
                attacker.token = login(
                    client, attacker.tenant, attacker.username, attacker.password
                )["access_token"]

    rules = {c.rule for c in calls}
    report_figure(  # the matrix size belongs in the CI log
        f"isolation matrix: {len(rules)} routes, {len(route_methods)} route x method "
        f"pairs, {len(calls)} filled calls, {len(KINDS)} credential kinds -> {performed} "
        f"requests (+ {twins} on missing resources)"
    )
    # A walker that found nothing must not pass.
    assert len(rules) >= 20 and len(route_methods) >= 60 and performed >= 400, (
        len(rules),
        len(route_methods),
        performed,
    )
    assert not failures, "\n".join(failures)
    after = snapshot(app, client, victim)
    assert after["rows"] == before["rows"]
    assert set(before["audit"]) <= set(after["audit"])  # appended to, never changed
    # Only B's own calls add to it: every new row is on B's chain, none on another's naming B.
    for row in set(after["audit"]) - set(before["audit"]):
        assert f"('chain', '{victim.tenant.id}')" in row, row
    assert after["objects"] == before["objects"]
    assert after["all_object_keys"] == before["all_object_keys"]
    assert after["api"] == before["api"]


def test_a_key_naming_another_tenants_project_reaches_nothing(app, client):
    """Ids in bodies are resolved in the caller's own tenant: naming B's project is no way in.

    Creating a key restricted to project ids is not checked against the tenant's projects
    (tests/api/test_api_keys.py makes keys for made-up ids), so the answer must not depend on
    whether the id is B's real project or nothing at all, and the key must reach nothing of B.
    """
    victim = make_victim(app, client)
    attacker = make_attacker(app, client)
    answers = []
    for project_id in (victim.alpha["id"], "prj_zzzzzzzzzzzzzzzzzzzz"):
        response = client.post(
            f"{API}/api-keys",
            json={
                "name": "sneaky",
                "scopes": ["context:read", "projects:read"],
                "project_ids": [project_id],
            },
            headers=bearer(attacker.owner_key),
        )
        assert response.status_code in (201, 404, 422), response.get_data(as_text=True)
        body = response.get_json()
        answers.append((response.status_code, sorted(body)))
        if response.status_code != 201:
            continue
        key = bearer(body["key"])
        for ref in (victim.alpha["id"], victim.alpha["slug"]):
            for url in (f"{API}/projects/{ref}", f"{API}/projects/{ref}/context"):
                denied = client.get(url, headers=key)
                assert denied.status_code == 404 and not leaks(denied, victim)
        listed = client.get(f"{API}/projects", headers=key)
        assert listed.status_code == 200 and listed.get_json() == []
        whoami = client.get(f"{API}/auth/whoami", headers=key).get_json()
        assert whoami["tenant"]["id"] == attacker.tenant.id
    assert answers[0] == answers[1]  # no oracle for whether B's project exists
