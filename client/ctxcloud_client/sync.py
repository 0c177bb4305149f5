"""Push and pull between a folder and a project: plans made by content hash, then applied.

Each plan is a three-way comparison per path of the folder's file (`local`), the version the
folder last agreed on with the project (`base`, from its state file) and the project's entry
(`remote`). A side that moved away from the base has a change to carry over; both sides
moving to different bytes is a conflict, and nothing is done until it is resolved. A folder
with no state has an empty base: a path present on both sides with other bytes is then a
conflict too (the folder cannot know which side is newer).
"""

from __future__ import annotations

import contextlib
import hashlib
import mimetypes
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ctxcloud_client.cli_errors import CommandError, ConflictError
from ctxcloud_client.client import Client
from ctxcloud_client.errors import Conflict, InvalidPath
from ctxcloud_client.ignore import TEMP_PREFIX, IgnoreRules
from ctxcloud_client.localtree import LocalFile, scan
from ctxcloud_client.models import CommitPut, Entry, Manifest, Revision
from ctxcloud_client.paths import quote_entry_path
from ctxcloud_client.progress import CountingReader, Progress
from ctxcloud_client.state import FolderState, load_state, save_state

# Files larger than this go as staged uploads (streamed); smaller ones inline in the commit.
LARGE_FILE = 1024 * 1024
# Inline bytes per commit: base64 makes them ~4/3 bigger, and the service takes JSON bodies of
# up to 16 MiB; past this budget the remaining files go as uploads too.
INLINE_BUDGET = 8 * 1024 * 1024
# The service takes at most this many puts, and this many deletes, in one commit.
MAX_COMMIT_ITEMS = 1000
# A pull of at least this many files asks for the text ones inlined in one manifest first.
INLINE_PULL_MIN = 8
INLINE_PULL_BYTES = 16 * 1024 * 1024
EXTRA_TYPES = {".md": "text/markdown", ".markdown": "text/markdown", ".toml": "application/toml"}


@dataclass(frozen=True)
class Action:
    """One change a plan makes: `add`, `change` or `delete` of `path`; `sha256` and `size`
    are of the bytes it will hold (None and 0 for a delete)."""

    path: str
    kind: str
    sha256: str | None = None
    size: int = 0


@dataclass(frozen=True)
class Note:
    """A path the plan leaves alone (or cannot decide), and why."""

    path: str
    reason: str


@dataclass
class Plan:
    direction: str  # "push" or "pull"
    project_id: str
    base_revision: int | None  # the folder's remembered revision; None: never synced
    remote_revision: int  # the project's revision the plan was made against
    actions: list[Action] = field(default_factory=list)
    conflicts: list[Note] = field(default_factory=list)
    skipped: list[Note] = field(default_factory=list)
    state_after: dict[str, str] = field(default_factory=dict)

    def of_kind(self, kind: str) -> list[Action]:
        return [action for action in self.actions if action.kind == kind]

    @property
    def deletes(self) -> list[Action]:
        return self.of_kind("delete")

    @property
    def writes(self) -> list[Action]:
        return [action for action in self.actions if action.kind != "delete"]

    def to_json(self) -> dict[str, Any]:
        return {
            "direction": self.direction,
            "project_id": self.project_id,
            "base_revision": self.base_revision,
            "remote_revision": self.remote_revision,
            "add": [a.path for a in self.of_kind("add")],
            "change": [a.path for a in self.of_kind("change")],
            "delete": [a.path for a in self.deletes],
            "conflicts": [{"path": n.path, "reason": n.reason} for n in self.conflicts],
            "skipped": [{"path": n.path, "reason": n.reason} for n in self.skipped],
        }


# ---- planning (pure: no files, no requests) ---------------------------------------------


def plan_push(
    local: Mapping[str, LocalFile],
    base: Mapping[str, str] | None,
    remote: Mapping[str, Entry],
    *,
    project_id: str = "",
    base_revision: int | None = None,
    remote_revision: int = 0,
    delete: bool = False,
    force: bool = False,
) -> Plan:
    """What a push sends: every file changed here since the base whose entry did not change
    remotely meanwhile (else a conflict, unless `force`); deletes only with `delete`."""
    plan = Plan("push", project_id, base_revision, remote_revision)
    known = base or {}
    for path in sorted(set(local) | set(known) | set(remote)):
        here = local[path].sha256 if path in local else None
        was = known.get(path)
        there = remote[path].sha256 if path in remote else None
        if here is not None:
            if here == there:
                plan.state_after[path] = here
            elif here == was:
                reason = "changed remotely" if there else "deleted remotely"
                plan.skipped.append(Note(path, reason + ": pull to take it"))
                plan.state_after[path] = was
            elif there == was or force:
                kind = "add" if there is None else "change"
                plan.actions.append(Action(path, kind, here, local[path].size))
                plan.state_after[path] = here
            else:
                if base is None:
                    reason = "differs remotely and this folder was never synced"
                elif there is None:
                    reason = "changed here, deleted remotely"
                else:
                    reason = "changed here and remotely"
                plan.conflicts.append(Note(path, reason))
                if was is not None:
                    plan.state_after[path] = was
        elif was is not None and there is not None:  # deleted here
            if not delete:
                plan.skipped.append(Note(path, "deleted here: push --delete to delete it"))
                plan.state_after[path] = was
            elif there == was or force:
                plan.actions.append(Action(path, "delete"))
            else:
                plan.conflicts.append(Note(path, "deleted here, changed remotely"))
                plan.state_after[path] = was
    return plan


def plan_pull(
    local: Mapping[str, LocalFile],
    base: Mapping[str, str] | None,
    remote: Mapping[str, Entry],
    *,
    project_id: str = "",
    base_revision: int | None = None,
    remote_revision: int = 0,
    delete: bool = False,
    force: bool = False,
) -> Plan:
    """What a pull writes: every entry changed remotely since the base, where the folder did
    not change the file meanwhile (else a conflict, unless `force`: then the remote wins).
    Files the project never had are never touched; files it had and no longer has are
    deleted only with `delete`."""
    plan = Plan("pull", project_id, base_revision, remote_revision)
    known = base or {}
    for path in sorted(set(local) | set(known) | set(remote)):
        here = local[path].sha256 if path in local else None
        was = known.get(path)
        there = remote[path].sha256 if path in remote else None
        if there is not None:
            if here == there:
                plan.state_after[path] = there
            elif there == was and not force:
                reason = "changed here: push to send it" if here else "deleted here"
                plan.skipped.append(Note(path, reason))
                plan.state_after[path] = was
            elif (here is None and was is None) or here == was or force:
                kind = "add" if here is None else "change"
                plan.actions.append(Action(path, kind, there, remote[path].size))
                plan.state_after[path] = there
            else:
                if base is None:
                    reason = "differs locally and this folder was never synced"
                elif here is None:
                    reason = "deleted here, changed remotely"
                else:
                    reason = "changed here and remotely"
                plan.conflicts.append(Note(path, reason))
                if was is not None:
                    plan.state_after[path] = was
        elif was is not None and here is not None:  # the project had it, and has it no more
            if not delete:
                plan.skipped.append(Note(path, "deleted remotely: pull --delete to delete it"))
                plan.state_after[path] = was
            elif here == was or force:
                plan.actions.append(Action(path, "delete"))
            else:
                plan.conflicts.append(Note(path, "changed here, deleted remotely"))
                plan.state_after[path] = was
    return plan


def check_deletes(plan: Plan, max_delete: int | None) -> None:
    if max_delete is not None and len(plan.deletes) > max_delete:
        raise CommandError(
            f"The plan deletes {len(plan.deletes)} file(s), more than --max-delete "
            f"{max_delete}: nothing was done.",
            code="too_many_deletes",
            plan=plan.to_json(),
        )


def check_conflicts(plan: Plan) -> None:
    if not plan.conflicts:
        return
    if plan.direction == "push":
        hint = (
            "the project changed them since this folder last synced. Take its changes with "
            "`ctx pull` (for a path changed on both sides: keep a copy of yours, "
            "`ctx pull --force`, merge, push again), or overwrite them with `ctx push --force`"
        )
    else:
        hint = (
            "they were changed here and in the project. Keep a copy of yours and let the "
            "project win with `ctx pull --force`, or let yours win with `ctx push --force`"
        )
    raise ConflictError(
        f"{len(plan.conflicts)} conflict(s), nothing was done: {hint}.",
        plan=plan.to_json(),
    )


def commit_batches(plan: Plan, split: bool) -> list[tuple[list[Action], list[Action]]]:
    """The plan's writes and deletes as commits of at most MAX_COMMIT_ITEMS each: one commit,
    unless `split` allows several (each atomic, the whole not)."""
    writes, deletes = plan.writes, plan.deletes
    if not writes and not deletes:
        return []
    if len(writes) <= MAX_COMMIT_ITEMS and len(deletes) <= MAX_COMMIT_ITEMS:
        return [(writes, deletes)]
    if not split:
        raise CommandError(
            f"This push writes {len(writes)} and deletes {len(deletes)} file(s); one commit "
            f"(one revision) takes at most {MAX_COMMIT_ITEMS} of each. Nothing was done. "
            "--split pushes it as several commits, each atomic (the whole is not).",
            code="too_many_changes",
        )
    batches = []
    for start in range(0, max(len(writes), len(deletes)), MAX_COMMIT_ITEMS):
        end = start + MAX_COMMIT_ITEMS
        batches.append((writes[start:end], deletes[start:end]))
    return batches


# ---- reading both sides -----------------------------------------------------------------


@dataclass
class Sides:
    root: Path
    rules: IgnoreRules
    state: FolderState | None
    local: dict[str, LocalFile]
    manifest: Manifest
    remote: dict[str, Entry]


def read_sides(client: Client, project: str, root: Path, revision: int | None = None) -> Sides:
    """The folder's files and state, and the project's manifest, both without ignored paths."""
    if not root.is_dir():
        raise CommandError(f"{root}: not a folder.")
    rules = IgnoreRules.for_folder(root)
    state = load_state(root)
    manifest = client.manifest(project, revision=revision)
    assert isinstance(manifest, Manifest)
    if state is not None and state.project_id != manifest.project_id:
        raise CommandError(
            f"{root} is synced with another project ({state.project_id}); this one is "
            f"{manifest.project_id}. Use another folder."
        )
    remote = {e.path: e for e in manifest.entries if not rules.ignores(e.path)}
    local = scan(root, rules)
    return Sides(root, rules, state, local, manifest, remote)


def _plan(sides: Sides, direction: str, *, delete: bool, force: bool) -> Plan:
    planner = plan_push if direction == "push" else plan_pull
    state = sides.state
    return planner(
        sides.local,
        state.files if state is not None else None,
        sides.remote,
        project_id=sides.manifest.project_id,
        base_revision=state.revision if state is not None else None,
        remote_revision=sides.manifest.revision,
        delete=delete,
        force=force,
    )


def plan_for(sides: Sides, direction: str, *, delete: bool, force: bool) -> Plan:
    plan = _plan(sides, direction, delete=delete, force=force)
    if direction == "push":
        bad = []
        for action in plan.writes:
            try:
                quote_entry_path(action.path)
            except InvalidPath:
                bad.append(action.path)
        if bad:
            raise CommandError(
                "These file names are not valid entry paths (add them to .ctxignore): "
                + ", ".join(repr(p) for p in bad[:10]),
                code="invalid_path",
            )
    return plan


# ---- applying a push --------------------------------------------------------------------


def _content_type(path: str) -> str | None:
    suffix = os.path.splitext(path)[1].lower()
    return EXTRA_TYPES.get(suffix) or mimetypes.guess_type(path)[0]


def _read_checked(file: Path, action: Action) -> bytes:
    data = file.read_bytes()
    if hashlib.sha256(data).hexdigest() != action.sha256:
        raise CommandError(f"{action.path} changed while it was being pushed; run again.")
    return data


def _commit_item(
    client: Client, project: str, root: Path, action: Action, inline: bool, progress: Progress
) -> CommitPut:
    file = root / action.path
    content_type = _content_type(action.path)
    if inline:
        data = _read_checked(file, action)
        progress.advance(len(data))
        try:
            return CommitPut.text(action.path, data.decode("utf-8"), content_type=content_type)
        except UnicodeDecodeError:
            return CommitPut.binary(action.path, data, content_type=content_type)
    upload = client.create_upload(project)
    with file.open("rb") as handle:
        # Content-SHA256 is the planned hash: a file changed since is refused by the service.
        client.send_upload(
            project,
            upload.upload_id,
            CountingReader(handle, progress),  # type: ignore[arg-type]
            sha256=action.sha256,
            size=action.size,
        )
    return CommitPut.upload(action.path, upload.upload_id, content_type=content_type)


def apply_push(
    client: Client,
    project: str,
    sides: Sides,
    plan: Plan,
    *,
    message: str | None,
    split: bool,
    progress: Progress,
) -> list[Revision]:
    """Send the plan as one commit (or, with `split`, as several) made against the revision
    the plan was checked against: if anyone pushed since, the service refuses it (409) and
    nothing is written. Then remember the new state."""
    batches = commit_batches(plan, split)
    revisions: list[Revision] = []
    parent = plan.remote_revision
    progress.start("push", sum(a.size for a in plan.writes), len(plan.writes))
    for writes, deletes in batches:
        items, inline_left = [], INLINE_BUDGET
        for action in writes:
            inline = action.size <= LARGE_FILE and action.size <= inline_left
            if inline:
                inline_left -= action.size
            items.append(_commit_item(client, project, sides.root, action, inline, progress))
            progress.file_done(action.path)
        try:
            revision = client.commit(
                project,
                put=items,
                delete=[a.path for a in deletes],
                message=message,
                parent_revision=parent,
            )
        except Conflict as error:
            done = f" ({len(revisions)} earlier commit(s) went in)" if revisions else ""
            raise ConflictError(
                f"The project moved on since this push was planned: someone else pushed. "
                f"Nothing of this commit was written{done}. Run `ctx pull`, then push again. "
                f"({error})",
                request_id=error.request_id,
            ) from error
        revisions.append(revision)
        parent = revision.revision
    progress.close()
    new_revision = revisions[-1].revision if revisions else plan.remote_revision
    _remember(sides, plan, new_revision, client)
    return revisions


def _remember(sides: Sides, plan: Plan, revision: int, client: Client) -> None:
    state = FolderState(
        project_id=plan.project_id,
        revision=revision,
        files=dict(plan.state_after),
        server=client.base_url,
    )
    if sides.state is None or state.to_json() != sides.state.to_json():
        save_state(sides.root, state)


# ---- applying a pull --------------------------------------------------------------------


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomically(
    dest: Path, chunks: Iterable[bytes], sha256: str | None, progress: Progress
) -> None:
    """Write `dest` whole or not at all: a temporary file beside it, checked against `sha256`,
    flushed to disk and renamed over it (an old file keeps its permissions)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = dest.stat().st_mode & 0o7777
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
    handle, temp = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=dest.parent)
    try:
        digest = hashlib.sha256()
        with os.fdopen(handle, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
                digest.update(chunk)
                progress.advance(len(chunk))
            out.flush()
            os.fsync(out.fileno())
        if sha256 is not None and digest.hexdigest() != sha256:
            raise CommandError(
                f"{dest}: the bytes received hash to {digest.hexdigest()}, the manifest "
                f"says {sha256}; nothing was written.",
                code="content_mismatch",
            )
        os.chmod(temp, mode)
        os.replace(temp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise


def _inlined(client: Client, project: str, plan: Plan) -> dict[str, bytes]:
    """The text entries to write, from one manifest read with their contents, when there are
    enough of them to be worth it (one request instead of one each)."""
    wanted = {a.path: a.sha256 for a in plan.writes if a.size <= LARGE_FILE}
    if len(wanted) < INLINE_PULL_MIN:
        return {}
    manifest = client.manifest(
        project,
        revision=plan.remote_revision,
        include_content=True,
        max_bytes=INLINE_PULL_BYTES,
    )
    assert isinstance(manifest, Manifest)
    found = {}
    for entry in manifest.entries:
        if entry.path in wanted and entry.content is not None:
            data = entry.content.encode("utf-8")
            if hashlib.sha256(data).hexdigest() == wanted[entry.path]:
                found[entry.path] = data
    return found


def _remove_empty_parents(root: Path, path: Path) -> None:
    folder = path.parent
    while folder != root and root in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent


def apply_pull(client: Client, project: str, sides: Sides, plan: Plan, progress: Progress) -> None:
    """Write every entry of the plan at the plan's revision (each file atomically, checked
    against its SHA-256), delete what it deletes, and only then remember the new state: an
    interrupted pull leaves whole files and the old state, and the next one finishes it."""
    root = sides.root
    progress.start("pull", sum(a.size for a in plan.writes), len(plan.writes))
    inlined = _inlined(client, project, plan)
    for action in plan.writes:
        dest = root / action.path
        if action.path in inlined:
            write_atomically(dest, [inlined[action.path]], action.sha256, progress)
        else:
            with client.stream_entry(project, action.path, revision=plan.remote_revision) as s:
                write_atomically(dest, s, action.sha256, progress)
        progress.file_done(action.path)
    for action in plan.deletes:
        dest = root / action.path
        with contextlib.suppress(FileNotFoundError):
            dest.unlink()
        _remove_empty_parents(root, dest)
    progress.close()
    _remember(sides, plan, plan.remote_revision, client)


def after_pull(sides: Sides, plan: Plan) -> Sides:
    """The folder as a pull of `plan` leaves it (what a sync's push then plans from), known
    without reading the files again: the written ones were checked against their hashes."""
    local = dict(sides.local)
    for action in plan.actions:
        if action.kind == "delete":
            local.pop(action.path, None)
        else:
            assert action.sha256 is not None
            local[action.path] = LocalFile(action.path, action.sha256, action.size)
    state = FolderState(plan.project_id, plan.remote_revision, dict(plan.state_after))
    return Sides(sides.root, sides.rules, state, local, sides.manifest, sides.remote)
