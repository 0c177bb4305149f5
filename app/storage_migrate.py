"""Moving every stored object to another backend, as ciphertext, verified and resumable.

Objects are encrypted before any backend sees them and their keys are opaque, so moving a
deployment from one store to another (local to S3, S3 to Azure...) is a byte copy: nothing is
decrypted, no key material is needed, and the same object key names the same ciphertext on
the new store. Each copy is verified: its size, and the SHA-256 of the ciphertext read back
from the target, against the digest taken while reading the source.

Resumable: an object the target already holds with the source's size and digest is skipped
(counted as already there), anything else is copied again, so a run that was interrupted (or
one repeated after writes continued on the old store) finishes the job. The switch-over
procedure is in docs/storage.md ("Moving to another backend").
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from ctxcloud.storage import ObjectInfo, ObjectNotFound, StorageBackend, StorageError

__all__ = ["MigrationReport", "migrate_objects"]

log = logging.getLogger("ctxcloud.storage.migrate")


@dataclass
class MigrationReport:
    """What a migration saw and did: every source object is copied, already there, or failed."""

    source: str
    target: str
    objects: int = 0
    copied: int = 0
    already_there: int = 0
    failed: int = 0
    bytes_copied: int = 0
    failures: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "source": self.source,
            "target": self.target,
            "objects": self.objects,
            "copied": self.copied,
            "already_there": self.already_there,
            "failed": self.failed,
            "bytes_copied": self.bytes_copied,
            "failures": self.failures[:100],
        }

    def describe(self) -> str:
        return (
            f"storage migrate {self.source} -> {self.target}: {self.objects} objects, "
            f"{self.copied} copied ({self.bytes_copied} bytes), {self.already_there} already "
            f"there, {self.failed} failed"
        )


def _digest(chunks: Iterable[bytes]) -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    for chunk in chunks:
        digest.update(chunk)
        size += len(chunk)
    return digest.hexdigest(), size


class _Hashed:
    """The source's chunks passed on while their SHA-256 and size are taken."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._digest = hashlib.sha256()
        self.size = 0

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            self._digest.update(chunk)
            self.size += len(chunk)
            yield chunk

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()


def _same(source: StorageBackend, target: StorageBackend, key: str) -> bool:
    """Whether the target holds the source's object byte for byte (size first: it is cheap)."""
    there = target.head(key)
    here = source.head(key)
    if there is None or here is None or there.size != here.size:
        return False
    return _digest(source.get(key)) == _digest(target.get(key))


def copy_object(source: StorageBackend, target: StorageBackend, key: str) -> int:
    """Copy one object and verify it on the target; the bytes copied (StorageError if not)."""
    hashed = _Hashed(iter(source.get(key)))
    written = target.put(key, hashed)
    if written != hashed.size:
        raise StorageError(f"{key}: the target stored {written} bytes of {hashed.size}")
    stored, size = _digest(target.get(key))
    if (stored, size) != (hashed.sha256, hashed.size):
        raise StorageError(f"{key}: the copy on the target does not match the source")
    return size


def migrate_objects(
    source: StorageBackend,
    target: StorageBackend,
    *,
    source_name: str,
    target_name: str,
    objects: Iterable[ObjectInfo] | None = None,
    progress: Callable[[int, MigrationReport], None] | None = None,
) -> MigrationReport:
    """Copy every object of `source` (or those of `objects`, a listing of it) to `target`
    (see the module); `progress(size, report)` is called after each object."""
    report = MigrationReport(source=source_name, target=target_name)
    for info in source.scan("") if objects is None else objects:
        report.objects += 1
        try:
            if _same(source, target, info.key):
                report.already_there += 1
            else:
                report.bytes_copied += copy_object(source, target, info.key)
                report.copied += 1
        except ObjectNotFound:
            report.objects -= 1  # deleted on the source meanwhile: nothing to move
        except StorageError as exc:
            report.failed += 1
            report.failures.append(f"{info.key}: {exc}")
            log.warning("storage migrate: could not copy an object", extra={"object_key": info.key})
        if progress is not None:
            progress(info.size, report)
    return report
