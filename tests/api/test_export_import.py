"""Project export and import (docs/export-import.md): a project's kept history as one archive,
made into a new project of another tenant or instance, byte for byte; all or nothing.

The round trip checks every revision's manifest and the bytes of every entry version through
the API of both projects; the tampering cases edit a real archive (a member's bytes, the
index, the members themselves, the tar's member types) and expect a clear refusal that
leaves no project row and no stored object behind."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import secrets
import tarfile
from contextlib import ExitStack
from pathlib import Path

import flask
import pytest

from ctxcloud import create_app
from ctxcloud.cli import all_migrations
from ctxcloud.migrations import upgrade
from ctxcloud.plugins.context import archive_crypto, service
from ctxcloud.plugins.context.models import EntryVersion, Project
from tests import stack
from tests.api.test_core import assert_problem
from tests.support.context import (
    context_url,
    create_project,
    entry_url,
    project_url,
    stored_keys,
)
from tests.support.factories import bearer, make_api_key, make_tenant

API = "/api/v1"
IMPORT = f"{API}/projects/import"
TAR = {"Content-Type": "application/x-tar"}
BIG = 70_001  # more than one 64 KiB encryption segment
PASSPHRASE = "correct horse battery staple"


@pytest.fixture
def auth(app, tenant) -> dict:
    return bearer(make_api_key(app, tenant)[1])


@pytest.fixture
def other_auth(app, other_tenant) -> dict:
    return bearer(make_api_key(app, other_tenant)[1])


def export_url(project: str) -> str:
    return f"{project_url(project)}/export"


def put(client, auth, project, path, data, content_type="text/markdown", **headers):
    response = client.put(
        entry_url(project, path),
        data=data,
        headers={**auth, "Content-Type": content_type, **headers},
    )
    assert response.status_code in (200, 201), response.get_data(as_text=True)


def delete(client, auth, project, path):
    response = client.delete(entry_url(project, path), headers=auth)
    assert response.status_code == 204, response.get_data(as_text=True)


def commit(client, auth, project, message, put_items=(), delete_paths=()):
    response = client.post(
        f"{context_url(project)}/commits",
        json={"message": message, "put": list(put_items), "delete": list(delete_paths)},
        headers=auth,
    )
    assert response.status_code == 201, response.get_data(as_text=True)


def build_history(client, auth, slug: str, revisions: int = 100) -> None:
    """`revisions` revisions of small entries: puts, overwrites (same bytes too), metadata,
    deletes, several-path commits, and one entry above one encryption segment."""
    create_project(
        client,
        auth,
        name="Source project",
        slug=slug,
        description="exported",
        metadata={"team": "docs"},
    )
    big = (b"0123456789abcdef" * (BIG // 16 + 1))[:BIG]
    live: set[str] = set()
    for step in range(1, revisions + 1):
        path = f"notes/{step % 7}.md"
        if step == 3:
            put(client, auth, slug, "data/big.bin", big, "application/octet-stream")
            live.add("data/big.bin")
        elif step % 11 == 0:
            gone = f"docs/{step - 11}.txt"
            commit(
                client,
                auth,
                slug,
                f"commit {step}",
                [
                    {"path": f"docs/{step}.txt", "content": f"text {step}\n"},
                    {
                        "path": "docs/b64.bin",
                        "content_base64": base64.b64encode(bytes([step % 256]) * 9).decode(),
                        "metadata": {"step": step},
                    },
                ],
                [gone] if gone in live else [],
            )
            live.discard(gone)
            live |= {f"docs/{step}.txt", "docs/b64.bin"}
        elif step % 5 == 0 and path in live:
            delete(client, auth, slug, path)
            live.discard(path)
        else:
            put(
                client,
                auth,
                slug,
                path,
                f"# note {step}\n".encode() if step % 3 else b"same bytes\n",
                "text/markdown; charset=utf-8",
                **{"Entry-Metadata": json.dumps({"n": step % 4})},
            )
            live.add(path)
    assert client.get(project_url(slug), headers=auth).get_json()["revision"] == revisions


def manifests_of(app, project_id: str, numbers: range) -> dict[int, list[dict]]:
    """The manifests at `numbers` as the context service reads them (what the API answers,
    without a request per revision)."""
    with app.app_context():
        project = Project.get_by_id(project_id)
        return {
            n: [
                {
                    "path": v.path,
                    "size": v.size,
                    "sha256": v.sha256,
                    "content_type": v.content_type,
                    "metadata": v.metadata,
                    "revision": v.revision,
                    "updated_at": v.created_at.isoformat(),
                    "etag": v.etag,
                }
                for v in service.manifest(project, n, "")
            ]
            for n in numbers
        }


def history(client, auth, slug: str, read: bool = True, app=None) -> dict:
    """Every revision's manifest (through the API, or the service with `app`) and log
    entry, and each version's bytes' digest as read through the API (`read`), else as its
    manifest says."""
    project = client.get(project_url(slug), headers=auth).get_json()
    manifests, versions = {}, {}
    numbers = range(max(project["history_starts_at"], 1), project["revision"] + 1)
    if app is not None:
        manifests = manifests_of(app, project["id"], numbers)
    for number in numbers:
        if app is None:
            body = client.get(context_url(slug, revision=number), headers=auth).get_json()
            manifests[number] = body["entries"]
        for entry in manifests[number]:
            key = (entry["path"], entry["revision"])
            if key not in versions and not read:
                versions[key] = entry["sha256"]
            elif key not in versions:
                response = client.get(entry_url(slug, entry["path"], revision=number), headers=auth)
                assert response.status_code == 200
                versions[key] = hashlib.sha256(response.get_data()).hexdigest()
                assert versions[key] == entry["sha256"]
    revisions = client.get(f"{context_url(slug)}/revisions?page_size=1000", headers=auth)
    log = [
        {k: r[k] for k in ("revision", "message", "actor", "created_at", "changes") if k in r}
        for r in revisions.get_json()
    ]
    return {
        "head": project["revision"],
        "history_starts_at": project["history_starts_at"],
        "fields": {k: project[k] for k in ("name", "description", "metadata")},
        "manifests": manifests,
        "versions": versions,
        "log": log,
    }


def export(client, auth, slug, **headers) -> bytes:
    response = client.post(export_url(slug), headers={**auth, **headers})
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_data()


def import_(client, auth, archive: bytes, slug: str | None = None, **headers):
    url = IMPORT + (f"?slug={slug}" if slug else "")
    return client.post(url, data=archive, headers={**auth, **TAR, **headers})


def minimal_archive(slug: str, name: str = "Imported") -> bytes:
    """A valid archive of a project with no revisions, made without the service."""
    project = {
        "name": name,
        "slug": slug,
        "description": "",
        "metadata": {},
        "created_at": "2026-11-25T18:00:00Z",
    }
    header = json.dumps(
        {
            "format": "ctxcloud-project-export",
            "version": 1,
            "exported_at": "2026-11-25T18:00:00Z",
            "project": project,
            "history_starts_at": 0,
            "revision": 0,
        }
    ).encode()
    index = {
        "format": "ctxcloud-project-export",
        "version": 1,
        "project": project,
        "history_starts_at": 0,
        "revision": 0,
        "revisions": [],
        "blobs": [],
        "files": {
            "project.json": {"sha256": hashlib.sha256(header).hexdigest(), "size": len(header)}
        },
    }
    return rebuilt(
        [(info("project.json"), header), (info("index.json"), json.dumps(index).encode())]
    )


def project_rows(app) -> list[str]:
    with app.app_context():
        return sorted(p.slug for p in Project.select())


# --- the round trip ---------------------------------------------------------------------


def test_a_hundred_revisions_round_trip_into_another_tenant(app, client, auth, other_auth):
    build_history(client, auth, "source")
    # The bytes: as the source recorded them, against the copy's as read through its API.
    before = history(client, auth, "source", read=False, app=app)
    response = client.post(export_url("source"), headers=auth)
    assert response.status_code == 200
    assert response.is_streamed  # a generator, not a body built in memory
    assert response.mimetype == "application/x-tar"
    assert response.headers["Export-Revision"] == "100"
    assert response.headers["Content-Disposition"] == 'attachment; filename="source-r100.tar"'
    archive = response.get_data()

    imported = import_(client, other_auth, archive)
    assert imported.status_code == 201, imported.get_data(as_text=True)
    body = imported.get_json()
    assert body["slug"] == "source" and body["revision"] == 100
    after = history(client, other_auth, "source", app=app)
    assert after == before
    for number in (1, 3, 50, 100):  # and the API's manifests, at a few revisions
        answers = [
            client.get(context_url("source", revision=number), headers=h).get_json()["entries"]
            for h in (auth, other_auth)
        ]
        assert answers[0] == answers[1] and answers[0]
    assert len(before["manifests"]) == 100
    assert ("data/big.bin", 3) in before["versions"]
    # The copy is the other tenant's: its own project, its own objects, its own key.
    assert body["id"] != client.get(project_url("source"), headers=auth).get_json()["id"]
    with app.app_context():
        source_keys = {
            v.object_key
            for v in EntryVersion.select()
            .join(Project)
            .where(Project.tenant_id != body["id"], Project.id != body["id"])
            if v.object_key
        }
        copy_keys = {
            v.object_key
            for v in EntryVersion.select().where(EntryVersion.project == body["id"])
            if v.object_key
        }
    assert copy_keys and not copy_keys & source_keys
    # Storage is counted as for the source (every kept version's bytes).
    usage = [
        client.get(f"{API}/tenant", headers=h).get_json()["usage"]["storage_bytes"]
        for h in (auth, other_auth)
    ]
    assert usage[0] == usage[1] > BIG


def test_the_export_streams_entry_by_entry(client, auth, monkeypatch):
    """The first bytes go out before the later entries are even read."""
    from ctxcloud import objects

    create_project(client, auth, name="Large", slug="large")
    for n in range(5):
        put(client, auth, "large", f"part-{n}.bin", os.urandom(300_000), "application/x-part")
    opened = []
    real_read = objects.read

    def counting_read(*args, **kwargs):
        opened.append(args[2])
        return real_read(*args, **kwargs)

    monkeypatch.setattr(objects, "read", counting_read)
    response = client.post(export_url("large"), headers=auth, buffered=False)
    assert response.status_code == 200 and response.is_streamed
    chunks = iter(response.response)
    first = next(chunks)
    assert first.startswith(b"project.json") or b"project.json" in first[:512]
    assert len(opened) < 5  # the rest are read as the client takes the archive
    rest = b"".join(chunks)
    response.close()
    assert len(opened) == 5
    with tarfile.open(fileobj=io.BytesIO(first + rest)) as tar:
        assert len([n for n in tar.getnames() if n.startswith("blobs/")]) == 5


def test_an_export_its_client_abandons_leaves_no_context_behind(app, client, auth):
    """A client that stops reading mid-archive: the response is collected later, while other
    requests run. The archive holds no app or request context across its chunks, so nothing
    has to be popped out of turn then (which Flask refuses, as an error in a finalizer)."""
    create_project(client, auth, name="Large", slug="large")
    for n in range(3):
        put(client, auth, "large", f"part-{n}.bin", os.urandom(300_000), "application/x-part")
    response = client.post(export_url("large"), headers=auth, buffered=False)
    chunks = iter(response.response)
    next(chunks)
    with app.test_request_context("/elsewhere"):
        chunks.close()  # as the collector would, in whatever context is current then
        assert flask.request.path == "/elsewhere"
    assert client.get("/api/v1/projects/large", headers=auth).status_code == 200


def test_the_archive_holds_an_index_and_each_distinct_version_once(client, auth):
    build_history(client, auth, "source", revisions=12)
    archive = export(client, auth, "source")
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        members = tar.getmembers()
        names = [m.name for m in members]
        assert names[0] == "project.json" and names[-1] == "index.json"
        index = json.load(tar.extractfile("index.json"))
        for member in members[:-1]:
            data = tar.extractfile(member).read()
            assert index["files"][member.name] == {
                "sha256": hashlib.sha256(data).hexdigest(),
                "size": len(data),
            }
        blobs = [n for n in names if n.startswith("blobs/")]
        assert len(blobs) == len(set(blobs)) == len(index["blobs"])
        for name in blobs:
            assert hashlib.sha256(tar.extractfile(name).read()).hexdigest() == name[6:]
        revision = json.load(tar.extractfile("revisions/00000003.json"))
    assert index["project"]["slug"] == "source" and index["revision"] == 12
    assert [r["number"] for r in index["revisions"]] == list(range(1, 13))
    assert set(index["revisions"][0]) >= {"number", "message", "actor", "created_at", "changes"}
    assert revision["manifest"]["data/big.bin"]["size"] == BIG


def test_an_encrypted_archive_round_trips_and_a_wrong_passphrase_is_refused(
    app, client, auth, other_auth
):
    build_history(client, auth, "source", revisions=6)
    archive = export(client, auth, "source", **{"Archive-Passphrase": PASSPHRASE})
    assert archive.startswith(archive_crypto.MAGIC) and b"note" not in archive
    keys = stored_keys(app)
    wrong = import_(client, other_auth, archive, **{"Archive-Passphrase": "not the one"})
    assert_problem(wrong, 400, "wrong_passphrase")
    missing = import_(client, other_auth, archive)
    assert_problem(missing, 400, "passphrase_required")
    assert stored_keys(app) == keys and project_rows(app) == ["source"]
    done = import_(client, other_auth, archive, **{"Archive-Passphrase": PASSPHRASE})
    assert done.status_code == 201, done.get_data(as_text=True)
    assert history(client, other_auth, "source") == history(client, auth, "source")
    # A plaintext archive offered with a passphrase is refused (not silently taken).
    plain = export(client, auth, "source")
    refused = import_(client, other_auth, plain, "again", **{"Archive-Passphrase": PASSPHRASE})
    assert_problem(refused, 400, "invalid_archive")


def test_an_encrypted_archive_cut_or_changed_is_refused(app, client, auth, other_auth):
    build_history(client, auth, "source", revisions=4)
    archive = export(client, auth, "source", **{"Archive-Passphrase": PASSPHRASE})
    keys = stored_keys(app)
    segment = archive_crypto.SEGMENT + archive_crypto.TAG
    cut_at_segment = archive[: archive_crypto.HEADER_BYTES + segment]
    flipped = bytearray(archive)
    flipped[-40] ^= 1
    for damaged in (archive[:-1], cut_at_segment, bytes(flipped), archive + b"x"):
        response = import_(client, other_auth, damaged, **{"Archive-Passphrase": PASSPHRASE})
        assert_problem(response, 400, "invalid_archive")
    assert stored_keys(app) == keys and project_rows(app) == ["source"]


# --- tampering ----------------------------------------------------------------------------


def members_of(archive: bytes) -> list[tuple[tarfile.TarInfo, bytes]]:
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        return [(m, tar.extractfile(m).read() if m.isreg() else b"") for m in tar.getmembers()]


def rebuilt(members: list[tuple[tarfile.TarInfo, bytes]]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            info = tarfile.TarInfo(info.name) if isinstance(info, str) else info
            if info.isreg():
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return out.getvalue()


def info(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    made = tarfile.TarInfo(name)
    made.type = kind
    made.linkname = link
    return made


def huge_pax_header() -> tarfile.TarInfo:
    """A member whose pax header is 100 KiB (tar reads such a header whole)."""
    made = info("blobs/" + "3" * 64)
    made.pax_headers = {"comment": "z" * 100_000}
    return made


def _edit_json(members, name, change):
    result = []
    for member, data in members:
        if member.name == name:
            value = json.loads(data)
            change(value)
            data = json.dumps(value).encode()
        result.append((member, data))
    return result


def _reindexed(members):
    """The members with index.json's digests brought in line (a consistent forgery)."""
    index_at = [m.name for m, _ in members].index("index.json")
    index = json.loads(members[index_at][1])
    for member, data in members:
        if member.name in index["files"]:
            index["files"][member.name] = {
                "sha256": hashlib.sha256(data).hexdigest(),
                "size": len(data),
            }
    members[index_at] = (members[index_at][0], json.dumps(index).encode())
    return members


def tampered_archives(archive: bytes) -> dict[str, bytes]:
    members = members_of(archive)
    names = [m.name for m, _ in members]
    blob = next(n for n in names if n.startswith("blobs/"))
    at = names.index(blob)

    def swap(index, replacement):
        copy = list(members)
        copy[index] = replacement
        return rebuilt(copy)

    def insert(index, extra):
        copy = list(members)
        copy.insert(index, extra)
        return rebuilt(copy)

    changed = bytearray(members[at][1])
    changed[0] ^= 1
    return {
        "a blob's bytes changed": swap(at, (members[at][0], bytes(changed))),
        "a manifest changed, index kept": rebuilt(
            _edit_json(
                members,
                "revisions/00000002.json",
                lambda v: v["manifest"].update({"evil.md": next(iter(v["manifest"].values()))}),
            )
        ),
        "a manifest changed, index made to match": rebuilt(
            _reindexed(
                _edit_json(
                    members,
                    "revisions/00000002.json",
                    lambda v: next(iter(v["manifest"].values())).update({"size": 1}),
                )
            )
        ),
        "a revision's message changed in the index": rebuilt(
            _edit_json(members, "index.json", lambda v: v["revisions"][0].update({"number": 7}))
        ),
        "a blob missing": rebuilt([m for m in members if m[0].name != blob]),
        "a blob missing, index made to match": rebuilt(
            _edit_json(
                [m for m in members if m[0].name != blob],
                "index.json",
                lambda v: (v["files"].pop(blob), v["blobs"].remove(blob[6:])),
            )
        ),
        "a revision missing": rebuilt(
            [m for m in members if m[0].name != "revisions/00000002.json"]
        ),
        "the index missing": rebuilt([m for m in members if m[0].name != "index.json"]),
        "an unknown member": insert(1, (info("notes.txt"), b"hello")),
        "a duplicate member": insert(at + 1, members[at]),
        "path traversal": insert(1, (info("../../etc/passwd"), b"root")),
        "an absolute path": insert(1, (info("/blobs/" + "0" * 64), b"x")),
        "a symlink": insert(1, (info(blob, tarfile.SYMTYPE, "/etc/passwd"), b"")),
        "a hardlink": insert(1, (info(blob, tarfile.LNKTYPE, "project.json"), b"")),
        "a device": insert(1, (info("blobs/" + "1" * 64, tarfile.CHRTYPE), b"")),
        "a fifo": insert(1, (info("blobs/" + "2" * 64, tarfile.FIFOTYPE), b"")),
        "a directory": insert(1, (info("blobs", tarfile.DIRTYPE), b"")),
        "a huge pax header": insert(1, (huge_pax_header(), b"x")),
        "a long name": insert(1, (info("blobs/" + "a" * 200), b"x")),
        "cut short": archive[: len(archive) // 2],
        "not a tar": b"PK\x03\x04 this is a zip, or anything else" * 40,
        "gzipped": __import__("gzip").compress(archive),
        "empty": b"",
    }


def test_a_tampered_archive_is_refused_and_leaves_nothing(app, client, auth, other_auth):
    build_history(client, auth, "source", revisions=5)
    archive = export(client, auth, "source")
    keys, rows = stored_keys(app), project_rows(app)
    for case, body in tampered_archives(archive).items():
        response = import_(client, other_auth, body)
        assert response.status_code == 400, (case, response.get_data(as_text=True))
        problem = response.get_json()
        assert problem["code"] == "invalid_archive", (case, problem)
        assert problem["detail"], case
        assert stored_keys(app) == keys, case
        assert project_rows(app) == rows, case
    # The untouched archive still imports: the refusals were about the edits.
    assert import_(client, other_auth, archive).status_code == 201


# --- limits, quotas, clashes --------------------------------------------------------------


def test_a_slug_clash_is_a_409_and_a_new_slug_imports(app, client, auth, other_auth):
    build_history(client, auth, "source", revisions=3)
    archive = export(client, auth, "source")
    keys = stored_keys(app)
    clash = import_(client, auth, archive)
    assert_problem(clash, 409, "conflict")
    assert "slug" in clash.get_json()["detail"]
    assert stored_keys(app) == keys
    renamed = import_(client, auth, archive, slug="source-copy")
    assert renamed.status_code == 201
    assert renamed.get_json()["slug"] == "source-copy"
    assert (
        history(client, auth, "source-copy")["manifests"]
        == (history(client, auth, "source")["manifests"])
    )
    bad = import_(client, auth, archive, slug="Not A Slug")
    assert bad.status_code == 422


def test_quotas_refuse_an_import_and_leave_nothing(app, client, auth, platform_key):
    build_history(client, auth, "source", revisions=4)
    archive = export(client, auth, "source")
    target = make_tenant(app, slug="target")
    target_auth = bearer(make_api_key(app, target)[1])
    config = f"{API}/tenants/{target.id}/config"

    def limit(**quotas):
        response = client.patch(config, json={"quotas": quotas}, headers=bearer(platform_key))
        assert response.status_code == 200, response.get_data(as_text=True)

    keys = stored_keys(app)
    limit(max_projects=0)
    assert_problem(import_(client, target_auth, archive), 403, "quota_exceeded")
    limit(max_projects=10, max_storage_bytes=BIG)  # the big entry fits, not the rest
    assert_problem(import_(client, target_auth, archive), 403, "quota_exceeded")
    limit(max_storage_bytes=None, max_entry_bytes=BIG - 1)
    assert_problem(import_(client, target_auth, archive), 413, "entry_too_large")
    assert stored_keys(app) == keys
    with app.app_context():
        assert not Project.select().where(Project.tenant_id == target.id).exists()
    usage = client.get(f"{API}/tenant", headers=target_auth).get_json()["usage"]
    assert usage["storage_bytes"] == 0
    limit(max_entry_bytes=None)
    # The big entry is application/octet-stream.
    only_text = {"allowed_content_types": ["text/*"], "default_content_type": "text/plain"}
    settings = client.patch(f"{API}/tenant/settings", json=only_text, headers=target_auth)
    assert settings.status_code == 200, settings.get_data(as_text=True)
    assert_problem(import_(client, target_auth, archive), 415, "unsupported_media_type")
    assert stored_keys(app) == keys
    settings = client.patch(
        f"{API}/tenant/settings", json={"allowed_content_types": None}, headers=target_auth
    )
    assert settings.status_code == 200, settings.get_data(as_text=True)
    assert import_(client, target_auth, archive).status_code == 201


@pytest.fixture
def small_import_limit(app_config):
    app_config["MAX_IMPORT_BYTES"] = 20_000
    return app_config


def test_an_archive_past_the_limit_stops_while_streaming(
    small_import_limit, app, client, auth, other_auth
):
    build_history(client, auth, "source", revisions=4)
    archive = export(client, auth, "source")
    keys = stored_keys(app)

    announced = import_(client, other_auth, archive)  # Content-Length: refused before reading
    assert_problem(announced, 413, "payload_too_large")
    # No Content-Length: the limit holds as the body streams.
    response = client.post(
        IMPORT,
        input_stream=io.BytesIO(archive),
        headers={**other_auth, **TAR},
        environ_base={"wsgi.input_terminated": True},
    )
    assert_problem(response, 413, "payload_too_large")
    assert stored_keys(app) == keys and project_rows(app) == ["source"]


def test_the_request_must_be_an_archive_type(client, auth):
    response = client.post(IMPORT, json={"not": "an archive"}, headers=auth)
    assert_problem(response, 415, "unsupported_media_type")


# --- permission, isolation, routing -------------------------------------------------------


def test_export_and_import_need_projects_write_and_stay_in_the_tenant(
    app, client, tenant, auth, other_auth
):
    build_history(client, auth, "source", revisions=2)
    reader = bearer(make_api_key(app, tenant, scopes=["projects:read", "context:read"])[1])
    assert_problem(client.post(export_url("source"), headers=reader), 403, "forbidden")
    archive = export(client, auth, "source")
    assert_problem(import_(client, reader, archive, slug="x"), 403, "forbidden")
    # Another tenant's project is absent, by slug and by id.
    project_id = client.get(project_url("source"), headers=auth).get_json()["id"]
    for ref in ("source", project_id):
        assert_problem(client.post(export_url(ref), headers=other_auth), 404, "not_found")
    restricted = bearer(make_api_key(app, tenant, project_ids=["prj_other"])[1])
    assert_problem(client.post(export_url("source"), headers=restricted), 404, "not_found")
    assert_problem(import_(client, restricted, archive, slug="y"), 403, "forbidden")


def test_a_project_named_import_stays_reachable(client, auth):
    create_project(client, auth, name="Import", slug="import")
    assert client.get(project_url("import"), headers=auth).get_json()["slug"] == "import"
    changed = client.patch(project_url("import"), json={"description": "d"}, headers=auth)
    assert changed.status_code == 200 and changed.get_json()["description"] == "d"
    assert client.post(export_url("import"), headers=auth).status_code == 200
    assert client.delete(project_url("import"), headers=auth).status_code == 204
    assert client.get(project_url("import"), headers=auth).status_code == 404


def test_an_archive_made_elsewhere_imports(client, auth):
    done = import_(client, auth, minimal_archive("handmade", "Hand made"))
    assert done.status_code == 201, done.get_data(as_text=True)
    assert done.get_json()["name"] == "Hand made"


def test_an_empty_project_round_trips(client, auth, other_auth):
    create_project(client, auth, name="Empty", slug="empty", metadata={"k": [1, 2]})
    archive = export(client, auth, "empty")
    done = import_(client, other_auth, archive)
    assert done.status_code == 201
    body = done.get_json()
    assert body["revision"] == 0 and body["metadata"] == {"k": [1, 2]}


def test_a_pruned_project_exports_its_kept_revisions(app, client, auth, other_auth):
    build_history(client, auth, "source", revisions=10)
    result = app.test_cli_runner().invoke(args=["context", "prune", "--keep", "4"])
    assert result.exit_code == 0, result.output
    before = history(client, auth, "source")
    assert before["history_starts_at"] == 7
    assert import_(client, other_auth, export(client, auth, "source")).status_code == 201
    after = history(client, other_auth, "source")
    assert after["manifests"] == before["manifests"] and after["versions"] == before["versions"]
    assert after["history_starts_at"] == 7
    assert [r["revision"] for r in after["log"]] == [10, 9, 8, 7]


# --- the command line, and another instance -----------------------------------------------


@pytest.fixture
def second_app(app_config, tmp_path):
    """Another instance: its own database, storage and master keys."""
    config = {
        **app_config,
        **stack.per_test_config(),
        "DATA_DIR": str(tmp_path / "second"),
        "MASTER_KEYS": json.dumps({"second-1": base64.b64encode(os.urandom(32)).decode()}),
    }
    with ExitStack() as exits:
        if stack.is_production:
            config["DATABASE_URL"] = exits.enter_context(stack.postgres_database())
        application = create_app(config)
        with application.app_context():
            upgrade(application.extensions["ctxcloud"].database, all_migrations())
            application.extensions["ctxcloud"].database.close()
        exits.callback(stack.close, application)
        yield application


def run(app, *args, stdin=None):
    return app.test_cli_runner().invoke(args=list(args), input=stdin)


def test_the_command_line_round_trips_to_another_instance(app, client, auth, second_app, tmp_path):
    build_history(client, auth, "source", revisions=8)
    before = history(client, auth, "source")
    plain = tmp_path / "plain.tar"
    exported = run(app, "projects", "export", "--tenant", "acme", "source", str(plain), "--json")
    assert exported.exit_code == 0, exported.output
    assert "plaintext" in exported.stderr and "warning" in exported.stderr
    assert json.loads(exported.stdout)["revision"] == 8

    secret = tmp_path / "passphrase"
    secret.write_text(PASSPHRASE + "\n")
    sealed = tmp_path / "sealed.tar.enc"
    encrypted = run(
        app,
        "projects",
        "export",
        "--tenant",
        "acme",
        "source",
        str(sealed),
        "--passphrase-file",
        str(secret),
    )
    assert encrypted.exit_code == 0, encrypted.output
    assert "plaintext" not in encrypted.stderr
    assert sealed.read_bytes().startswith(archive_crypto.MAGIC)

    target = make_tenant(second_app, slug="elsewhere")
    other = second_app.test_client()
    other_auth = bearer(make_api_key(second_app, target)[1])
    done = run(second_app, "projects", "import", "--tenant", "elsewhere", str(plain), "--json")
    assert done.exit_code == 0, done.output
    assert history(other, other_auth, "source") == before
    clash = run(second_app, "projects", "import", "--tenant", "elsewhere", str(plain))
    assert clash.exit_code == 1 and "exists" in clash.output
    wrong = run(
        second_app,
        "projects",
        "import",
        "--tenant",
        "elsewhere",
        str(sealed),
        "--slug",
        "sealed",
        stdin="wrong passphrase\n",
    )
    assert wrong.exit_code == 1 and "Wrong passphrase" in wrong.output
    prompted = run(
        second_app,
        "projects",
        "import",
        "--tenant",
        "elsewhere",
        str(sealed),
        "--slug",
        "sealed",
        stdin=PASSPHRASE + "\n",
    )
    assert prompted.exit_code == 0, prompted.output
    assert history(other, other_auth, "sealed")["manifests"] == before["manifests"]
    # The API of the second instance takes the first one's archive too.
    again = other.post(
        f"{IMPORT}?slug=via-api",
        data=sealed.read_bytes(),
        headers={
            **other_auth,
            "Content-Type": "application/octet-stream",
            "Archive-Passphrase": PASSPHRASE,
        },
    )
    assert again.status_code == 201, again.get_data(as_text=True)
    assert history(other, other_auth, "via-api")["versions"] == before["versions"]


def test_the_command_line_names_a_missing_project_or_tenant(app, tmp_path):
    make_tenant(app, slug="acme2")
    out = str(tmp_path / "x.tar")
    missing = run(app, "projects", "export", "--tenant", "acme2", "nothing", out)
    assert missing.exit_code == 1 and "no project" in missing.output
    nobody = run(app, "projects", "export", "--tenant", "nobody", "nothing", out)
    assert nobody.exit_code == 1 and "no tenant" in nobody.output
    assert not Path(out).exists()
    garbage = tmp_path / "garbage.tar"
    garbage.write_bytes(secrets.token_bytes(2048))
    refused = run(app, "projects", "import", "--tenant", "acme2", str(garbage))
    assert refused.exit_code == 1 and "tar" in refused.output


def test_export_and_import_are_audited(client, auth, other_auth):
    create_project(client, auth, name="Audited", slug="audited")
    put(client, auth, "audited", "a.md", b"a\n")
    archive = export(client, auth, "audited", **{"Archive-Passphrase": PASSPHRASE})
    done = import_(client, other_auth, archive, **{"Archive-Passphrase": PASSPHRASE})
    assert done.status_code == 201
    for headers, kind in ((auth, "project_exported"), (other_auth, "project_imported")):
        events = client.get(f"{API}/audit-events?type={kind}", headers=headers)
        assert events.status_code == 200, events.get_data(as_text=True)
        [event] = events.get_json()
        assert event["type"] == kind and event["target"]["project_id"]
        assert PASSPHRASE not in json.dumps(event)
