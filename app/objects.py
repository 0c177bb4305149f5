"""Encrypted objects: plaintext streams in, opaque ciphertext objects out, and back.

Object keys are random (`o/<2 hex>/<32 hex>`): they reveal no tenant, project, path or
content hash. Each object is encrypted under its tenant's data key with associated data
binding tenant, project and object key, so an object moved or copied anywhere else fails
to decrypt.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import flask

from ctxcloud import crypto
from ctxcloud.bulkhead import Bulkhead
from ctxcloud.errors import IntegrityFailure
from ctxcloud.keystore import current_keystore
from ctxcloud.metrics import count_storage_bytes
from ctxcloud.object_cache import ObjectCache
from ctxcloud.read_ahead import ReadAhead
from ctxcloud.serial_worker import ChunkBatches
from ctxcloud.storage import ObjectNotFound, StorageBackend

log = logging.getLogger("ctxcloud.objects")


@dataclass(frozen=True)
class StoredObject:
    """What was written: the object key and the plaintext's size and SHA-256."""

    key: str
    size: int
    sha256: str


def new_object_key() -> str:
    token = secrets.token_hex(16)
    return f"o/{token[:2]}/{token}"


def _aad(tenant_id: str, project_id: str, key: str) -> bytes:
    return f"ctxcloud-object|{tenant_id}|{project_id}|{key}".encode()


def storage() -> StorageBackend:
    return flask.current_app.extensions["ctxcloud"].storage


def storage_bulkhead() -> Bulkhead:
    """The cap on this process's threads inside the storage backend (app/bulkhead.py)."""
    return flask.current_app.extensions["ctxcloud"].storage_bulkhead


# Chunks are handed to the hashing thread in batches of about this size: each hand-off costs
# a thread wake-up and a GIL hand-over, so fewer, larger ones.
HASH_BATCH = 4 * 1024 * 1024


class _Measured:
    """Pass chunks through while counting bytes and hashing them (the plaintext's identity).

    Hashing runs on a helper thread (hashlib releases the GIL for large buffers) so it
    overlaps the next network read and the encryption; chunks must be immutable bytes.
    """

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = chunks
        self.size = 0
        self._hash = hashlib.sha256()
        self._hasher = ChunkBatches(self._hash_all, HASH_BATCH)

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            chunk = self._hasher.add(chunk)
            self.size += len(chunk)
            yield chunk
        self._hasher.finish()

    def _hash_all(self, chunks: list[bytes]) -> None:
        for chunk in chunks:
            self._hash.update(chunk)

    def close(self) -> None:
        self._hasher.close()

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()


def store(tenant_id: str, project_id: str, chunks: Iterable[bytes]) -> StoredObject:
    """Encrypt and store a plaintext stream; an exception from `chunks` leaves no object."""
    key = new_object_key()
    data_key = current_keystore().data_key(tenant_id)
    bulkhead = storage_bulkhead()
    # The slot is held while the backend works, not while a slow client sends the next chunk.
    measured = _Measured(bulkhead.outside(chunks))
    try:
        with bulkhead.slot():
            written = storage().put(
                key, crypto.encrypt_stream(data_key, measured, _aad(tenant_id, project_id, key))
            )
    finally:
        measured.close()
    count_storage_bytes("in", written)
    return StoredObject(key=key, size=measured.size, sha256=measured.sha256)


def read(
    tenant_id: str, project_id: str, key: str, size: int, start: int = 0, end: int | None = None
) -> Iterator[bytes]:
    """Plaintext bytes [start, end] of an object, authenticated; only the needed segments."""
    data_key = current_keystore().data_key(tenant_id)
    aad = _aad(tenant_id, project_id, key)
    backend, bulkhead = storage(), storage_bulkhead()
    last = size - 1 if end is None else end
    cache: ObjectCache = flask.current_app.extensions["ctxcloud"].object_cache
    cached = cache.get(key) if cache.keeps(size) else None
    # A whole read of a small object keeps its ciphertext, once it has decrypted whole.
    whole = size == 0 or (start == 0 and last == size - 1)
    kept: list[bytes] | None = [] if whole and cached is None and cache.keeps(size) else None

    def fetch(first: int = 0, final: int | None = None) -> Iterator[bytes]:
        if cached is not None:  # the ciphertext as stored (app/object_cache.py)
            yield cached[first:] if final is None else cached[first : final + 1]
            return
        # A slot while the backend is asked, none while the client is slow to take a chunk.
        with bulkhead.slot():
            chunks = backend.get(key, first, final)
        for chunk in bulkhead.guard_iterator(iter(chunks)):
            count_storage_bytes("out", len(chunk))
            if kept is not None:
                kept.append(bytes(chunk))
            yield chunk

    def decrypted() -> Iterator[bytes]:
        if whole:
            yield from crypto.decrypt_stream(data_key, fetch(), aad)
            if kept is not None:
                cache.put(key, b"".join(kept))
            return
        yield from crypto.decrypt_range(data_key, fetch, size, start, last, aad)

    chunks = _coalesced(_guarded(decrypted, key))
    if last - start + 1 >= READ_AHEAD_MIN:
        return _read_ahead(chunks)
    return chunks


# Entries at least this big are decrypted a few pieces ahead of the response on a helper
# thread (app/read_ahead.py); smaller ones never start a thread.
READ_AHEAD_MIN = 4 * 1024 * 1024


def _read_ahead(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """The first piece here (the response checks it inside the request, logs included),
    the rest from a helper thread while the previous piece is being sent."""
    first = next(chunks, None)
    if first is None:
        return
    yield first
    yield from ReadAhead(chunks)


# Responses go out in about 1 MiB writes instead of one per 64 KiB segment: fewer syscalls and
# generator steps per byte, at the cost of one copy.
RESPONSE_CHUNK = 1024 * 1024


def _coalesced(chunks: Iterator[bytes]) -> Iterator[bytes]:
    pending: list[bytes] = []
    size = 0
    for chunk in chunks:
        pending.append(chunk)
        size += len(chunk)
        if size >= RESPONSE_CHUNK:
            yield pending[0] if len(pending) == 1 else b"".join(pending)
            pending, size = [], 0
    if pending:
        yield b"".join(pending)


def _guarded(open_chunks: Callable[[], Iterator[bytes]], key: str) -> Iterator[bytes]:
    """Turn an authentication failure, or an object gone from storage, into a logged
    integrity_error; the object is opened on the first chunk, so either happens there."""
    try:
        yield from open_chunks()
    except crypto.IntegrityError as exc:
        _log_integrity_error("stored object failed authentication", key)
        raise IntegrityFailure("The stored entry failed its integrity check.") from exc
    except ObjectNotFound as exc:
        _log_integrity_error("stored object is missing", key)
        raise IntegrityFailure("The stored entry failed its integrity check.") from exc


def _log_integrity_error(reason: str, key: str) -> None:
    log.error(f"integrity_error: {reason}", extra={"event": "integrity_error", "object_key": key})


def delete_quietly(keys: Iterable[str]) -> None:
    """Best-effort removal: a leftover object is unreferenced ciphertext, not data loss."""
    backend, bulkhead = storage(), storage_bulkhead()
    for key in keys:
        try:
            with bulkhead.slot():
                backend.delete(key)
        except Exception:
            log.warning("could not delete stored object", extra={"object_key": key}, exc_info=True)
