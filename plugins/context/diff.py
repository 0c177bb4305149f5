"""Diffs between two kept revisions of a project's context.

`diff(project, from_revision, to_revision, max_bytes, prefix)` compares the two manifests:
paths only in `to` are added, only in `from` removed, in both with other bytes (SHA-256)
changed. Either order works (from > to gives the reverse diff); from == to is empty.

Text: an entry is text when its content type is a text type (`service.is_text`: text/*,
JSON, XML, YAML, TOML...) AND its bytes decode as UTF-8, on both sides. A changed text entry
gets a unified diff (difflib's format, 3 lines of context, `a/PATH@FROM` and `b/PATH@TO`
headers, a `\\ No newline at end of file` marker as git writes it); any other changed entry is
`binary: true` with both digests. Lines are matched by patience diff (lines unique to both
sides anchor the match), with difflib's matcher only for small gaps, under a work budget: plain
difflib takes minutes on some 512 KiB texts.

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

import bisect
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
    """Lines split at "\\n" only (a U+2028 or a form feed inside a line stays in it), each
    with its newline; the last one has none if the text does not end with one."""
    lines = [line + "\n" for line in text.split("\n")]
    lines[-1] = lines[-1][:-1]
    return lines if lines[-1] else lines[:-1]


# The matching work one entry's diff, and one whole diff request, may do, in line visits (and
# line pairs where difflib compares a gap with no unique line); past it, what is left to match
# counts as replaced: the diff is still right, only coarser. (Measured: a 40,000-line entry with
# every seventh line changed takes 0.3 s; difflib alone took 65 s.)
WORK_BUDGET = 4_000_000
REQUEST_WORK_BUDGET = 16_000_000


class Work:
    """What is left of a request's matching work (shared by its entries' diffs)."""

    def __init__(self, left: int = REQUEST_WORK_BUDGET) -> None:
        self.left = left


# A gap with no line unique to both sides goes to difflib only up to this many line pairs.
GAP_PAIRS = 250_000


def _unique_anchors(a: list[str], alo: int, ahi: int, b: list[str], blo: int, bhi: int):
    """Patience diff's anchors: lines once in a[alo:ahi] and once in b[blo:bhi], the longest
    run of them in the same order on both sides, as (i, j) pairs."""
    seen_a: dict[str, int] = {}
    for i in range(alo, ahi):
        seen_a[a[i]] = -1 if a[i] in seen_a else i
    seen_b: dict[str, int] = {}
    for j in range(blo, bhi):
        if b[j] in seen_a:
            seen_b[b[j]] = -1 if b[j] in seen_b else j
    pairs = sorted(
        (i, seen_b[line]) for line, i in seen_a.items() if i >= 0 and seen_b.get(line, -1) >= 0
    )
    if not pairs:
        return []
    # Longest increasing subsequence of j (patience sorting), with back pointers.
    tails: list[int] = []  # index into pairs of the smallest tail of each length
    tail_js: list[int] = []  # and that tail's j
    back = [-1] * len(pairs)
    for index, (_, j) in enumerate(pairs):
        position = bisect.bisect_left(tail_js, j)
        if position > 0:
            back[index] = tails[position - 1]
        if position == len(tails):
            tails.append(index)
            tail_js.append(j)
        else:
            tails[position] = index
            tail_js[position] = j
    anchors = []
    index = tails[-1]
    while index >= 0:
        anchors.append(pairs[index])
        index = back[index]
    return anchors[::-1]


def matching_blocks(
    a: list[str], b: list[str], shared: Work | None = None
) -> list[tuple[int, int, int]]:
    """Blocks of equal lines, as difflib's get_matching_blocks gives them (sorted, merged,
    with the (len(a), len(b), 0) sentinel), found by patience diff: common ends, then lines
    unique to both sides as anchors, recursively; a gap without any goes to difflib while
    small, else counts as replaced. Bounded by WORK_BUDGET and what `shared` has left."""
    found: list[tuple[int, int, int]] = []
    budget = WORK_BUDGET if shared is None else min(WORK_BUDGET, shared.left)
    work = 0
    stack = [(0, len(a), 0, len(b))]
    while stack:
        alo, ahi, blo, bhi = stack.pop()
        size = 0
        while alo + size < ahi and blo + size < bhi and a[alo + size] == b[blo + size]:
            size += 1
        if size:
            found.append((alo, blo, size))
            alo, blo = alo + size, blo + size
        size = 0
        while ahi - size > alo and bhi - size > blo and a[ahi - 1 - size] == b[bhi - 1 - size]:
            size += 1
        if size:
            found.append((ahi - size, bhi - size, size))
            ahi, bhi = ahi - size, bhi - size
        if alo == ahi or blo == bhi:
            continue
        work += (ahi - alo) + (bhi - blo)
        if work > budget:
            continue  # replaced as a whole
        anchors = _unique_anchors(a, alo, ahi, b, blo, bhi)
        if anchors:
            i0, j0 = alo, blo
            for i, j in anchors:
                stack.append((i0, i, j0, j))
                found.append((i, j, 1))
                i0, j0 = i + 1, j + 1
            stack.append((i0, ahi, j0, bhi))
            continue
        pairs = (ahi - alo) * (bhi - blo)
        if pairs <= GAP_PAIRS and work + pairs <= budget:
            work += pairs
            matcher = difflib.SequenceMatcher(None, a[alo:ahi], b[blo:bhi], autojunk=False)
            found.extend((alo + i, blo + j, n) for i, j, n in matcher.get_matching_blocks() if n)
    if shared is not None:
        shared.left -= min(work, budget)
    found.sort()
    merged: list[tuple[int, int, int]] = []
    for i, j, n in found:
        if merged and merged[-1][0] + merged[-1][2] == i and merged[-1][1] + merged[-1][2] == j:
            merged[-1] = (merged[-1][0], merged[-1][1], merged[-1][2] + n)
        else:
            merged.append((i, j, n))
    merged.append((len(a), len(b), 0))
    return merged


def _range(start: int, stop: int) -> str:
    """A unified diff hunk's range, as difflib writes it."""
    length = stop - start
    if length == 1:
        return str(start + 1)
    return f"{start + 1 if length else start},{length}"


def unified(
    path: str,
    old: str,
    new: str,
    from_revision: int,
    to_revision: int,
    work: Work | None = None,
) -> Iterator[str]:
    """The unified diff's lines (difflib's format, 3 lines of context), each ending in a
    newline (a last line without one gets git's marker)."""
    a, b = _lines(old), _lines(new)
    matcher = difflib.SequenceMatcher(None, [], [])
    matcher.a, matcher.b = a, b
    matcher.matching_blocks = matching_blocks(a, b, work)
    matcher.opcodes = None
    started = False
    for group in matcher.get_grouped_opcodes(CONTEXT_LINES):
        if not started:
            started = True
            yield f"--- a/{path}@{from_revision}\n"
            yield f"+++ b/{path}@{to_revision}\n"
        first, last = group[0], group[-1]
        yield f"@@ -{_range(first[1], last[2])} +{_range(first[3], last[4])} @@\n"
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                yield from _marked(" ", a[i1:i2])
                continue
            if tag in ("replace", "delete"):
                yield from _marked("-", a[i1:i2])
            if tag in ("replace", "insert"):
                yield from _marked("+", b[j1:j2])


def _marked(mark: str, lines: list[str]) -> Iterator[str]:
    for line in lines:
        if line.endswith("\n"):
            yield mark + line
        else:
            yield mark + line + "\n"
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
    work = Work()
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
        lines = unified(item["path"], old_text, new_text, old.revision, new.revision, work)
        for line in lines:
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
