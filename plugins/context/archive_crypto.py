"""Passphrase encryption of project archives, streamed in segments (docs/export-import.md).

Layout (version 1), all integers big-endian:

    magic      11 bytes  b"ctxcloud\\x00ea"
    version    1 byte    1
    log2_n     1 byte    scrypt cost N = 2**log2_n (15 when written; 14..17 accepted)
    r          1 byte    scrypt block size (8)
    p          1 byte    scrypt parallelism (1)
    salt       16 bytes  random
    prefix     8 bytes   random nonce prefix
    check      16 bytes  HMAC-SHA256(key, b"ctxcloud archive key check")[:16]
    segments   each AES-256-GCM(key, nonce = prefix || counter (4 bytes), plaintext,
               aad = header || final flag (1 byte: 1 on the last segment, else 0)),
               SEGMENT plaintext bytes (the last one 0..SEGMENT) followed by its 16-byte tag

The key is scrypt(passphrase, salt, N, r, p, 32 bytes). The final flag in each segment's
associated data makes a cut archive fail (its new last segment was not written as the last),
the counter in the nonce makes reordered segments fail, and the header is authenticated by
every segment. `check` tells a wrong passphrase from a damaged archive before any segment is
decrypted (it is no weaker than the first segment's tag, which would tell the same).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from collections.abc import Iterable, Iterator

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

MAGIC = b"ctxcloud\x00ea"  # "ctxcloud", NUL, "ea" (encrypted archive): 11 bytes
VERSION = 1
SEGMENT = 64 * 1024
TAG = 16
LOG2_N, R, P = 15, 8, 1
ACCEPTED_LOG2_N = range(14, 18)
SALT_BYTES, PREFIX_BYTES, CHECK_BYTES = 16, 8, 16
HEADER_BYTES = len(MAGIC) + 4 + SALT_BYTES + PREFIX_BYTES + CHECK_BYTES
MAX_PASSPHRASE_BYTES = 1024
MIN_PASSPHRASE_BYTES = 8
_CHECK_LABEL = b"ctxcloud archive key check"


class ArchiveCryptoError(Exception):
    """The encrypted archive cannot be read: `reason` is "wrong_passphrase", "damaged" or
    "malformed"."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def is_encrypted(head: bytes) -> bool:
    """Do these first bytes of an archive start the encrypted format?"""
    return head[: len(MAGIC)] == MAGIC


def _key(passphrase: bytes, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=2**log2_n, r=r, p=p).derive(passphrase)


def _check(key: bytes) -> bytes:
    return hmac.new(key, _CHECK_LABEL, hashlib.sha256).digest()[:CHECK_BYTES]


def _nonce(prefix: bytes, counter: int) -> bytes:
    if counter >= 2**32:
        raise ArchiveCryptoError("malformed", "The archive has too many segments.")
    return prefix + struct.pack(">I", counter)


def encrypt(passphrase: bytes, chunks: Iterable[bytes], *, log2_n: int = LOG2_N) -> Iterator[bytes]:
    """The encrypted archive of a plaintext stream: the header, then one piece per segment."""
    salt, prefix = os.urandom(SALT_BYTES), os.urandom(PREFIX_BYTES)
    key = _key(passphrase, salt, log2_n, R, P)
    header = MAGIC + bytes([VERSION, log2_n, R, P]) + salt + prefix + _check(key)
    aead = AESGCM(key)
    yield header
    counter = 0
    pending = bytearray()
    for chunk in chunks:
        pending += chunk
        # Keep at least one byte back: the last segment is only known at the end.
        while len(pending) > SEGMENT:
            segment = bytes(pending[:SEGMENT])
            del pending[:SEGMENT]
            yield aead.encrypt(_nonce(prefix, counter), segment, header + b"\x00")
            counter += 1
    yield aead.encrypt(_nonce(prefix, counter), bytes(pending), header + b"\x01")


def _read_exactly(stream, size: int) -> bytes:
    parts = []
    while size:
        piece = stream.read(size)
        if not piece:
            break
        parts.append(piece)
        size -= len(piece)
    return b"".join(parts)


def decrypt(passphrase: bytes, stream) -> Iterator[bytes]:
    """The plaintext of an encrypted archive read from `stream` (a binary file object), a
    segment at a time; ArchiveCryptoError on a wrong passphrase or any damage, at the latest
    when the stream ends."""
    header = _read_exactly(stream, HEADER_BYTES)
    if len(header) < HEADER_BYTES or not is_encrypted(header):
        raise ArchiveCryptoError("malformed", "The encrypted archive's header is incomplete.")
    at = len(MAGIC)
    version, log2_n, r, p = header[at : at + 4]
    if version != VERSION:
        raise ArchiveCryptoError(
            "malformed", f"Unknown encrypted archive version {version} (this service reads 1)."
        )
    if log2_n not in ACCEPTED_LOG2_N or r != R or p != P:
        raise ArchiveCryptoError("malformed", "Unsupported key derivation parameters.")
    at += 4
    salt = header[at : at + SALT_BYTES]
    prefix = header[at + SALT_BYTES : at + SALT_BYTES + PREFIX_BYTES]
    check = header[-CHECK_BYTES:]
    key = _key(passphrase, salt, log2_n, r, p)
    if not hmac.compare_digest(_check(key), check):
        raise ArchiveCryptoError("wrong_passphrase", "Wrong passphrase for this archive.")
    aead = AESGCM(key)
    counter = 0
    current = _read_exactly(stream, SEGMENT + TAG)
    while True:
        if len(current) < TAG:
            raise ArchiveCryptoError("damaged", "The encrypted archive is cut short.")
        following = _read_exactly(stream, SEGMENT + TAG) if len(current) == SEGMENT + TAG else b""
        final = not following
        try:
            plain = aead.decrypt(
                _nonce(prefix, counter), current, header + (b"\x01" if final else b"\x00")
            )
        except InvalidTag:
            raise ArchiveCryptoError(
                "damaged", "The encrypted archive failed authentication (damaged or cut short)."
            ) from None
        if plain:
            yield plain
        if final:
            if _read_exactly(stream, 1):
                raise ArchiveCryptoError("damaged", "Bytes follow the archive's last segment.")
            return
        counter += 1
        current = following
