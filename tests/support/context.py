"""Helpers for the projects and context tests: URLs, requests, and a look at stored objects."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote, urlencode

import flask

API = "/api/v1"


def project_url(project: str) -> str:
    return f"{API}/projects/{quote(project, safe='')}"


def context_url(project: str, **query: Any) -> str:
    url = f"{project_url(project)}/context"
    return f"{url}?{urlencode(query)}" if query else url


def entry_url(project: str, path: str, **query: Any) -> str:
    """The entry's URL with the path percent-encoded (slashes kept), as any HTTP client sends it."""
    url = f"{project_url(project)}/context/entries/{quote(path, safe='/')}"
    return f"{url}?{urlencode(query)}" if query else url


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def create_project(client, headers: dict, name: str = "Handbook", **fields: Any) -> dict:
    response = client.post(f"{API}/projects", json={"name": name, **fields}, headers=headers)
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()


def put_entry(
    client, headers: dict, project: str, path: str, data: bytes, expect: int | None = None, **kw
):
    response = client.put(entry_url(project, path), data=data, headers=headers, **kw)
    if expect is not None:
        assert response.status_code == expect, response.get_data(as_text=True)
    return response


def head_revision(client, headers: dict, project: str) -> int:
    response = client.get(project_url(project), headers=headers)
    assert response.status_code == 200
    return response.get_json()["revision"]


def storage(app: flask.Flask):
    return app.extensions["ctxcloud"].storage


def stored_keys(app: flask.Flask) -> set[str]:
    """Every object key in the app's storage backend."""
    return set(storage(app).list())


def temp_files(app: flask.Flask) -> list[str]:
    """Upload leftovers: the local backend's temp files, or the cloud backend's incomplete
    uploads (S3 multipart uploads, Azure uncommitted blocks; GCS lists none)."""
    backend = storage(app)
    if hasattr(backend, "root"):
        tmp = Path(backend.root) / ".tmp"
        return sorted(os.listdir(tmp)) if tmp.is_dir() else []
    return sorted(upload.key for upload in backend.incomplete_uploads())


@dataclass(frozen=True)
class StoredFile:
    """One stored object, read and rewritten through the backend (any backend), as an operator
    with storage access could; the same calls as a pathlib.Path."""

    app: flask.Flask
    key: str

    def read_bytes(self) -> bytes:
        return b"".join(storage(self.app).get(self.key))

    def write_bytes(self, data: bytes) -> None:
        storage(self.app).put(self.key, [data])

    def unlink(self) -> None:
        storage(self.app).delete(self.key)

    def stat(self) -> SimpleNamespace:
        return SimpleNamespace(st_size=storage(self.app).head(self.key).size)


def object_file(app: flask.Flask, key: str) -> StoredFile:
    """The stored object `key`, to read or tamper with."""
    return StoredFile(app, key)


def object_keys_of(app: flask.Flask, project_id: str) -> set[str]:
    """Keys of every stored version of a project (read from the database, not the API)."""
    from ctxcloud.plugins.context.models import EntryVersion

    with app.app_context():
        return {
            key
            for (key,) in EntryVersion.select(EntryVersion.object_key)
            .where(EntryVersion.project == project_id, EntryVersion.object_key.is_null(False))
            .tuples()
        }


def object_key_of(app: flask.Flask, project_id: str, path: str) -> str:
    """The object key of a path's newest stored version."""
    from ctxcloud.plugins.context.models import EntryVersion

    with app.app_context():
        version = (
            EntryVersion.select()
            .where(
                EntryVersion.project == project_id,
                EntryVersion.path == path,
                EntryVersion.object_key.is_null(False),
            )
            .order_by(EntryVersion.revision.desc())
            .first()
        )
        assert version is not None, f"no stored version of {path!r}"
        return version.object_key
