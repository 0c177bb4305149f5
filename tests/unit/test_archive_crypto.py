"""The encrypted archive format (plugins/context/archive_crypto.py): segments of 64 KiB under
a passphrase's scrypt key; any change, cut, reordering or extra byte fails, a wrong
passphrase is told apart, and both directions stream."""

from __future__ import annotations

import io
import os

import pytest

from ctxcloud.plugins.context import archive_crypto as ac

PASS = b"correct horse battery staple"
FAST = 14  # the smallest cost accepted, to keep the tests quick


def sealed(data: bytes, pieces: int = 1, passphrase: bytes = PASS) -> bytes:
    step = max(1, len(data) // pieces)
    chunks = [data[i : i + step] for i in range(0, len(data), step)] or [b""]
    return b"".join(ac.encrypt(passphrase, chunks, log2_n=FAST))


def opened(blob: bytes, passphrase: bytes = PASS) -> bytes:
    return b"".join(ac.decrypt(passphrase, io.BytesIO(blob)))


@pytest.mark.parametrize(
    "size", [0, 1, ac.SEGMENT - 1, ac.SEGMENT, ac.SEGMENT + 1, 3 * ac.SEGMENT, 200_001]
)
def test_round_trip_at_segment_edges(size):
    data = os.urandom(size)
    blob = sealed(data, pieces=7)
    assert blob.startswith(ac.MAGIC) and ac.is_encrypted(blob)
    segments = max(1, -(-size // ac.SEGMENT))
    assert len(blob) == ac.HEADER_BYTES + size + segments * ac.TAG
    assert opened(blob) == data


def test_the_header_says_version_and_cost():
    blob = sealed(b"x")
    at = len(ac.MAGIC)
    assert blob[at : at + 4] == bytes([ac.VERSION, FAST, ac.R, ac.P])


def test_a_wrong_passphrase_is_told_apart():
    with pytest.raises(ac.ArchiveCryptoError) as caught:
        opened(sealed(b"secret"), b"wrong passphrase")
    assert caught.value.reason == "wrong_passphrase"


@pytest.mark.parametrize(
    "damage",
    [
        "flip a ciphertext byte",
        "flip a header byte",
        "cut the last byte",
        "cut at a segment boundary",
        "drop a middle segment",
        "swap two segments",
        "append a byte",
        "header only",
    ],
)
def test_any_damage_fails(damage):
    data = os.urandom(3 * ac.SEGMENT + 10)
    blob = bytearray(sealed(data))
    seg = ac.SEGMENT + ac.TAG
    h = ac.HEADER_BYTES
    if damage == "flip a ciphertext byte":
        blob[h + seg + 5] ^= 1
    elif damage == "flip a header byte":
        blob[len(ac.MAGIC) + 5] ^= 1  # the salt: another key, caught by the check
    elif damage == "cut the last byte":
        blob = blob[:-1]
    elif damage == "cut at a segment boundary":
        blob = blob[: h + 2 * seg]
    elif damage == "drop a middle segment":
        blob = blob[: h + seg] + blob[h + 2 * seg :]
    elif damage == "swap two segments":
        blob = blob[:h] + blob[h + seg : h + 2 * seg] + blob[h : h + seg] + blob[h + 2 * seg :]
    elif damage == "append a byte":
        blob += b"\0"
    elif damage == "header only":
        blob = blob[:h]
    with pytest.raises(ac.ArchiveCryptoError) as caught:
        opened(bytes(blob))
    assert caught.value.reason in ("damaged", "malformed", "wrong_passphrase")


def test_unknown_versions_and_costly_parameters_are_refused_before_deriving():
    blob = bytearray(sealed(b"x"))
    at = len(ac.MAGIC)
    for offset, value in ((0, 2), (1, 30), (2, 64), (3, 9)):
        changed = bytearray(blob)
        changed[at + offset] = value
        with pytest.raises(ac.ArchiveCryptoError) as caught:
            opened(bytes(changed))
        assert caught.value.reason == "malformed"


def test_both_directions_stream():
    """Encryption yields a segment as soon as one is full; decryption reads one segment
    ahead, never the whole archive."""

    def endless():
        while True:
            yield b"z" * 10_000

    pieces = ac.encrypt(PASS, endless(), log2_n=FAST)
    header = next(pieces)
    first = next(pieces)
    assert len(header) == ac.HEADER_BYTES and len(first) == ac.SEGMENT + ac.TAG

    class Counting(io.BytesIO):
        taken = 0

        def read(self, size=-1):
            data = super().read(size)
            Counting.taken += len(data)
            return data

    blob = sealed(os.urandom(10 * ac.SEGMENT))
    reader = ac.decrypt(PASS, Counting(blob))
    assert len(next(reader)) == ac.SEGMENT
    assert Counting.taken <= ac.HEADER_BYTES + 2 * (ac.SEGMENT + ac.TAG)


def test_the_documented_decryption_sketch_decrypts(tmp_path):
    """docs/export-import.md's Python block reads an archive this module wrote."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    page = (Path(__file__).resolve().parents[2] / "docs" / "export-import.md").read_text()
    (code,) = re.findall(r"```python\n(.*?)```", page, re.S)
    script = tmp_path / "decrypt.py"
    script.write_text(code)
    data = os.urandom(2 * ac.SEGMENT + 123)
    sealed_file = tmp_path / "a.tar.enc"
    sealed_file.write_bytes(sealed(data))
    done = subprocess.run(
        [sys.executable, str(script), str(sealed_file), PASS.decode()],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == data
