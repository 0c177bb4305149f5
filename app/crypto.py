"""Streaming authenticated encryption at rest: per-tenant data keys wrapped by a master key.

Storage backends only ever see the output of :func:`encrypt_stream`; nothing else in the
project needs to know how it is built.

Object format (version 1), after Tink's AES-GCM-HKDF streaming and age's STREAM::

    header  = version (1 byte, 0x01) || salt (32 random bytes) || nonce prefix (7 random bytes)
    key     = HKDF-SHA256(data_key, salt=salt, info=b"ctxcloud-stream-v1" || aad), 32 bytes
    segment = AES-256-GCM(key, nonce=prefix || i (4 bytes BE) || last (1 byte),
                          plaintext segment i, associated data=header)

Every segment carries SEGMENT_SIZE plaintext bytes except the final one, which carries
0..SEGMENT_SIZE bytes and is the only one with last=1; only empty plaintext has an empty
final segment. The counter in the nonce stops reordering, dropping and duplicating
segments; the last flag stops truncation at a segment boundary and trailing data; the
header as associated data stops header tampering; the aad in the key derivation binds the
object to its owner (e.g. tenant and entry), so objects cannot be swapped between owners.

Decryption is streaming: plaintext of early segments is released before the end of the
object has been authenticated. A consumer that must not act on a partial object has to
treat an :class:`IntegrityError` raised mid-stream as "discard everything" (an HTTP
response, for instance, must be aborted, never completed).

Data keys (32 random bytes per tenant) are wrapped by a :class:`MasterKeyring` with
AES-256-GCM under the active master key; the context (e.g. ``b"tenant:<id>"``) is bound as
associated data so a wrapped key moved to another tenant does not unwrap.
"""

from __future__ import annotations

import binascii
import json
import os
import secrets
from collections.abc import Callable, Iterable, Iterator
from itertools import chain

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ctxcloud.blocks import byte_view

SEGMENT_SIZE: int = 64 * 1024
TAG_SIZE = 16
KEY_SIZE = 32

_VERSION = 1
_SALT_SIZE = 32
_NONCE_PREFIX_SIZE = 7
HEADER_SIZE = 1 + _SALT_SIZE + _NONCE_PREFIX_SIZE
_HKDF_INFO = b"ctxcloud-stream-v1"
# The nonce counter is 4 bytes; keeping the count below 2**32 means it never wraps.
MAX_SEGMENTS = 2**32 - 1

_WRAP_VERSION = 1
_WRAP_NONCE_SIZE = 12
_WRAP_LABEL = b"ctxcloud-wrap-v1"
_WRAPPED_SIZE = 1 + _WRAP_NONCE_SIZE + KEY_SIZE + TAG_SIZE


class IntegrityError(Exception):
    """Stored bytes failed authentication, so they must never be served as if whole."""


class MasterKeyError(Exception):
    """Master key configuration is unusable; messages name key ids, never key material."""


def new_data_key() -> bytes:
    """Fresh random data key, so each tenant's objects are independent of every other's."""
    return secrets.token_bytes(KEY_SIZE)


# --------------------------------------------------------------------------- master keys


class MasterKeyring:
    """Master keys by id; the active one wraps new data keys, all of them can unwrap."""

    __slots__ = ("_active_id", "_aeads")

    def __init__(self, keys: dict[str, bytes], active: str | None = None) -> None:
        """Validate up front so a bad configuration fails at start-up, not on first upload."""
        if not isinstance(keys, dict) or not keys:
            raise MasterKeyError("master keyring needs at least one key")
        aeads: dict[str, AESGCM] = {}
        for key_id, material in keys.items():
            _check_key_id(key_id)
            if not isinstance(material, bytes | bytearray | memoryview):
                raise MasterKeyError(f"master key {key_id!r} must be bytes")
            if len(material) != KEY_SIZE:
                raise MasterKeyError(
                    f"master key {key_id!r} must be {KEY_SIZE} bytes, got {len(material)}"
                )
            aeads[key_id] = AESGCM(bytes(material))
        if active is None:
            active = next(iter(aeads))
        elif active not in aeads:
            raise MasterKeyError(
                f"active master key {active!r} is not among the configured ids {sorted(aeads)!r}"
            )
        self._aeads = aeads
        self._active_id = active

    @classmethod
    def from_json(cls, text: str, active: str | None = None) -> MasterKeyring:
        """Parse ``{"id": "<base64 32 bytes>"}`` (CTXCLOUD_MASTER_KEYS) with leak-free errors."""
        if isinstance(text, bytes | bytearray):
            try:
                text = bytes(text).decode("utf-8")
            except UnicodeDecodeError:
                raise MasterKeyError("master keys: not UTF-8 text") from None
        if not isinstance(text, str) or not text.strip():
            raise MasterKeyError('master keys: empty; expected {"key-id": "<base64 32 bytes>"}')
        try:
            parsed = json.loads(text, object_pairs_hook=_reject_duplicate_ids)
        except _DuplicateKeyIdError as exc:
            raise MasterKeyError(f"master keys: duplicate key id {exc.key_id!r}") from None
        except ValueError:
            # The decoder's message is harmless but its exception carries the whole
            # document; `from None` keeps it out of tracebacks and logs.
            raise MasterKeyError(
                'master keys: not valid JSON; expected {"key-id": "<base64 32 bytes>"}'
            ) from None
        if not isinstance(parsed, dict):
            raise MasterKeyError(
                'master keys: expected a JSON object {"key-id": "<base64 32 bytes>"}, '
                f"got {type(parsed).__name__}"
            )
        if not parsed:
            raise MasterKeyError("master keys: the JSON object has no keys")
        keys: dict[str, bytes] = {}
        for key_id, encoded in parsed.items():
            _check_key_id(key_id)
            if not isinstance(encoded, str):
                raise MasterKeyError(f"master key {key_id!r}: value must be a base64 string")
            keys[key_id] = _decode_key(key_id, encoded)
        return cls(keys, active)

    @property
    def active_id(self) -> str:
        """Id stored next to every wrapped key, so rotation knows what to re-wrap."""
        return self._active_id

    @property
    def key_ids(self) -> tuple[str, ...]:
        """All ids, so operators can see which old keys are still needed."""
        return tuple(self._aeads)

    def wrap(self, data_key: bytes, context: bytes) -> tuple[str, bytes]:
        """Wrap under the active key; the context binds the result to its owner."""
        if len(data_key) != KEY_SIZE:
            raise ValueError(f"data key must be {KEY_SIZE} bytes")
        nonce = os.urandom(_WRAP_NONCE_SIZE)
        sealed = self._aeads[self._active_id].encrypt(
            nonce, bytes(data_key), _wrap_aad(self._active_id, context)
        )
        return self._active_id, bytes([_WRAP_VERSION]) + nonce + sealed

    def unwrap(self, key_id: str, wrapped: bytes, context: bytes) -> bytes:
        """Recover a data key; tampering or another owner's context is an IntegrityError."""
        aead = self._aeads.get(key_id)
        if aead is None:
            raise MasterKeyError(f"unknown master key id {key_id!r}")
        if len(wrapped) != _WRAPPED_SIZE or wrapped[0] != _WRAP_VERSION:
            raise IntegrityError("wrapped data key is malformed")
        wrapped = bytes(wrapped)
        try:
            return aead.decrypt(wrapped[1:13], wrapped[13:], _wrap_aad(key_id, context))
        except InvalidTag:
            raise IntegrityError("wrapped data key failed authentication") from None

    def rewrap(self, key_id: str, wrapped: bytes, context: bytes) -> tuple[str, bytes]:
        """Move a wrapped key to the active master key, so an old master key can be retired."""
        return self.wrap(self.unwrap(key_id, wrapped, context), context)

    def __repr__(self) -> str:
        """Ids only: a keyring printed in a log or traceback must not leak keys."""
        return f"MasterKeyring(key_ids={list(self._aeads)!r}, active_id={self._active_id!r})"

    __str__ = __repr__


class _DuplicateKeyIdError(Exception):
    def __init__(self, key_id: str) -> None:
        super().__init__(key_id)
        self.key_id = key_id


def _reject_duplicate_ids(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """json.loads silently keeps the last duplicate; for keys that would hide a mistake."""
    result: dict[str, object] = {}
    for name, value in pairs:
        if name in result:
            raise _DuplicateKeyIdError(name)
        result[name] = value
    return result


def _check_key_id(key_id: object) -> None:
    """Ids are stored next to wrapped keys and shown in messages, so keep them plain."""
    if not isinstance(key_id, str) or not key_id.strip():
        raise MasterKeyError("master key ids must be non-empty strings")
    if not key_id.isprintable():
        raise MasterKeyError("master key ids must be printable")


def _decode_key(key_id: str, encoded: str) -> bytes:
    """Accept standard or URL-safe base64, padded or not; the messages omit the value."""
    compact = encoded.strip().replace("-", "+").replace("_", "/")
    compact += "=" * (-len(compact) % 4)
    try:
        material = binascii.a2b_base64(compact, strict_mode=True)
    except (binascii.Error, ValueError):
        raise MasterKeyError(f"master key {key_id!r}: value is not valid base64") from None
    if len(material) != KEY_SIZE:
        raise MasterKeyError(
            f"master key {key_id!r} must decode to {KEY_SIZE} bytes, got {len(material)}"
        )
    return material


def _wrap_aad(key_id: str, context: bytes) -> bytes:
    """Domain label + length-prefixed key id + context: no two inputs share an encoding."""
    encoded_id = key_id.encode("utf-8")
    return _WRAP_LABEL + len(encoded_id).to_bytes(2, "big") + encoded_id + bytes(context)


# --------------------------------------------------------------------------- sizes


def ciphertext_size(plaintext_size: int) -> int:
    """Stored size for a plaintext size, so backends and Content-Length agree up front."""
    if plaintext_size < 0:
        raise ValueError("plaintext size must be >= 0")
    segments = _segment_count(plaintext_size)
    if segments > MAX_SEGMENTS:
        raise ValueError("plaintext too large for one encrypted object")
    return HEADER_SIZE + plaintext_size + segments * TAG_SIZE


def plaintext_size(ciphertext_size: int) -> int:
    """Plaintext size of a stored object; a size no encryption can produce is corruption."""
    body = ciphertext_size - HEADER_SIZE
    if body < TAG_SIZE:
        raise IntegrityError("encrypted object is too short")
    stride = SEGMENT_SIZE + TAG_SIZE
    segments = -(-body // stride)
    final_plain = body - (segments - 1) * stride - TAG_SIZE
    if final_plain < 0 or (final_plain == 0 and segments > 1) or segments > MAX_SEGMENTS:
        raise IntegrityError("encrypted object has an impossible size")
    return (segments - 1) * SEGMENT_SIZE + final_plain


def _segment_count(plaintext_len: int) -> int:
    """Empty plaintext still has one (empty, final) segment, so truncation is detectable."""
    return max(1, -(-plaintext_len // SEGMENT_SIZE))


# --------------------------------------------------------------------------- streams


def encrypt_stream(data_key: bytes, chunks: Iterable[bytes], aad: bytes) -> Iterator[bytes]:
    """Encrypt chunks of any size while holding at most about one segment of plaintext."""
    _check_data_key(data_key)
    header = bytes([_VERSION]) + os.urandom(_SALT_SIZE + _NONCE_PREFIX_SIZE)
    return _encrypt_segments(_object_aead(data_key, header, aad), header, chunks)


def _encrypt_segments(aead: AESGCM, header: bytes, chunks: Iterable[bytes]) -> Iterator[bytes]:
    prefix = header[1 + _SALT_SIZE :]
    yield header
    for index, (segment, last) in enumerate(_resegment(chunks, SEGMENT_SIZE)):
        if index >= MAX_SEGMENTS:
            raise ValueError("plaintext too large for one encrypted object")
        yield aead.encrypt(_nonce(prefix, index, last), segment, header)


def decrypt_stream(data_key: bytes, chunks: Iterable[bytes], aad: bytes) -> Iterator[bytes]:
    """Decrypt an object streamed in chunks of any size; any fault raises IntegrityError."""
    _check_data_key(data_key)
    return _decrypt_object(data_key, chunks, aad)


def _decrypt_object(data_key: bytes, chunks: Iterable[bytes], aad: bytes) -> Iterator[bytes]:
    header, rest = _split_header(iter(chunks))
    aead = _object_aead(data_key, header, aad)
    prefix = header[1 + _SALT_SIZE :]
    for index, (segment, last) in enumerate(_resegment(rest, SEGMENT_SIZE + TAG_SIZE)):
        if index >= MAX_SEGMENTS:
            raise IntegrityError("encrypted object has too many segments")
        if len(segment) < TAG_SIZE or (last and len(segment) == TAG_SIZE and index > 0):
            # A cut inside the final tag, or an empty final segment after a full one
            # (never produced: a multiple of SEGMENT_SIZE ends with a full final segment).
            raise IntegrityError("encrypted object is truncated")
        yield _open(aead, prefix, index, last, segment, header)


def decrypt_range(
    data_key: bytes,
    read: Callable[[int, int], Iterable[bytes]],
    plaintext_len: int,
    start: int,
    end: int,
    aad: bytes,
) -> Iterator[bytes]:
    """Serve plaintext bytes [start, end] (inclusive) reading only the covering segments."""
    _check_data_key(data_key)
    if not 0 <= start <= end < plaintext_len:
        raise ValueError(f"range {start}-{end} is not within a plaintext of {plaintext_len} bytes")
    if _segment_count(plaintext_len) > MAX_SEGMENTS:
        raise ValueError("plaintext too large for one encrypted object")
    return _decrypt_range(data_key, read, plaintext_len, start, end, aad)


def _decrypt_range(
    data_key: bytes,
    read: Callable[[int, int], Iterable[bytes]],
    plaintext_len: int,
    start: int,
    end: int,
    aad: bytes,
) -> Iterator[bytes]:
    stride = SEGMENT_SIZE + TAG_SIZE
    final_index = _segment_count(plaintext_len) - 1
    first, last_needed = start // SEGMENT_SIZE, end // SEGMENT_SIZE
    seg_start = HEADER_SIZE + first * stride
    if last_needed == final_index:
        seg_end = ciphertext_size(plaintext_len) - 1
    else:
        seg_end = HEADER_SIZE + (last_needed + 1) * stride - 1
    expected_last_len = seg_end - (HEADER_SIZE + last_needed * stride) + 1

    if first == 0:
        # Ranges from the start are common (previews, resumable reads): one request, not two.
        header, rest = _split_header(iter(read(0, seg_end)))
    else:
        header = _read_exactly(read, 0, HEADER_SIZE - 1)
        _check_header(header)
        rest = iter(read(seg_start, seg_end))
    aead = _object_aead(data_key, header, aad)
    prefix = header[1 + _SALT_SIZE :]

    for index, (segment, end_of_read) in enumerate(_resegment(rest, stride), start=first):
        # Checked before decrypting, so a misbehaving backend yields nothing past the range.
        if end_of_read != (index == last_needed) or (
            end_of_read and len(segment) != expected_last_len
        ):
            raise IntegrityError("storage returned the wrong number of bytes for a range")
        # Final flag from the object's length, not from where this read stops.
        plain = _open(aead, prefix, index, index == final_index, segment, header)
        lo = start - index * SEGMENT_SIZE if index == first else 0
        hi = end - index * SEGMENT_SIZE + 1 if index == last_needed else len(plain)
        yield plain if lo == 0 and hi == len(plain) else plain[lo:hi]


# --------------------------------------------------------------------------- internals


def _check_data_key(data_key: bytes) -> None:
    """A wrong-length key is a programming error, not corrupted data."""
    if not isinstance(data_key, bytes | bytearray | memoryview) or len(data_key) != KEY_SIZE:
        raise ValueError(f"data key must be {KEY_SIZE} bytes")


def _object_aead(data_key: bytes, header: bytes, aad: bytes) -> AESGCM:
    """Per-object key: random salt keeps nonces unique, aad binds the object to its owner."""
    key = HKDF(
        algorithm=hashes.SHA256(),
        length=KEY_SIZE,
        salt=header[1 : 1 + _SALT_SIZE],
        info=_HKDF_INFO + bytes(aad),
    ).derive(bytes(data_key))
    return AESGCM(key)


def _nonce(prefix: bytes, index: int, last: bool) -> bytes:
    return prefix + index.to_bytes(4, "big") + (b"\x01" if last else b"\x00")


def _open(
    aead: AESGCM, prefix: bytes, index: int, last: bool, segment: bytes, header: bytes
) -> bytes:
    try:
        return aead.decrypt(_nonce(prefix, index, last), segment, header)
    except InvalidTag:
        raise IntegrityError(f"encrypted segment {index} failed authentication") from None


def _check_header(header: bytes) -> None:
    if len(header) != HEADER_SIZE:
        raise IntegrityError("encrypted object is truncated inside its header")
    if header[0] != _VERSION:
        raise IntegrityError("encrypted object has an unknown format version")


def _split_header(chunks: Iterator[bytes]) -> tuple[bytes, Iterator[memoryview]]:
    """Take the header off the front of a chunk stream, leaving the rest untouched."""
    header = bytearray()
    for chunk in chunks:
        view = byte_view(chunk)
        take = HEADER_SIZE - len(header)
        header += view[:take]
        if len(header) == HEADER_SIZE:
            _check_header(bytes(header))
            return bytes(header), chain((view[take:],), chunks)
    _check_header(bytes(header))
    raise AssertionError("unreachable")  # pragma: no cover


def _read_exactly(read: Callable[[int, int], Iterable[bytes]], first: int, last: int) -> bytes:
    data = b"".join(read(first, last))
    if len(data) != last - first + 1:
        raise IntegrityError("storage returned the wrong number of bytes for a range")
    return data


def _resegment(chunks: Iterable[bytes], size: int) -> Iterator[tuple[memoryview | bytearray, bool]]:
    """Re-cut arbitrary chunks into `size`-byte pieces, flagging the last one.

    A full piece is held back until at least one more byte arrives, so the flag is exact.
    Pieces lying inside one input chunk are zero-copy views; only pieces spanning chunks
    are copied, so at most one piece is buffered here. The final piece may be empty.
    """
    pending = bytearray()
    for chunk in chunks:
        view = byte_view(chunk)
        size_in = len(view)
        if not size_in:
            continue
        pos = 0
        if pending:
            if len(pending) < size:
                pos = min(size - len(pending), size_in)
                pending += view[:pos]
            if len(pending) == size and pos < size_in:
                yield pending, False
                pending = bytearray()
        while size_in - pos > size:
            yield view[pos : pos + size], False
            pos += size
        if pos < size_in:
            pending += view[pos:]
    yield pending, True
