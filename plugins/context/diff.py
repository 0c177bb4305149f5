"""Diffs between two kept revisions of a project's context.

`diff(project, from_revision, to_revision, max_bytes, prefix)` compares the two manifests:
paths only in `to` are added, only in `from` removed, in both with other bytes (SHA-256)
changed. Either order works (from > to gives the reverse diff); from == to is empty.

Text: an entry is text when its content type is a text type (`service.is_text`: text/*,
JSON, XML, YAML, TOML...) AND its bytes decode as UTF-8, on both sides. A changed text entry
gets a unified diff (difflib, 3 lines of context, `a/PATH@FROM` and `b/PATH@TO` headers, a
`\\ No newline at end of file` marker as git writes it); any other changed entry is
`binary: true` with both digests.

Bounds:
- `max_bytes` bounds the whole JSON response (as UTF-8, compact). The path lists come first,
  in path order; when even they do not fit, they are cut (`truncated: true`, `counts` still
  gives the totals). Diffs then fill what is left, in path order; a diff that does not fit
  whole is cut at a line boundary (`diff_truncated: true`), and the ones after it get none
  (`diff_omitted: "budget"`).
- An entry larger than DIFF_MAX_ENTRY_BYTES on either side is never read
  (`diff_omitted: "too_large"`); no more than DIFF_MAX_READ_BYTES are read in all
  (`diff_omitted: "read_limit"`).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterator
from typing import Any

from ctxcloud import NotFound, objects, setting
from ctxcloud.plugins.context import service
from ctxcloud.plugins.context.changes import HistoryPruned
from ctxcloud.plugins.context.models import EntryVersion, Project

CONTEXT_LINES = 3
# Room kept in each changed item, while the lists are laid out, for its longest reason.
RESERVE = len(',"diff_omitted":"read_limit"')
NO_NEWLINE = "\\ No newline at end of file\n"


def _size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":")).encode("utf-8"))


def _item(version: EntryVersion) -> dict[str, Any]:
    return {"path": version.path, "size": version.size, "sha256": version.sha256}


def _lines(text: str) -> list[str]:
    return text.splitlines(keepends=True)


def unified(path: str, old: str, new: str, from_revision: int, to_revision: int) -> Iterator[str]:
    """The unified diff's lines, each ending in a newline (a last line without one gets
    git's marker)."""
    for line in difflib.unified_diff(
        _lines(old),
        _lines(new),
        fromfile=f"a/{path}@{from_revision}",
        tofile=f"b/{path}@{to_revision}",
        n=CONTEXT_LINES,
    ):
        if line.endswith("\n"):
            yield line
        else:
            yield line + "\n"
            yield NO_NEWLINE


def check_kept(project: Project, revision: int) -> None:
    """A revision that can be read: past the head is a 404 (no such revision yet), before
    `history_starts_at` a 410 `history_pruned` (it was, and is gone), carrying
    `history_starts_at` and the head `revision`, as the changes feed answers."""
    if revision > project.revision:
        raise NotFound(f"No revision {revision}: the head is {project.revision}.")
    if revision < project.history_starts_at:
        raise HistoryPruned(
            f"Revision {revision} was pruned: history starts at {project.history_starts_at}.",
            history_starts_at=project.history_starts_at,
            revision=project.revision,
        )


def _text(tenant_id: str, project: Project, version: EntryVersion) -> str | None:
    if not service.is_text(version.content_type):
        return None
    if version.size == 0:
        return ""
    data = b"".join(objects.read(tenant_id, project.id, version.object_key, version.size))
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def diff(
    project: Project,
    from_revision: int,
    to_revision: int | None,
    max_bytes: int,
    prefix: str = "",
) -> dict[str, Any]:
    """The diff from `from_revision` to `to_revision` (None: the head), within `max_bytes`.

    A revision beyond the head raises NotFound (404), a pruned one HistoryPruned (410).
    Uses the project's own tenant.
    """
    check_kept(project, from_revision)
    to_revision = project.revision if to_revision is None else to_revision
    check_kept(project, to_revision)
    before = {v.path: v for v in service.manifest(project, from_revision, prefix)}
    after = {v.path: v for v in service.manifest(project, to_revision, prefix)}
    added = [_item(after[p]) for p in sorted(after.keys() - before.keys())]
    removed = [_item(before[p]) for p in sorted(before.keys() - after.keys())]
    changed_paths = sorted(
        p for p in before.keys() & after.keys() if before[p].sha256 != after[p].sha256
    )
    changed = [
        {
            "path": p,
            "from_sha256": before[p].sha256,
            "to_sha256": after[p].sha256,
            "from_size": before[p].size,
            "to_size": after[p].size,
            "binary": False,
            "diff_truncated": False,
        }
        for p in changed_paths
    ]
    result: dict[str, Any] = {
        "project_id": project.id,
        "from": from_revision,
        "to": to_revision,
        "counts": {"added": len(added), "removed": len(removed), "changed": len(changed)},
        "truncated": False,
        "added": [],
        "removed": [],
        "changed": [],
    }
    # The lists, as far as they fit (room kept for the flag turning true).
    used = _size(result) + 1
    for name, items in (("added", added), ("removed", removed), ("changed", changed)):
        for item in items:
            # The biggest a changed item may grow without a diff: its diff_omitted reason.
            cost = _size(item) + 1 + (RESERVE if name == "changed" else 0)
            if result["truncated"] or used + cost > max_bytes:
                result["truncated"] = True
                break
            result[name].append(item)
            used += cost
    if result["truncated"]:
        for item in result["changed"]:
            item["diff_omitted"], item["diff_truncated"] = "budget", True
        return result

    tenant_id = project.tenant_id
    entry_cap = int(setting("DIFF_MAX_ENTRY_BYTES"))
    read_left = int(setting("DIFF_MAX_READ_BYTES"))
    out_of_budget = False
    for item in result["changed"]:
        old, new = before[item["path"]], after[item["path"]]
        if not (service.is_text(old.content_type) and service.is_text(new.content_type)):
            item["binary"] = True
            continue
        if old.size > entry_cap or new.size > entry_cap:
            item["diff_omitted"] = "too_large"
            continue
        if out_of_budget:
            item["diff_omitted"], item["diff_truncated"] = "budget", True
            continue
        if old.size + new.size > read_left:
            item["diff_omitted"] = "read_limit"
            continue
        read_left -= old.size + new.size
        old_text = _text(tenant_id, project, old)
        new_text = _text(tenant_id, project, new) if old_text is not None else None
        if old_text is None or new_text is None:
            item["binary"] = True
            continue
        # What the item grows by with a diff: `,"diff":"..."`, in place of the room reserved
        # for a reason; diff_truncated is already counted.
        room = max_bytes - used + RESERVE - len(',"diff":""')
        kept: list[str] = []
        size = 0
        for line in unified(item["path"], old_text, new_text, old.revision, new.revision):
            cost = _size(line) - 2  # the line's JSON-escaped bytes, without quotes
            if size + cost > room:
                item["diff_truncated"] = True
                out_of_budget = True
                break
            kept.append(line)
            size += cost
        if kept:
            item["diff"] = "".join(kept)
            used += size + len(',"diff":""') - RESERVE
        else:
            item["diff_omitted"] = "budget"
    return result
