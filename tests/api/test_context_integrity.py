"""Encryption at rest through the API: tampered objects are never served as if whole, master keys
are needed and rotate, and what is stored reveals neither names nor plaintext."""

from __future__ import annotations

import base64
import json
import logging
import os
import random
from contextlib import contextmanager
from pathlib import Path

import pytest

from ctxcloud import create_app
from ctxcloud.crypto import HEADER_SIZE, SEGMENT_SIZE, TAG_SIZE, ciphertext_size
from ctxcloud.errors import IntegrityFailure
from ctxcloud.objects import RESPONSE_CHUNK
from tests import stack
from tests.api.test_core import assert_problem
from tests.support.context import (
    StoredFile,
    context_url,
    create_project,
    entry_url,
    object_file,
    object_key_of,
    put_entry,
    sha256,
    storage,
    stored_keys,
    temp_files,
)
from tests.support.factories import bearer, make_api_key, make_tenant

# Runs again on each cloud storage backend (tests/stack.py, CTXCLOUD_TEST_STORAGE).
pytestmark = pytest.mark.every_backend

STRIDE = SEGMENT_SIZE + TAG_SIZE
SMALL = b"a small entry that fits one segment\n" * 10
# Responses are sent in RESPONSE_CHUNK pieces, each authenticated before it goes out: LARGE
# spans more than one piece (FULL full segments and a partial last one).
FIRST_PIECE_SEGMENTS = RESPONSE_CHUNK // SEGMENT_SIZE
FULL = FIRST_PIECE_SEGMENTS + 4
LARGE = random.Random(7).randbytes(FULL * SEGMENT_SIZE + 1000)


def new_master_key() -> str:
    return base64.b64encode(os.urandom(32)).decode()


@pytest.fixture
def auth(app, tenant) -> dict:
    return bearer(make_api_key(app, tenant)[1])


@pytest.fixture
def project(client, auth) -> dict:
    return create_project(client, auth, name="Vault", slug="vault")


def put(client, auth, path: str, data: bytes, slug: str = "vault") -> None:
    response = put_entry(client, auth, slug, path, data)
    assert response.status_code in (200, 201), response.get_data(as_text=True)


def object_of(app, project: dict, path: str) -> StoredFile:
    return object_file(app, object_key_of(app, project["id"], path))


def rewrite(file: StoredFile, change) -> None:
    file.write_bytes(change(file.read_bytes()))


def flip(offset: int):
    def change(data: bytes) -> bytes:
        position = offset if offset >= 0 else len(data) + offset
        return data[:position] + bytes([data[position] ^ 0x01]) + data[position + 1 :]

    return change


def segment(index: int) -> slice:
    return slice(HEADER_SIZE + index * STRIDE, HEADER_SIZE + (index + 1) * STRIDE)


def integrity_logged(caplog) -> bool:
    return any("integrity_error" in record.getMessage() for record in caplog.records)


def assert_refused_before_any_byte(response, plaintext: bytes, caplog) -> None:
    """A 500 integrity_error problem: not a byte of the entry was sent, and it was logged."""
    assert_problem(response, 500, "integrity_error")
    assert not plaintext or plaintext[:32] not in response.data
    assert integrity_logged(caplog)


def assert_never_complete(response, plaintext: bytes, caplog) -> None:
    """Headers went out (the fault lies beyond the first piece), but the body never completes:
    iterating it fails, or it is shorter than Content-Length; and the fault is logged."""
    assert response.status_code in (200, 206)
    declared = int(response.headers["Content-Length"])
    received = b""
    failed = False
    try:
        for chunk in response.response:
            received += chunk
    except IntegrityFailure:
        failed = True
    assert failed or len(received) < declared
    assert received != plaintext
    # What was sent is authentic: a prefix of the entry, nothing invented.
    assert plaintext.startswith(received)
    assert integrity_logged(caplog)


# Tampering -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "offset",
    [0, 1, HEADER_SIZE - 1, HEADER_SIZE, HEADER_SIZE + 100, -1],
    ids=["version", "salt", "nonce-prefix", "first-ciphertext-byte", "ciphertext", "tag"],
)
def test_flipped_byte_in_a_single_segment_entry(app, client, auth, project, caplog, offset):
    put(client, auth, "a.txt", SMALL)
    rewrite(object_of(app, project, "a.txt"), flip(offset))
    with caplog.at_level(logging.ERROR, logger="ctxcloud"):
        response = client.get(entry_url("vault", "a.txt"), headers=auth)
    assert_refused_before_any_byte(response, SMALL, caplog)


@pytest.mark.parametrize(
    "cut",
    [
        lambda n: 0,
        lambda n: HEADER_SIZE - 1,
        lambda n: HEADER_SIZE,
        lambda n: n - 1,
        lambda n: n - TAG_SIZE,
    ],
    ids=["empty", "inside-header", "header-only", "last-byte", "whole-tag"],
)
def test_truncated_single_segment_entry(app, client, auth, project, caplog, cut):
    put(client, auth, "a.txt", SMALL)
    rewrite(object_of(app, project, "a.txt"), lambda data: data[: cut(len(data))])
    with caplog.at_level(logging.ERROR, logger="ctxcloud"):
        response = client.get(entry_url("vault", "a.txt"), headers=auth)
    assert_refused_before_any_byte(response, SMALL, caplog)


def test_truncated_empty_entry(app, client, auth, project, caplog):
    put(client, auth, "empty", b"")
    rewrite(object_of(app, project, "empty"), lambda data: data[:HEADER_SIZE])
    with caplog.at_level(logging.ERROR, logger="ctxcloud"):
        response = client.get(entry_url("vault", "empty"), headers=auth)
    assert_refused_before_any_byte(response, b"", caplog)


@pytest.mark.parametrize(
    "change",
    [
        flip(HEADER_SIZE + 5),
        lambda data: data[segment(1)] + data[segment(0)] + data[HEADER_SIZE + 2 * STRIDE :],
        lambda data: data[:HEADER_SIZE] + data[segment(1)] + data[HEADER_SIZE + 2 * STRIDE :],
        # Cut right after the first segment: it now ends the object but is not flagged final.
        lambda data: data[: HEADER_SIZE + STRIDE],
    ],
    ids=["flip-first-segment", "swap-first-two-segments", "drop-first-segment", "only-first"],
)
def test_fault_in_the_first_segment_of_a_large_entry_is_500(
    app, client, auth, project, caplog, change
):
    put(client, auth, "big", LARGE)
    rewrite(object_of(app, project, "big"), change)
    with caplog.at_level(logging.ERROR, logger="ctxcloud"):
        response = client.get(entry_url("vault", "big"), headers=auth)
    assert_refused_before_any_byte(response, LARGE, caplog)


@pytest.mark.parametrize(
    "change",
    [
        flip(HEADER_SIZE + (FULL - 2) * STRIDE + 7),
        flip(-1),
        lambda data: data[: HEADER_SIZE + FULL * STRIDE],  # the final segment dropped
        lambda data: data[: HEADER_SIZE + FULL * STRIDE + 100],  # cut inside the final segment
        lambda data: data[: HEADER_SIZE + (FULL - 2) * STRIDE],  # the last three segments cut
        lambda data: data + b"\x00" * 50,  # trailing garbage
        lambda data: (
            data[: segment(FULL - 3).start]
            + data[segment(FULL - 2)]
            + data[segment(FULL - 3)]
            + data[segment(FULL - 1).start :]
        ),  # two later segments swapped
        lambda data: data[: segment(FULL - 2).start] + data[segment(FULL - 1).start :],
        lambda data: (
            data[: segment(FULL - 2).start]
            + data[segment(FULL - 3)]
            + data[segment(FULL - 2).start :]
        ),
    ],
    ids=[
        "flip-later-segment",
        "flip-final-tag",
        "drop-final-segment",
        "cut-final-segment",
        "cut-last-three-segments",
        "trailing-garbage",
        "swap-middle-segments",
        "drop-middle-segment",
        "duplicate-segment",
    ],
)
def test_fault_in_a_later_segment_never_completes_the_response(
    app, client, auth, project, caplog, change
):
    put(client, auth, "big", LARGE)
    rewrite(object_of(app, project, "big"), change)
    with caplog.at_level(logging.ERROR, logger="ctxcloud"):
        response = client.get(entry_url("vault", "big"), headers=auth)
        assert response.headers["Content-Length"] == str(len(LARGE))
        assert_never_complete(response, LARGE, caplog)


def test_fault_inside_the_first_piece_is_refused_before_any_byte(
    app, client, auth, project, caplog
):
    put(client, auth, "big", LARGE)
    rewrite(object_of(app, project, "big"), flip(HEADER_SIZE + 5 * STRIDE + 7))  # segment 5
    with caplog.at_level(logging.ERROR, logger="ctxcloud"):
        response = client.get(entry_url("vault", "big"), headers=auth)
    assert_refused_before_any_byte(response, LARGE, caplog)


def test_range_reads_only_authenticate_the_segments_they_need(app, client, auth, project, caplog):
    put(client, auth, "big", LARGE)
    rewrite(object_of(app, project, "big"), flip(HEADER_SIZE + 3 * STRIDE + 9))  # segment 3
    # Ranges inside intact segments are served, exactly.
    for first, last in (
        (0, 99),
        (SEGMENT_SIZE - 10, 2 * SEGMENT_SIZE + 10),
        (3 * SEGMENT_SIZE - 1,) * 2,
    ):
        response = client.get(
            entry_url("vault", "big"), headers={**auth, "Range": f"bytes={first}-{last}"}
        )
        assert response.status_code == 206
        assert response.data == LARGE[first : last + 1]
    # A range starting in the damaged segment fails before any byte.
    with caplog.at_level(logging.ERROR, logger="ctxcloud"):
        response = client.get(
            entry_url("vault", "big"),
            headers={**auth, "Range": f"bytes={3 * SEGMENT_SIZE + 5}-{3 * SEGMENT_SIZE + 50}"},
        )
        assert_refused_before_any_byte(response, LARGE[3 * SEGMENT_SIZE + 5 :], caplog)
    # So does one reaching it within the first piece sent.
    with caplog.at_level(logging.ERROR, logger="ctxcloud"):
        response = client.get(
            entry_url("vault", "big"),
            headers={**auth, "Range": f"bytes={2 * SEGMENT_SIZE}-{3 * SEGMENT_SIZE + 10}"},
        )
        assert_refused_before_any_byte(response, LARGE[2 * SEGMENT_SIZE :], caplog)
    # A range reaching a damaged segment beyond its first piece never completes.
    rewrite(object_of(app, project, "big"), flip(-1))  # the final segment's tag
    with caplog.at_level(logging.ERROR, logger="ctxcloud"):
        response = client.get(
            entry_url("vault", "big"), headers={**auth, "Range": f"bytes={4 * SEGMENT_SIZE}-"}
        )
        assert_never_complete(response, LARGE[4 * SEGMENT_SIZE :], caplog)


def test_objects_swapped_between_entries_fail(app, client, auth, project, caplog):
    put(client, auth, "a", b"alpha " * 100)
    put(client, auth, "b", b"bravo " * 100)
    a, b = object_of(app, project, "a"), object_of(app, project, "b")
    a_bytes, b_bytes = a.read_bytes(), b.read_bytes()
    a.write_bytes(b_bytes)
    b.write_bytes(a_bytes)
    with caplog.at_level(logging.ERROR, logger="ctxcloud"):
        for path, plaintext in (("a", b"alpha " * 100), ("b", b"bravo " * 100)):
            response = client.get(entry_url("vault", path), headers=auth)
            assert_refused_before_any_byte(response, plaintext, caplog)
            assert b"alpha" not in response.data and b"bravo" not in response.data


def test_an_older_version_put_back_fails(app, client, auth, project, caplog):
    """A rollback: the object of version 1 copied over the object of version 2."""
    put(client, auth, "a", b"version one " * 50)
    first = object_of(app, project, "a").read_bytes()
    put(client, auth, "a", b"version two " * 50)
    object_of(app, project, "a").write_bytes(first)
    with caplog.at_level(logging.ERROR, logger="ctxcloud"):
        response = client.get(entry_url("vault", "a"), headers=auth)
    assert_refused_before_any_byte(response, b"version two", caplog)
    assert b"version one" not in response.data


def test_object_of_another_project_fails(app, client, auth, project, caplog):
    other = create_project(client, auth, name="Other", slug="other")
    same = b"identical plaintext in both projects\n" * 20
    put(client, auth, "a", same)
    put(client, auth, "a", same, slug="other")
    object_of(app, project, "a").write_bytes(object_of(app, other, "a").read_bytes())
    with caplog.at_level(logging.ERROR, logger="ctxcloud"):
        response = client.get(entry_url("vault", "a"), headers=auth)
    assert_refused_before_any_byte(response, same, caplog)
    assert client.get(entry_url("other", "a"), headers=auth).data == same


def test_object_of_another_tenant_fails(app, client, auth, project, caplog):
    second = make_tenant(app, slug="second")
    second_auth = bearer(make_api_key(app, second)[1])
    theirs = create_project(client, second_auth, name="Vault", slug="vault")
    same = b"identical plaintext in both tenants\n" * 20
    put(client, auth, "a", same)
    put(client, second_auth, "a", same)
    mine = object_of(app, project, "a")
    mine.write_bytes(object_of(app, theirs, "a").read_bytes())
    with caplog.at_level(logging.ERROR, logger="ctxcloud"):
        response = client.get(entry_url("vault", "a"), headers=auth)
    assert_refused_before_any_byte(response, same, caplog)
    assert client.get(entry_url("vault", "a"), headers=second_auth).data == same


def test_missing_object_is_an_integrity_error(app, client, auth, project, caplog):
    put(client, auth, "a", SMALL)
    object_of(app, project, "a").unlink()
    with caplog.at_level(logging.ERROR, logger="ctxcloud"):
        response = client.get(entry_url("vault", "a"), headers=auth)
    assert_refused_before_any_byte(response, SMALL, caplog)


def test_tampered_entry_is_not_inlined_in_the_manifest(app, client, auth, project, caplog):
    put_entry(client, {**auth, "Content-Type": "text/plain"}, "vault", "a.txt", SMALL)
    rewrite(object_of(app, project, "a.txt"), flip(HEADER_SIZE + 3))
    with caplog.at_level(logging.ERROR, logger="ctxcloud"):
        response = client.get(context_url("vault", include_content="true"), headers=auth)
    assert_refused_before_any_byte(response, SMALL, caplog)
    # The manifest without content does not read objects.
    assert client.get(context_url("vault"), headers=auth).status_code == 200


def test_integrity_error_body_reveals_nothing(app, client, auth, project, caplog):
    put(client, auth, "a", SMALL)
    key = object_key_of(app, project["id"], "a")
    rewrite(object_file(app, key), flip(HEADER_SIZE))
    with caplog.at_level(logging.ERROR, logger="ctxcloud"):
        response = client.get(entry_url("vault", "a"), headers=auth)
    text = response.get_data(as_text=True)
    assert key not in text and "Traceback" not in text
    root = getattr(storage(app), "root", None)
    assert root is None or str(root) not in text


# Master keys -----------------------------------------------------------------------------------


@pytest.fixture
def master_keys(app_config) -> dict[str, str]:
    keys = {"k1": new_master_key()}
    app_config["MASTER_KEYS"] = json.dumps(keys)
    return keys


@contextmanager
def restarted(app_config: dict, **overrides):
    """The same data directory and database, served by a new app with other settings."""
    application = create_app({**app_config, **overrides})
    try:
        yield application
    finally:
        stack.close(application)


def test_wrong_master_key_fails_reads_instead_of_serving_garbage(
    master_keys, app_config, app, client, auth, project, caplog
):
    put(client, auth, "a", SMALL)
    put(client, auth, "big", LARGE)
    for keys in ({"k1": new_master_key()}, {"k2": new_master_key()}):
        with restarted(app_config, MASTER_KEYS=json.dumps(keys)) as other:
            other_client = other.test_client()
            with caplog.at_level(logging.ERROR, logger="ctxcloud"):
                for path, plaintext in (("a", SMALL), ("big", LARGE)):
                    response = other_client.get(entry_url("vault", path), headers=auth)
                    assert response.status_code == 500
                    assert response.mimetype == "application/problem+json"
                    assert plaintext[:32] not in response.data
                # Writing needs the data key too: refused, nothing stored.
                keys_before = stored_keys(app)
                response = other_client.put(entry_url("vault", "new"), data=b"x", headers=auth)
                assert response.status_code == 500
                assert stored_keys(app) == keys_before
    # The right key still reads everything.
    assert client.get(entry_url("vault", "big"), headers=auth).data == LARGE


def test_rotate_master_rewraps_data_keys_and_keeps_data_readable(
    master_keys, app_config, app, client, auth, project
):
    second = make_tenant(app, slug="second")
    second_auth = bearer(make_api_key(app, second)[1])
    create_project(client, second_auth, name="Theirs", slug="theirs")
    put(client, auth, "a", SMALL)
    put(client, auth, "big", LARGE)
    put(client, second_auth, "b", b"second tenant", slug="theirs")
    objects_before = {key: object_file(app, key).read_bytes() for key in stored_keys(app)}

    new = new_master_key()
    both = json.dumps({"k1": master_keys["k1"], "k2": new})
    with restarted(app_config, MASTER_KEYS=both, ACTIVE_MASTER_KEY="k2") as rotating:
        result = rotating.test_cli_runner().invoke(args=["keys", "rotate-master", "--json"])
        assert result.exit_code == 0, result.output
        report = json.loads(result.output)
        assert report["active"] == "k2"
        assert report["rotated"] == 2
        assert report["in_use"] == {"k2": 2}
        again = rotating.test_cli_runner().invoke(args=["keys", "rotate-master", "--json"])
        assert json.loads(again.output)["rotated"] == 0
        # Old and new key configured: everything reads.
        both_client = rotating.test_client()
        assert both_client.get(entry_url("vault", "big"), headers=auth).data == LARGE
        assert (
            both_client.get(entry_url("theirs", "b"), headers=second_auth).data == b"second tenant"
        )

    from ctxcloud.keystore import TenantKey

    with app.app_context():
        rows = {row.tenant_id: row.master_key_id for row in TenantKey.select()}
    assert set(rows.values()) == {"k2"}
    # The objects themselves were not touched.
    assert {key: object_file(app, key).read_bytes() for key in stored_keys(app)} == objects_before

    # Only the new key configured: still readable, and writable.
    with restarted(app_config, MASTER_KEYS=json.dumps({"k2": new})) as rotated:
        new_client = rotated.test_client()
        assert new_client.get(entry_url("vault", "a"), headers=auth).data == SMALL
        assert new_client.get(entry_url("vault", "big"), headers=auth).data == LARGE
        response = new_client.get(
            entry_url("vault", "big"), headers={**auth, "Range": "bytes=70000-70009"}
        )
        assert response.data == LARGE[70000:70010]
        assert (
            new_client.get(entry_url("theirs", "b"), headers=second_auth).data == b"second tenant"
        )
        assert put_entry(new_client, auth, "vault", "c", b"after rotation").status_code == 201
    # Only the retired key: nothing reads any more.
    with restarted(app_config, MASTER_KEYS=json.dumps({"k1": master_keys["k1"]})) as retired:
        assert retired.test_client().get(entry_url("vault", "a"), headers=auth).status_code == 500


# What storage reveals --------------------------------------------------------------------------


def test_object_names_and_bytes_reveal_nothing(app, app_config, client, tenant, auth):
    project = create_project(client, auth, name="Quarterly Secrets", slug="quarterly-secrets")
    marker = b"TOP-SECRET-PLAINTEXT-MARKER " * 4000  # compressible, recognisable
    paths = {
        "confidential/merger-plan.md": marker,
        "notes.txt": b"hello plaintext world",
        "empty": b"",
    }
    for path, data in paths.items():
        put(client, auth, path, data, slug="quarterly-secrets")
    commit = client.post(
        f"{context_url('quarterly-secrets')}/commits",
        json={"put": [{"path": "committed/plan.txt", "content": "COMMITTED-PLAINTEXT " * 100}]},
        headers=auth,
    )
    assert commit.status_code == 201

    keys = stored_keys(app)
    assert len(keys) == 4 and temp_files(app) == []
    forbidden = {
        tenant.id,
        tenant.slug,
        project["id"],
        project["slug"],
        "quarterly",
        "confidential",
        "merger",
        "notes",
        "committed",
    }
    for data in [*paths.values(), ("COMMITTED-PLAINTEXT " * 100).encode()]:
        forbidden |= {sha256(data), sha256(data)[:16], sha256(data)[:8]}
    root = getattr(storage(app), "root", None)  # local backend: every file name too
    names = [str(p.relative_to(root)) for p in Path(root).rglob("*")] if root else []
    for name in [*keys, *names]:
        for secret in forbidden:
            assert secret.lower() not in name.lower(), (secret, name)

    # No stored byte, in objects or anywhere else in the data directory (database included),
    # holds the entries' contents.
    data_dir = Path(app_config["DATA_DIR"])
    contents = [file.read_bytes() for file in data_dir.rglob("*") if file.is_file()]
    contents += [object_file(app, key).read_bytes() for key in keys]
    for content in contents:
        for needle in (b"TOP-SECRET-PLAINTEXT", b"hello plaintext world", b"COMMITTED-PLAINTEXT"):
            assert needle not in content, needle
    # Each object is its plaintext's size plus the format's fixed overhead, nothing more.
    plaintexts = [*paths.values(), ("COMMITTED-PLAINTEXT " * 100).encode()]
    assert sorted(object_file(app, key).stat().st_size for key in keys) == sorted(
        ciphertext_size(len(data)) for data in plaintexts
    )


def test_rotate_master_rewraps_every_data_key(master_keys, app_config, app):
    tenant_ids = [f"ten_rotation_{i:04d}" for i in range(300)]
    with app.app_context():
        keystore = app.extensions["ctxcloud"].keystore
        data_keys = {tenant_id: keystore.data_key(tenant_id) for tenant_id in tenant_ids}
    new = new_master_key()
    both = json.dumps({"k1": master_keys["k1"], "k2": new})
    with restarted(app_config, MASTER_KEYS=both, ACTIVE_MASTER_KEY="k2") as rotating:
        result = rotating.test_cli_runner().invoke(args=["keys", "rotate-master", "--json"])
        assert result.exit_code == 0, result.output
        assert json.loads(result.output)["rotated"] == 300
        assert json.loads(result.output)["in_use"] == {"k2": 300}
    with restarted(app_config, MASTER_KEYS=json.dumps({"k2": new})) as rotated:
        with rotated.app_context():
            keystore = rotated.extensions["ctxcloud"].keystore
            assert {t: keystore.data_key(t) for t in tenant_ids} == data_keys
