"""`ctxcloud storage migrate` across every backend: local files, then GCS, then Azure, then S3,
each on its real emulator, switching the service over after every move.

At each hop the command copies every object (ciphertext, verified), a second run copies
nothing, and the service started on the new backend reads every entry of every kept revision
byte for byte, with the same database and the same keys.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator

import pytest

from ctxcloud import create_app
from tests import stack
from tests.support.azurite import azurite
from tests.support.context import create_project, entry_url, put_entry
from tests.support.factories import bearer, make_api_key, make_tenant
from tests.support.gcs_emulator import gcs_emulator

P = "handbook"


@pytest.fixture
def targets(s3_server) -> Iterator[dict[str, dict]]:
    """Settings of one empty place on each cloud backend, by backend name."""
    with gcs_emulator() as gcs, azurite() as azure:
        bucket = gcs.create_bucket(f"t-{uuid.uuid4().hex[:20]}")
        container = azure.create_container()
        yield {
            "gcs": gcs.config(bucket),
            "azure": azure.config(AZURE_CONTAINER=container),
            "s3": s3_server.config(S3_PREFIX=f"t-{uuid.uuid4().hex[:8]}/"),
        }


@pytest.fixture
def local_app(app_config):
    """The service on local files (whatever the stack's default backend), with its history."""
    app_config.update(STORAGE_BACKEND="local")
    with stack.migrated_app(app_config) as app:
        yield app


def write_history(app) -> tuple[dict[tuple[str, int], bytes], str]:
    """Several revisions, some entries rewritten: {(path, revision): bytes}, and an API key."""
    client = app.test_client()
    tenant = make_tenant(app, slug="acme", name="ACME")
    secret = make_api_key(app, tenant)[1]
    auth = bearer(secret)
    create_project(client, auth, name="Handbook", slug=P)
    versions: dict[tuple[str, int], bytes] = {}
    for path, data in [
        ("readme.md", b"# v1\n"),
        ("readme.md", b"# v2\n"),
        ("docs/big.bin", os.urandom(2 * 1024 * 1024 + 5)),  # multi-chunk on every backend
        ("empty", b""),
    ]:
        response = put_entry(client, auth, P, path, data)
        assert response.status_code in (200, 201), response.get_data(as_text=True)
        versions[(path, response.get_json()["revision"])] = data
    return versions, secret


def migrate(app, backend: str, settings: dict) -> dict:
    pairs = [
        arg
        for name, value in settings.items()
        if name != "STORAGE_BACKEND" and value is not None
        for arg in ("--to-setting", f"{name}={value}")
    ]
    result = app.test_cli_runner().invoke(
        args=["storage", "migrate", "--to", backend, *pairs, "--json"]
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def reads_every_revision(app, secret: str, versions: dict[tuple[str, int], bytes]) -> None:
    client = app.test_client()
    assert client.get("/api/v1/health").get_json()["checks"]["storage"] == "ok"
    for (path, revision), data in versions.items():
        response = client.get(entry_url(P, path, revision=revision), headers=bearer(secret))
        assert response.status_code == 200, (path, revision, response.get_json())
        assert response.data == data, (path, revision)


def test_local_to_gcs_to_azure_to_s3_and_every_revision_reads_after_each_switch(
    local_app, app_config, targets
) -> None:
    versions, secret = write_history(local_app)
    objects = len(versions)  # one object per version written
    current = local_app
    try:
        for backend in ("gcs", "azure", "s3"):
            settings = targets[backend]
            report = migrate(current, backend, settings)
            assert (report["objects"], report["copied"], report["failed"]) == (objects, objects, 0)
            again = migrate(current, backend, settings)
            assert (again["copied"], again["already_there"]) == (0, objects)
            if current is not local_app:
                stack.close(current)
            current = create_app({**app_config, **settings})
            assert current.config["STORAGE_BACKEND"] == backend
            reads_every_revision(current, secret, versions)
    finally:
        if current is not local_app:
            stack.close(current)
