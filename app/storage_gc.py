"""Orphaned objects: stored, named by no record, older than a grace; found and removed safely.

How orphans happen: a write stores its encrypted object first and records it in a database
transaction afterwards (app.objects, then the plugin's service), so that no record ever names
a missing object. A process killed between the two (SIGKILL, OOM, power loss) cannot delete
the object it stored: nothing references it, and nothing ever will. On S3 a kill during a
multipart upload also leaves the upload's parts, billed and invisible.

Why the sweep is safe against writes in flight:

- only objects last written before the grace (``now - grace``) are considered: a write in
  flight has stored its object but not committed its record yet, and that window is far
  shorter than the grace (default a day). S3 dates a multipart object from the start of its
  upload, so the grace must also exceed the longest upload;
- every plugin is asked (the ``objects_in_use`` hook, in batches) and a key any plugin names
  is kept; with no plugin answering, the sweep refuses to run rather than call everything
  an orphan;
- an object whose age the backend cannot tell is never removed;
- keys are random and never rewritten, so an orphan cannot become referenced later.

Dry run by default: it only counts. ``delete=True`` removes the orphans and aborts
incomplete uploads begun before the grace.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pluggy

from ctxcloud.storage import ObjectInfo, StorageBackend, StorageError

__all__ = ["DEFAULT_GRACE_SECONDS", "GcRefused", "GcReport", "Tally", "collect_garbage"]

log = logging.getLogger("ctxcloud.storage.gc")

DEFAULT_GRACE_SECONDS = 24 * 3600.0
# Keys per objects_in_use call: one query per plugin per batch, well under SQL parameter limits.
BATCH_SIZE = 1000


class GcRefused(Exception):
    """The sweep cannot tell orphans apart (no plugin answers objects_in_use): it does nothing."""


@dataclass
class Tally:
    """How many objects (or uploads), and how many stored bytes."""

    count: int = 0
    bytes: int = 0

    def add(self, size: int | None) -> None:
        self.count += 1
        self.bytes += size or 0

    def as_dict(self) -> dict[str, int]:
        return {"count": self.count, "bytes": self.bytes}


@dataclass
class GcReport:
    """What a sweep saw and did; every object scanned is in exactly one of in_use, recent,
    undated and orphaned."""

    delete: bool
    grace_seconds: float
    cutoff: float
    scanned: Tally = field(default_factory=Tally)
    in_use: Tally = field(default_factory=Tally)
    recent: Tally = field(default_factory=Tally)  # written within the grace: never touched
    undated: Tally = field(default_factory=Tally)  # the backend cannot tell when: never touched
    orphaned: Tally = field(default_factory=Tally)  # older than the grace, named by nothing
    removed: Tally = field(default_factory=Tally)
    incomplete_uploads: Tally = field(default_factory=Tally)  # begun before the cutoff
    aborted: Tally = field(default_factory=Tally)
    failures: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": not self.delete,
            "grace_seconds": self.grace_seconds,
            "cutoff": _iso(self.cutoff),
            **{
                name: getattr(self, name).as_dict()
                for name in (
                    "scanned",
                    "in_use",
                    "recent",
                    "undated",
                    "orphaned",
                    "removed",
                    "incomplete_uploads",
                    "aborted",
                )
            },
            "failures": self.failures,
        }

    def describe(self) -> str:
        """The report for a terminal: one line per kind, with counts and sizes."""
        mode = "storage gc" if self.delete else "storage gc, dry run (--delete removes)"
        lines = [
            f"{mode}: orphans are objects written before {_iso(self.cutoff)} "
            f"(grace {self.grace_seconds:g} s) that no record names",
            _line("scanned", self.scanned),
            _line("in use", self.in_use),
            _line("within the grace", self.recent, "kept"),
        ]
        if self.undated.count:
            lines.append(_line("of unknown age", self.undated, "kept"))
        if self.delete:
            lines.append(_line("orphaned", self.orphaned))
            lines.append(_line("removed", self.removed))
            lines.append(_line("incomplete uploads", self.incomplete_uploads))
            lines.append(_line("aborted", self.aborted))
        else:
            lines.append(_line("orphaned", self.orphaned, "would be removed"))
            lines.append(_line("incomplete uploads", self.incomplete_uploads, "would be aborted"))
        if self.failures:
            lines.append(f"  {self.failures} removal(s) failed; see the log, then run again")
        return "\n".join(lines)


def collect_garbage(
    storage: StorageBackend,
    pm: pluggy.PluginManager,
    *,
    grace: float = DEFAULT_GRACE_SECONDS,
    delete: bool = False,
) -> GcReport:
    """Count (and with delete=True remove) objects older than `grace` seconds nobody names.

    Also counts (and aborts) the backend's incomplete uploads begun before the grace. A
    failed removal is logged and counted, and the sweep goes on; a failing listing raises.
    """
    if grace < 0:
        raise ValueError("the grace cannot be negative")
    if not pm.hook.objects_in_use.get_hookimpls():
        raise GcRefused(
            "no loaded plugin implements objects_in_use, so every object would look orphaned; "
            "refusing to sweep (is the context plugin disabled?)"
        )
    report = GcReport(delete=delete, grace_seconds=grace, cutoff=time.time() - grace)
    # Uploads first: a store refusing to list them stops the sweep before anything is removed.
    _abort_incomplete_uploads(storage, report)
    batch: list[ObjectInfo] = []
    for info in storage.scan():
        report.scanned.add(info.size)
        if info.modified is None:
            report.undated.add(info.size)
        elif info.modified >= report.cutoff:
            report.recent.add(info.size)
        else:
            batch.append(info)
            if len(batch) >= BATCH_SIZE:
                _sweep(storage, pm, batch, report)
                batch = []
    if batch:
        _sweep(storage, pm, batch, report)
    return report


def _abort_incomplete_uploads(storage: StorageBackend, report: GcReport) -> None:
    """Count (and abort, if asked) the uploads begun before the cutoff and never finished."""
    for upload in list(storage.incomplete_uploads(started_before=report.cutoff)):
        report.incomplete_uploads.add(upload.size)
        if not report.delete:
            continue
        try:
            aborted = storage.abort_upload(upload)
        except StorageError:
            report.failures += 1
            log.warning(
                "storage gc: could not abort an incomplete upload",
                extra={"object_key": upload.key, "upload_id": upload.upload_id},
                exc_info=True,
            )
            continue
        if aborted:
            report.aborted.add(upload.size)
            log.info(
                "storage gc: aborted an incomplete upload",
                extra={"object_key": upload.key, "upload_id": upload.upload_id},
            )


def _sweep(
    storage: StorageBackend, pm: pluggy.PluginManager, batch: list[ObjectInfo], report: GcReport
) -> None:
    """Sort one batch of old objects into in use and orphaned; remove the orphans if asked."""
    named = _in_use(pm, [info.key for info in batch])
    for info in batch:
        if info.key in named:
            report.in_use.add(info.size)
            continue
        report.orphaned.add(info.size)
        if not report.delete:
            continue
        try:
            existed = storage.delete(info.key)
        except StorageError:
            report.failures += 1
            log.warning(
                "storage gc: could not remove an orphaned object",
                extra={"object_key": info.key},
                exc_info=True,
            )
            continue
        if existed:
            report.removed.add(info.size)
            log.info(
                "storage gc: removed an orphaned object",
                extra={"object_key": info.key, "size": info.size},
            )


def _in_use(pm: pluggy.PluginManager, keys: list[str]) -> set[str]:
    """Every key of `keys` that some plugin names (the union of their answers)."""
    named: set[str] = set()
    for answer in pm.hook.objects_in_use(keys=list(keys)):
        named.update(answer or ())
    return named


def _iso(timestamp: float) -> str:
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def _size(count: int) -> str:
    if count < 1024:
        return f"{count} B"
    value = count / 1024
    for unit in ("KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def _line(label: str, tally: Tally, note: str = "") -> str:
    noun = "object" if tally.count == 1 else "objects"
    if label.startswith("incomplete") or label == "aborted":
        noun = "upload" if tally.count == 1 else "uploads"
    text = f"  {label:<20} {tally.count:>8} {noun:<8} {_size(tally.bytes):>10}"
    return f"{text}  {note}" if note else text
