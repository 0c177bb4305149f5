"""Unit tests for app.crypto: the at-rest format, its failure modes and the master keyring."""

from __future__ import annotations

import ast
import base64
import io
import itertools
import json
import random
import traceback
import tracemalloc
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ctxcloud import crypto
from ctxcloud.crypto import (
    SEGMENT_SIZE,
    TAG_SIZE,
    IntegrityError,
    MasterKeyError,
    MasterKeyring,
    ciphertext_size,
    decrypt_range,
    decrypt_stream,
    encrypt_stream,
    new_data_key,
    plaintext_size,
)

S = SEGMENT_SIZE
STRIDE = S + TAG_SIZE
HEADER = 40  # version + 32-byte salt + 7-byte nonce prefix, as documented
AAD = b"tenant:1/entry:7"
KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))

BOUNDARY_SIZES = [0, 1, S - 1, S, S + 1, 2 * S, 3 * S - 1, 3 * S, 3 * S + 1, 3 * S + 100]


# --------------------------------------------------------------------------- helpers


def _plaintext(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def _cut(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def _cut_at(data: bytes, cuts: Iterable[int]) -> list[bytes]:
    points = sorted({0, len(data), *(c for c in cuts if 0 <= c <= len(data))})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def _encrypt(plaintext: bytes, key: bytes = KEY, aad: bytes = AAD) -> bytes:
    return b"".join(encrypt_stream(key, [plaintext], aad))


def _decrypt(ciphertext: bytes, key: bytes = KEY, aad: bytes = AAD, chunk: int = 10_000) -> bytes:
    return b"".join(decrypt_stream(key, _cut(ciphertext, chunk), aad))


def _split(ciphertext: bytes) -> tuple[bytes, list[bytes]]:
    body = ciphertext[HEADER:]
    return ciphertext[:HEADER], [body[i : i + STRIDE] for i in range(0, len(body), STRIDE)]


def _flip(data: bytes, position: int) -> bytes:
    out = bytearray(data)
    out[position] ^= 0x01
    return bytes(out)


def _reference_key(key: bytes, header: bytes, aad: bytes) -> AESGCM:
    """The documented key derivation, written independently of the module."""
    derived = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=header[1:33], info=b"ctxcloud-stream-v1" + aad
    ).derive(key)
    return AESGCM(derived)


def _reference_nonce(header: bytes, index: int, last: bool) -> bytes:
    return header[33:40] + index.to_bytes(4, "big") + bytes([last])


def _reference_encrypt(key: bytes, header: bytes, segments: list[bytes], aad: bytes) -> bytes:
    """Seal arbitrary segments exactly as documented (to build objects the module never makes)."""
    aead = _reference_key(key, header, aad)
    sealed = [
        aead.encrypt(_reference_nonce(header, i, i == len(segments) - 1), seg, header)
        for i, seg in enumerate(segments)
    ]
    return header + b"".join(sealed)


class RecordingReader:
    """A storage `read(cstart, cend)` that records ranges and answers in uneven pieces."""

    def __init__(self, stored: bytes, piece: int = 7_001) -> None:
        self.stored = stored
        self.piece = piece
        self.calls: list[tuple[int, int]] = []

    def __call__(self, first: int, last: int) -> Iterator[bytes]:
        self.calls.append((first, last))
        return iter(_cut(self.stored[first : last + 1], self.piece))


def _expected_reads(plaintext_len: int, start: int, end: int) -> list[tuple[int, int]]:
    segments = max(1, -(-plaintext_len // S))
    first, last = start // S, end // S
    last_len = STRIDE if last < segments - 1 else plaintext_len - last * S + TAG_SIZE
    seg_first, seg_last = HEADER + first * STRIDE, HEADER + last * STRIDE + last_len - 1
    if first == 0:
        return [(0, seg_last)]
    return [(0, HEADER - 1), (seg_first, seg_last)]


def _range(
    stored: bytes,
    plaintext_len: int,
    start: int,
    end: int,
    *,
    reader: Callable[[int, int], Iterable[bytes]] | None = None,
    key: bytes = KEY,
    aad: bytes = AAD,
) -> bytes:
    reader = reader or RecordingReader(stored)
    return b"".join(decrypt_range(key, reader, plaintext_len, start, end, aad))


# --------------------------------------------------------------------------- format


@pytest.mark.parametrize("size", BOUNDARY_SIZES)
@pytest.mark.parametrize("in_chunk", [None, 1_000, S, S + 1, 3 * S])
def test_round_trip_around_segment_boundaries(size: int, in_chunk: int | None) -> None:
    plaintext = _plaintext(size, seed=size)
    chunks = [plaintext] if in_chunk is None else _cut(plaintext, in_chunk)
    chunks = [b"", *itertools.chain.from_iterable((c, b"") for c in chunks)]
    ciphertext = b"".join(encrypt_stream(KEY, chunks, AAD))
    assert len(ciphertext) == ciphertext_size(size)
    for out_chunk in (1, 999, STRIDE, STRIDE + 1, len(ciphertext)):
        if out_chunk == 1 and size > S + 1:
            continue  # byte-at-a-time is covered on small objects; it is slow on large ones
        assert b"".join(decrypt_stream(KEY, _cut(ciphertext, out_chunk), AAD)) == plaintext


@pytest.mark.parametrize("size", BOUNDARY_SIZES)
def test_output_follows_the_documented_format(size: int) -> None:
    plaintext = _plaintext(size, seed=1)
    outputs = list(encrypt_stream(KEY, [plaintext], AAD))
    header, segments = outputs[0], outputs[1:]
    assert len(header) == HEADER and header[0] == 1
    expected_segments = max(1, -(-size // S))
    assert [len(s) for s in segments] == [STRIDE] * (expected_segments - 1) + [
        size - (expected_segments - 1) * S + TAG_SIZE
    ]
    aead = _reference_key(KEY, header, AAD)
    opened = [
        aead.decrypt(_reference_nonce(header, i, i == len(segments) - 1), seg, header)
        for i, seg in enumerate(segments)
    ]
    assert b"".join(opened) == plaintext


def test_each_encryption_uses_a_fresh_salt_and_nonce_prefix() -> None:
    first, second = _encrypt(b"same"), _encrypt(b"same")
    assert first[1:33] != second[1:33]
    assert first[33:40] != second[33:40]
    assert first[HEADER:] != second[HEADER:]


@pytest.mark.parametrize("size", [*BOUNDARY_SIZES, 1 << 30, S * (2**32 - 1)])
def test_sizes_are_consistent(size: int) -> None:
    stored = ciphertext_size(size)
    assert plaintext_size(stored) == size
    if size <= 3 * S + 100:
        assert len(_encrypt(_plaintext(size))) == stored


def test_empty_plaintext_is_a_header_and_one_empty_final_segment() -> None:
    assert ciphertext_size(0) == HEADER + TAG_SIZE
    stored = _encrypt(b"")
    assert len(stored) == HEADER + TAG_SIZE
    assert _decrypt(stored) == b""


@pytest.mark.parametrize(
    "stored",
    [
        0,
        HEADER,
        HEADER + TAG_SIZE - 1,
        HEADER + STRIDE + 5,  # final segment shorter than a tag
        HEADER + STRIDE + TAG_SIZE,  # empty final segment after a full one
        HEADER + 2 * STRIDE + TAG_SIZE,
    ],
)
def test_impossible_stored_sizes_are_integrity_errors(stored: int) -> None:
    with pytest.raises(IntegrityError):
        plaintext_size(stored)


def test_sizes_beyond_the_segment_counter_are_refused() -> None:
    with pytest.raises(ValueError):
        ciphertext_size(S * (2**32 - 1) + 1)
    with pytest.raises(IntegrityError):
        plaintext_size(ciphertext_size(S * (2**32 - 1)) + 17)
    with pytest.raises(ValueError):
        ciphertext_size(-1)


boundary_sizes = st.one_of(
    st.integers(0, 4 * S),
    st.builds(lambda k, d: max(0, k * S + d), st.integers(0, 4), st.integers(-3, 3)),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    size=boundary_sizes,
    seed=st.integers(0, 2**32),
    in_cuts=st.lists(st.integers(0, 4 * S + 3), max_size=12),
    out_cuts=st.lists(st.integers(0, 4 * (S + 3 * TAG_SIZE)), max_size=12),
    near_boundary=st.lists(st.integers(-2, 2), max_size=4),
)
def test_round_trip_with_random_chunking(
    size: int, seed: int, in_cuts: list[int], out_cuts: list[int], near_boundary: list[int]
) -> None:
    plaintext = _plaintext(size, seed)
    in_cuts = in_cuts + [k * S + d for k, d in enumerate(near_boundary, start=1)]
    ciphertext = b"".join(encrypt_stream(KEY, _cut_at(plaintext, in_cuts), AAD))
    assert len(ciphertext) == ciphertext_size(size)
    out_cuts = out_cuts + [HEADER + k * STRIDE + d for k, d in enumerate(near_boundary)]
    assert b"".join(decrypt_stream(KEY, _cut_at(ciphertext, out_cuts), AAD)) == plaintext


def test_a_reused_caller_buffer_is_not_aliased() -> None:
    """Callers often `readinto` one bytearray; a held view of it would corrupt the output."""
    plaintext = _plaintext(3 * S + 77)

    def readinto_chunks(data: bytes, size: int) -> Iterator[memoryview]:
        source, buffer = io.BytesIO(data), bytearray(size)
        view = memoryview(buffer)
        while count := source.readinto(buffer):
            yield view[:count]

    ciphertext = b"".join(encrypt_stream(KEY, readinto_chunks(plaintext, 50_000), AAD))
    assert b"".join(decrypt_stream(KEY, readinto_chunks(ciphertext, 50_003), AAD)) == plaintext


# --------------------------------------------------------------------------- streaming


class CountingSource:
    def __init__(self, chunk: bytes, count: int) -> None:
        self.chunk, self.count, self.consumed = chunk, count, 0

    def __iter__(self) -> Iterator[bytes]:
        for _ in range(self.count):
            self.consumed += len(self.chunk)
            yield self.chunk


def test_encrypt_stream_consumes_input_lazily() -> None:
    source = CountingSource(b"\x00" * (1 << 20), 64)
    outputs = list(itertools.islice(encrypt_stream(KEY, source, AAD), 40))
    assert [len(o) for o in outputs[1:]] == [STRIDE] * 39
    assert source.consumed <= 3 << 20


def test_decrypt_stream_consumes_input_lazily() -> None:
    sealed = b"".join(encrypt_stream(KEY, CountingSource(b"\x00" * (1 << 20), 64), AAD))
    source = CountingSource(sealed[: 1 << 20], 1)
    rest = CountingSource(sealed[1 << 20 : 2 << 20], 63)  # 63 more MiB of (valid-length) input
    outputs = list(itertools.islice(decrypt_stream(KEY, itertools.chain(source, rest), AAD), 10))
    assert [len(o) for o in outputs] == [S] * 10
    assert source.consumed + rest.consumed <= 2 << 20


def _peak_extra_memory(run: Iterator[bytes]) -> int:
    tracemalloc.reset_peak()
    baseline = tracemalloc.get_traced_memory()[0]
    for _ in run:
        pass
    return tracemalloc.get_traced_memory()[1] - baseline


def test_one_huge_chunk_is_processed_without_copying_it() -> None:
    size = 24 << 20
    tracemalloc.start()
    try:
        plaintext = _plaintext(size) + b"tail"
        ciphertext = _encrypt(plaintext)
        encrypt_peak = _peak_extra_memory(encrypt_stream(KEY, [plaintext], AAD))
        decrypt_peak = _peak_extra_memory(decrypt_stream(KEY, [ciphertext], AAD))
    finally:
        tracemalloc.stop()
    assert encrypt_peak < 6 * STRIDE
    assert decrypt_peak < 6 * STRIDE


def test_wrong_size_data_key_is_rejected_before_streaming() -> None:
    with pytest.raises(ValueError):
        encrypt_stream(b"short", [b"x"], AAD)
    with pytest.raises(ValueError):
        decrypt_stream(KEY + b"x", [b"x"], AAD)


# --------------------------------------------------------------------------- failures


def test_wrong_key_is_an_integrity_error() -> None:
    stored = _encrypt(b"secret")
    with pytest.raises(IntegrityError):
        _decrypt(stored, key=OTHER_KEY)


def test_wrong_aad_is_an_integrity_error() -> None:
    stored = _encrypt(b"secret", aad=b"tenant:1/entry:7")
    with pytest.raises(IntegrityError):
        _decrypt(stored, aad=b"tenant:1/entry:8")


def test_objects_cannot_be_swapped_between_tenants_sharing_storage() -> None:
    tenant_a = _encrypt(b"a's data", key=KEY, aad=b"tenant:a")
    tenant_b = _encrypt(b"b's data", key=OTHER_KEY, aad=b"tenant:b")
    with pytest.raises(IntegrityError):
        _decrypt(tenant_a, key=OTHER_KEY, aad=b"tenant:b")
    with pytest.raises(IntegrityError):
        _decrypt(tenant_b, key=KEY, aad=b"tenant:a")
    # Even with one data key, the aad alone keeps objects apart.
    with pytest.raises(IntegrityError):
        _decrypt(_encrypt(b"a's data", aad=b"tenant:a"), aad=b"tenant:b")


THREE_AND_A_BIT = 3 * S + 100
_STORED_LEN = ciphertext_size(THREE_AND_A_BIT)


@pytest.mark.parametrize(
    "position",
    [
        pytest.param(0, id="version"),
        pytest.param(1, id="salt-first"),
        pytest.param(32, id="salt-last"),
        pytest.param(33, id="nonce-prefix-first"),
        pytest.param(39, id="nonce-prefix-last"),
        pytest.param(HEADER, id="first-segment-body"),
        pytest.param(HEADER + S + 3, id="first-segment-tag"),
        pytest.param(HEADER + STRIDE + 1000, id="middle-segment-body"),
        pytest.param(HEADER + 3 * STRIDE, id="last-segment-body"),
        pytest.param(_STORED_LEN - 1, id="last-segment-tag"),
    ],
)
def test_any_flipped_bit_is_an_integrity_error(position: int) -> None:
    stored = _encrypt(_plaintext(THREE_AND_A_BIT))
    with pytest.raises(IntegrityError):
        _decrypt(_flip(stored, position))


@pytest.mark.parametrize("size", [0, 5, S, 3 * S, THREE_AND_A_BIT])
def test_dropping_the_final_segment_is_detected(size: int) -> None:
    stored = _encrypt(_plaintext(size))
    header, segments = _split(stored)
    with pytest.raises(IntegrityError):
        _decrypt(header + b"".join(segments[:-1]))


@pytest.mark.parametrize(
    "keep",
    [
        pytest.param(0, id="empty"),
        pytest.param(HEADER - 1, id="inside-header"),
        pytest.param(HEADER, id="header-only"),
        pytest.param(HEADER + 10, id="inside-first-segment"),
        pytest.param(HEADER + STRIDE + 5, id="just-past-a-boundary"),
        pytest.param(HEADER + 2 * STRIDE - 1, id="inside-a-tag"),
        pytest.param(_STORED_LEN - 1, id="last-byte-missing"),
        pytest.param(_STORED_LEN - TAG_SIZE - 1, id="cut-before-final-tag"),
    ],
)
def test_truncation_anywhere_is_detected(keep: int) -> None:
    stored = _encrypt(_plaintext(THREE_AND_A_BIT))
    with pytest.raises(IntegrityError):
        _decrypt(stored[:keep])


@pytest.mark.parametrize("size", [0, S, THREE_AND_A_BIT])
@pytest.mark.parametrize("extra", [b"\x00", b"x" * TAG_SIZE, b"y" * (STRIDE + 3)])
def test_trailing_bytes_are_detected(size: int, extra: bytes) -> None:
    stored = _encrypt(_plaintext(size))
    with pytest.raises(IntegrityError):
        _decrypt(stored + extra)


def test_appending_a_copy_of_the_final_segment_is_detected() -> None:
    stored = _encrypt(_plaintext(2 * S))
    _, segments = _split(stored)
    with pytest.raises(IntegrityError):
        _decrypt(stored + segments[-1])


def test_reordered_segments_are_detected() -> None:
    header, segments = _split(_encrypt(_plaintext(THREE_AND_A_BIT)))
    segments[0], segments[1] = segments[1], segments[0]
    with pytest.raises(IntegrityError):
        _decrypt(header + b"".join(segments))


def test_duplicated_segments_are_detected() -> None:
    header, segments = _split(_encrypt(_plaintext(THREE_AND_A_BIT)))
    with pytest.raises(IntegrityError):
        _decrypt(header + b"".join([segments[0], *segments]))
    with pytest.raises(IntegrityError):
        _decrypt(header + b"".join([segments[0], segments[1], segments[1], *segments[3:]]))


def test_header_from_another_object_is_detected() -> None:
    first, second = _encrypt(b"one"), _encrypt(b"two")
    with pytest.raises(IntegrityError):
        _decrypt(second[:HEADER] + first[HEADER:])


def test_unknown_format_version_is_refused_even_if_authentic() -> None:
    header = bytes([2]) + bytes(range(39))
    stored = _reference_encrypt(KEY, header, [b"hello"], AAD)
    with pytest.raises(IntegrityError):
        _decrypt(stored)


def test_non_canonical_empty_final_segment_is_refused() -> None:
    """A full segment then an empty final one is never written, so it is never accepted."""
    header = bytes([1]) + bytes(range(39))
    stored = _reference_encrypt(KEY, header, [b"a" * S, b""], AAD)
    with pytest.raises(IntegrityError):
        _decrypt(stored)


def test_decryption_streams_verified_segments_and_withholds_a_bad_one() -> None:
    """Early segments stream out; a bad final segment never yields its plaintext."""
    stored = _encrypt(_plaintext(2 * S + 10))
    received: list[bytes] = []
    with pytest.raises(IntegrityError):
        for piece in decrypt_stream(KEY, [_flip(stored, len(stored) - 1)], AAD):
            received.append(piece)
    assert sum(map(len, received)) == 2 * S


# --------------------------------------------------------------------------- ranges

RANGE_OBJECTS = [THREE_AND_A_BIT, 3 * S, 1, S]


def _range_cases() -> list[tuple[int, int, int]]:
    cases = []
    for length in RANGE_OBJECTS:
        candidates = [
            (0, 0),
            (0, length - 1),
            (length - 1, length - 1),
            (0, min(S, length) - 1),
            (S - 1, S),
            (S, S),
            (S, 2 * S - 1),
            (S + 5, 2 * S + 7),
            (2 * S - 1, 3 * S),
            (3 * S, length - 1),
            (S + 17, S + 17),
            (length // 2, length // 2 + 1),
        ]
        cases += [(length, a, b) for a, b in candidates if 0 <= a <= b < length]
    return sorted(set(cases))


@pytest.mark.parametrize(("length", "start", "end"), _range_cases())
def test_range_reads_only_the_covering_segments(length: int, start: int, end: int) -> None:
    plaintext = _plaintext(length, seed=length)
    stored = _encrypt(plaintext)
    reader = RecordingReader(stored)
    assert _range(stored, length, start, end, reader=reader) == plaintext[start : end + 1]
    assert reader.calls == _expected_reads(length, start, end)


@settings(max_examples=80, deadline=None)
@given(data=st.data())
def test_range_matches_the_plaintext_slice(data: st.DataObject) -> None:
    length = data.draw(boundary_sizes.filter(lambda n: n > 0))
    start = data.draw(st.integers(0, length - 1))
    end = data.draw(st.integers(start, length - 1))
    piece = data.draw(st.integers(1, 3 * STRIDE))
    plaintext = _plaintext(length, seed=length)
    stored = _encrypt(plaintext)
    reader = RecordingReader(stored, piece=piece)
    assert _range(stored, length, start, end, reader=reader) == plaintext[start : end + 1]
    assert reader.calls == _expected_reads(length, start, end)


def test_range_refuses_a_truncated_object_that_ends_on_a_segment_boundary() -> None:
    """With the final segment gone, the new last segment must not pass for the final one."""
    stored = _encrypt(_plaintext(THREE_AND_A_BIT))
    truncated = stored[: HEADER + 2 * STRIDE]
    with pytest.raises(IntegrityError):
        _range(truncated, 2 * S, S + 10, 2 * S - 1)


def test_range_refuses_an_understated_length() -> None:
    stored = _encrypt(_plaintext(THREE_AND_A_BIT))
    with pytest.raises(IntegrityError):
        _range(stored, 2 * S, S, 2 * S - 1)


def test_range_refuses_an_overstated_length() -> None:
    stored = _encrypt(_plaintext(2 * S + 10))
    with pytest.raises(IntegrityError):
        _range(stored, 3 * S, 2 * S, 2 * S + 5)


def test_range_refuses_a_final_segment_read_as_a_middle_one() -> None:
    """A real final segment read where the length says more follows must fail too."""
    stored = _encrypt(_plaintext(2 * S))
    padded = stored + b"\x00" * STRIDE  # storage holds junk after the real end
    with pytest.raises(IntegrityError):
        _range(padded, 3 * S, S, S + 1)


@pytest.mark.parametrize(
    "position",
    [
        pytest.param(0, id="version"),
        pytest.param(5, id="salt"),
        pytest.param(36, id="nonce-prefix"),
        pytest.param(HEADER + STRIDE + 3, id="read-segment"),
        pytest.param(HEADER + 2 * STRIDE - 1, id="read-segment-tag"),
    ],
)
def test_range_detects_tampering(position: int) -> None:
    stored = _flip(_encrypt(_plaintext(THREE_AND_A_BIT)), position)
    with pytest.raises(IntegrityError):
        _range(stored, THREE_AND_A_BIT, S + 10, S + 20)


def test_range_with_wrong_aad_or_key_is_an_integrity_error() -> None:
    stored = _encrypt(_plaintext(2 * S))
    with pytest.raises(IntegrityError):
        _range(stored, 2 * S, S, S + 1, aad=b"tenant:other")
    with pytest.raises(IntegrityError):
        _range(stored, 2 * S, S, S + 1, key=OTHER_KEY)


@pytest.mark.parametrize("start", [0, S])
def test_range_detects_storage_returning_too_few_or_too_many_bytes(start: int) -> None:
    stored = _encrypt(_plaintext(THREE_AND_A_BIT))

    def short(first: int, last: int) -> list[bytes]:
        return [stored[first:last]]

    def long(first: int, last: int) -> list[bytes]:
        return [stored[first : last + 1], b"more"]

    for reader in (short, long):
        with pytest.raises(IntegrityError):
            _range(stored, THREE_AND_A_BIT, start, start + 10, reader=reader)


@pytest.mark.parametrize(("start", "end"), [(-1, 3), (5, 4), (0, 100), (100, 100)])
def test_unsatisfiable_range_is_a_value_error(start: int, end: int) -> None:
    stored = _encrypt(_plaintext(100))
    with pytest.raises(ValueError):
        decrypt_range(KEY, RecordingReader(stored), 100, start, end, AAD)


# --------------------------------------------------------------------------- keyring

MASTER_A = b"A" * 16 + bytes(range(16))
MASTER_B = b"B" * 16 + bytes(range(16, 32))
CONTEXT = b"tenant:42"


def _material_forms(material: bytes) -> list[str]:
    return [
        repr(material),
        material.hex(),
        base64.b64encode(material).decode(),
        base64.urlsafe_b64encode(material).decode().rstrip("="),
    ]


def test_new_data_keys_are_32_random_bytes() -> None:
    keys = {new_data_key() for _ in range(8)}
    assert len(keys) == 8
    assert all(len(k) == 32 for k in keys)


def test_wrap_and_unwrap_round_trip() -> None:
    ring = MasterKeyring({"a": MASTER_A})
    data_key = new_data_key()
    key_id, wrapped = ring.wrap(data_key, CONTEXT)
    assert key_id == "a"
    assert data_key not in wrapped
    assert ring.unwrap(key_id, wrapped, CONTEXT) == data_key


def test_wrapping_is_randomised() -> None:
    ring = MasterKeyring({"a": MASTER_A})
    data_key = new_data_key()
    assert ring.wrap(data_key, CONTEXT)[1] != ring.wrap(data_key, CONTEXT)[1]


def test_unwrap_with_another_context_is_an_integrity_error() -> None:
    ring = MasterKeyring({"a": MASTER_A})
    key_id, wrapped = ring.wrap(new_data_key(), b"tenant:42")
    with pytest.raises(IntegrityError):
        ring.unwrap(key_id, wrapped, b"tenant:43")


@pytest.mark.parametrize("mutate", ["flip-first", "flip-last", "truncate", "extend", "empty"])
def test_tampered_wrapped_key_is_an_integrity_error(mutate: str) -> None:
    ring = MasterKeyring({"a": MASTER_A})
    key_id, wrapped = ring.wrap(new_data_key(), CONTEXT)
    bad = {
        "flip-first": _flip(wrapped, 0),
        "flip-last": _flip(wrapped, len(wrapped) - 1),
        "truncate": wrapped[:-1],
        "extend": wrapped + b"\x00",
        "empty": b"",
    }[mutate]
    with pytest.raises(IntegrityError):
        ring.unwrap(key_id, bad, CONTEXT)


def test_unknown_key_id_is_a_master_key_error() -> None:
    ring = MasterKeyring({"a": MASTER_A})
    _, wrapped = ring.wrap(new_data_key(), CONTEXT)
    with pytest.raises(MasterKeyError, match="'gone'"):
        ring.unwrap("gone", wrapped, CONTEXT)


def test_unwrap_under_the_wrong_known_key_is_an_integrity_error() -> None:
    ring = MasterKeyring({"a": MASTER_A, "b": MASTER_B}, active="a")
    _, wrapped = ring.wrap(new_data_key(), CONTEXT)
    with pytest.raises(IntegrityError):
        ring.unwrap("b", wrapped, CONTEXT)


def test_active_key_selection() -> None:
    assert MasterKeyring({"only": MASTER_A}).active_id == "only"
    assert MasterKeyring({"first": MASTER_A, "second": MASTER_B}).active_id == "first"
    ring = MasterKeyring({"first": MASTER_A, "second": MASTER_B}, active="second")
    assert ring.active_id == "second"
    assert ring.wrap(new_data_key(), CONTEXT)[0] == "second"
    assert ring.key_ids == ("first", "second")
    with pytest.raises(MasterKeyError, match="'third'"):
        MasterKeyring({"first": MASTER_A}, active="third")


def test_rewrap_moves_data_keys_to_the_new_active_key_and_keeps_data_readable() -> None:
    old_ring = MasterKeyring({"2024": MASTER_A})
    data_key = new_data_key()
    old_id, old_wrapped = old_ring.wrap(data_key, CONTEXT)
    stored = _encrypt(b"entry body", key=data_key)

    rotating = MasterKeyring({"2024": MASTER_A, "2025": MASTER_B}, active="2025")
    new_id, new_wrapped = rotating.rewrap(old_id, old_wrapped, CONTEXT)
    assert new_id == "2025"

    retired = MasterKeyring({"2025": MASTER_B})  # the old master key is gone
    recovered = retired.unwrap(new_id, new_wrapped, CONTEXT)
    assert _decrypt(stored, key=recovered) == b"entry body"
    with pytest.raises(MasterKeyError):
        retired.unwrap(old_id, old_wrapped, CONTEXT)


def test_rewrap_refuses_a_wrapped_key_from_another_context() -> None:
    ring = MasterKeyring({"a": MASTER_A, "b": MASTER_B}, active="b")
    _, wrapped = MasterKeyring({"a": MASTER_A}).wrap(new_data_key(), b"tenant:1")
    with pytest.raises(IntegrityError):
        ring.rewrap("a", wrapped, b"tenant:2")


@pytest.mark.parametrize(
    "keys",
    [
        pytest.param({}, id="empty"),
        pytest.param({"a": MASTER_A[:31]}, id="short"),
        pytest.param({"a": MASTER_A + b"x"}, id="long"),
        pytest.param({"a": "not bytes" * 4}, id="str-material"),
        pytest.param({"": MASTER_A}, id="empty-id"),
        pytest.param({"a\n": MASTER_A}, id="control-char-id"),
    ],
)
def test_constructor_validates_keys(keys: dict[str, bytes]) -> None:
    with pytest.raises(MasterKeyError) as info:
        MasterKeyring(keys)
    for form in _material_forms(MASTER_A):
        assert form not in str(info.value)


def test_wrap_refuses_a_data_key_of_the_wrong_size() -> None:
    with pytest.raises(ValueError):
        MasterKeyring({"a": MASTER_A}).wrap(b"short", CONTEXT)


def test_from_json_accepts_standard_and_url_safe_base64() -> None:
    text = json.dumps(
        {
            "std": base64.b64encode(MASTER_A).decode(),
            "url": base64.urlsafe_b64encode(MASTER_B).decode().rstrip("="),
        }
    )
    ring = MasterKeyring.from_json(text, active="url")
    assert ring.key_ids == ("std", "url") and ring.active_id == "url"
    data_key = new_data_key()
    # Each id decodes to its own material: a wrap under "url" opens with MASTER_B alone.
    _, wrapped = ring.wrap(data_key, CONTEXT)
    assert MasterKeyring({"url": MASTER_B}).unwrap("url", wrapped, CONTEXT) == data_key
    assert MasterKeyring.from_json(text).active_id == "std"


SECRET_B64 = base64.b64encode(MASTER_A).decode()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("", "empty", id="empty-string"),
        pytest.param("   ", "empty", id="blank"),
        pytest.param("{}", "no keys", id="empty-object"),
        pytest.param(json.dumps([SECRET_B64]), "object", id="list"),
        pytest.param(json.dumps(SECRET_B64), "object", id="string"),
        pytest.param("42", "object", id="number"),
        pytest.param('{"k": "' + SECRET_B64 + '"', "JSON", id="invalid-json"),
        pytest.param(json.dumps({"k": SECRET_B64[:-4] + "!!!="}), "base64", id="bad-base64"),
        pytest.param(
            json.dumps({"k": SECRET_B64[:20] + "=" + SECRET_B64[21:]}), "base64", id="bad-padding"
        ),
        pytest.param(
            json.dumps({"k": base64.b64encode(MASTER_A[:24]).decode()}), "32 bytes", id="short"
        ),
        pytest.param(
            json.dumps({"k": base64.b64encode(MASTER_A + MASTER_B).decode()}),
            "32 bytes",
            id="long",
        ),
        pytest.param(json.dumps({"k": list(MASTER_A)}), "base64 string", id="not-a-string"),
        pytest.param(
            '{"k": "' + SECRET_B64 + '", "k": "' + SECRET_B64 + '"}', "duplicate", id="dup"
        ),
        pytest.param(json.dumps({"": SECRET_B64}), "non-empty", id="empty-id"),
    ],
)
def test_from_json_errors_are_clear_and_never_contain_key_material(text: str, message: str) -> None:
    with pytest.raises(MasterKeyError, match=message) as info:
        MasterKeyring.from_json(text)
    rendered = "".join(traceback.format_exception(info.value))
    for form in [*_material_forms(MASTER_A), SECRET_B64[:20], text.strip() or "\x00"]:
        if len(form) >= 8:
            assert form not in rendered


def test_from_json_rejects_an_unknown_active_id() -> None:
    with pytest.raises(MasterKeyError, match="'b'"):
        MasterKeyring.from_json(json.dumps({"a": SECRET_B64}), active="b")


def test_repr_and_str_show_ids_but_never_key_material() -> None:
    ring = MasterKeyring({"key-2025": MASTER_A, "key-2024": MASTER_B}, active="key-2025")
    assert "key-2025" in repr(ring) and "key-2024" in str(ring)
    # What a debugger, a traceback-with-locals reporter or a careless log line would print.
    state = {name: getattr(ring, name) for name in type(ring).__slots__}
    for text in (repr(ring), str(ring), f"{ring!r}", repr(state)):
        for material in (MASTER_A, MASTER_B):
            for form in _material_forms(material):
                assert form not in text


def test_module_imports_nothing_from_the_project() -> None:
    tree = ast.parse(Path(crypto.__file__).read_text(encoding="utf-8"))
    imported = {
        name.split(".")[0]
        for node in ast.walk(tree)
        for name in (
            [a.name for a in node.names]
            if isinstance(node, ast.Import)
            else [node.module or ""]
            if isinstance(node, ast.ImportFrom)
            else []
        )
    }
    assert imported.isdisjoint({"app", "plugins", "config", ""})
