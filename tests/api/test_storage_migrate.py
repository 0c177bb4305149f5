"""`ctxcloud storage migrate --to BACKEND`: every object copied as ciphertext, verified, resumable,
and the service reads every entry of every kept revision from the new backend after the switch.

The target here is a local directory of its own (`--to local --to-setting STORAGE_LOCAL_ROOT=`);
on the production tier the source is S3. tests/storage/ moves between the cloud backends.
"""

from __future__ import annotations

import json
import os

import pytest

from ctxcloud import create_app
from tests import stack
from tests.support.context import create_project, entry_url, put_entry, storage
from tests.support.factories import bearer, make_api_key

# Runs again on each cloud storage backend (tests/stack.py, CTXCLOUD_TEST_STORAGE).
pytestmark = pytest.mark.every_backend

P = "handbook"


@pytest.fixture
def auth(app, tenant) -> dict:
    return bearer(make_api_key(app, tenant)[1])


@pytest.fixture
def history(client, auth) -> dict[tuple[str, int], bytes]:
    """Entries written over several revisions: {(path, revision): bytes} of every version."""
    create_project(client, auth, name="Handbook", slug=P)
    versions: dict[tuple[str, int], bytes] = {}
    writes = [
        ("readme.md", b"# Handbook v1\n"),
        ("readme.md", b"# Handbook v2\n"),
        ("docs/big.bin", os.urandom(3 * 65536 + 11)),
        ("empty", b""),
    ]
    for path, data in writes:
        response = put_entry(client, auth, P, path, data)
        assert response.status_code in (200, 201), response.get_data(as_text=True)
        versions[(path, response.get_json()["revision"])] = data
    return versions


def migrate(app, target_root, *extra: str) -> dict:
    result = app.test_cli_runner().invoke(
        args=[
            "storage",
            "migrate",
            "--to",
            "local",
            "--to-setting",
            f"STORAGE_LOCAL_ROOT={target_root}",
            "--json",
            *extra,
        ]
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_every_object_is_copied_verified_and_a_second_run_copies_nothing(app, history, tmp_path):
    source_keys = set(storage(app).list(""))
    first = migrate(app, tmp_path / "new")
    assert len(source_keys) == len(history)  # one object per version written
    assert (first["objects"], first["copied"], first["already_there"], first["failed"]) == (
        len(source_keys),
        len(source_keys),
        0,
        0,
    )
    again = migrate(app, tmp_path / "new")
    assert (again["copied"], again["already_there"], again["failed"]) == (0, len(source_keys), 0)
    assert set(storage_at(tmp_path / "new").list("")) == source_keys
    # Ciphertext, byte for byte: nothing was decrypted on the way.
    for key in source_keys:
        assert (tmp_path / "new" / key).read_bytes() == b"".join(storage(app).get(key))


def test_a_damaged_or_missing_copy_is_copied_again(app, history, tmp_path):
    migrate(app, tmp_path / "new")
    keys = sorted(storage(app).list(""))
    damaged, lost = tmp_path / "new" / keys[0], tmp_path / "new" / keys[1]
    damaged.write_bytes(b"X" + damaged.read_bytes()[1:])
    lost.unlink()
    again = migrate(app, tmp_path / "new")
    assert (again["copied"], again["failed"]) == (2, 0)
    assert damaged.read_bytes() == b"".join(storage(app).get(keys[0]))


def test_after_the_switch_every_revision_reads_back_byte_exact(app, app_config, history, tmp_path):
    migrate(app, tmp_path / "new")
    switched = create_app(
        {**app_config, "STORAGE_BACKEND": "local", "STORAGE_LOCAL_ROOT": str(tmp_path / "new")}
    )
    try:
        client = switched.test_client()
        auth = bearer(make_api_key(switched, _tenant_of(switched))[1])
        for (path, revision), data in history.items():
            response = client.get(entry_url(P, path, revision=revision), headers=auth)
            assert response.status_code == 200, (path, revision)
            assert response.data == data
    finally:
        stack.close(switched)


def test_an_unknown_target_is_refused_naming_the_backends(app):
    result = app.test_cli_runner().invoke(args=["storage", "migrate", "--to", "nowhere"])
    assert result.exit_code != 0
    assert "'nowhere' is not provided" in result.output and "local" in result.output


def storage_at(root):
    from ctxcloud.plugins.storage_local.backend import LocalStorage

    return LocalStorage(root, create=False)


def _tenant_of(app):
    from ctxcloud.tenancy.models import Tenant

    with app.app_context():
        return Tenant.select().first()


def test_the_tier_stores_on_the_backend_it_names(app):
    expected = stack.STORAGE if stack.is_production else "local"
    assert app.config["STORAGE_BACKEND"] == expected
    module = type(storage(app)).__module__
    assert module.startswith(
        (f"ctxcloud.plugins.storage_{expected}", f"ctxcloud_storage_{expected}")
    )
    storage(app).put("o/ti/er", [b"tier"])
    assert b"".join(storage(app).get("o/ti/er")) == b"tier"
