"""Budgeted rendering: one document of a project's text entries within a token budget.

The route (`GET .../context/render`, render_routes.py) checks the caller's permission and
calls `render()`; so may any other reader that has already decided the caller may read the
project at that revision (a signed link, for one). `render()` itself never looks at the
request's actor.

The rule (docs/diff-and-render.md):
- Entries are taken in order: those whose metadata has a numeric `order` (a JSON number, not
  a boolean) first, by that number, then every other one; ties, and the rest, by path.
- Each included entry is one section headed by its path; Markdown entries (`text/markdown`,
  or a `.md`/`.markdown` path) go in as they are, other text in a fenced code block.
- An entry is included whole or not at all. One that does not fit what is left of the budget
  is skipped (`budget`) and later, smaller entries are still tried.
- A trailer lists what was left out and why; its tokens count against the budget. It lists
  as many entries as fit, then "and N more".
- Work is bounded: at most RENDER_MAX_ENTRIES entries are considered (`entry_limit`), an
  entry past RENDER_MAX_ENTRY_BYTES is never read (`too_large`), and no more than
  RENDER_MAX_READ_BYTES are read in all (`read_limit`).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

import flask

from ctxcloud import objects, setting
from ctxcloud.plugins.context import service
from ctxcloud.plugins.context.diff import check_kept
from ctxcloud.plugins.context.models import EntryVersion, Project
from ctxcloud.plugins.context.tokens import COUNTER, count_tokens

FORMATS = ("markdown", "text", "json")
MIMETYPES = {"markdown": "text/markdown", "text": "text/plain", "json": "application/json"}
# The smallest budget the route accepts: room for a trailer that says how much was left out.
MIN_TOKENS = 32
# Tries at fitting the sections and the trailer together before dropping sections one by one.
MAX_TRIES = 16
# A document up to this long is counted whole once more (a check of the sum of its parts);
# a longer one is not: counting runs at about 2 MB/s (bench/token_count.py).
RECOUNT_CHARS = 1_000_000


@dataclass
class Part:
    path: str
    content_type: str
    revision: int
    text: str  # the entry's text, as stored
    section: str  # its section of the document: heading and text
    tokens: int  # the section's tokens


@dataclass
class Omission:
    path: str
    reason: str


@dataclass
class Rendered:
    """A rendering: `document` (Markdown or plain text), or `as_json()` for the JSON form.

    `tokens` counts the whole document (sections and trailer), always <= `max_tokens`.
    """

    project_id: str
    revision: int
    max_tokens: int
    format: str
    tokens: int = 0
    document: str = ""
    parts: list[Part] = field(default_factory=list)
    omitted: list[Omission] = field(default_factory=list)

    @property
    def mimetype(self) -> str:
        return MIMETYPES[self.format]

    def as_json(self) -> dict[str, Any]:
        return {
            "project_id": self.project_id,
            "revision": self.revision,
            "max_tokens": self.max_tokens,
            "tokens": self.tokens,
            "counter": COUNTER,
            "parts": [
                {
                    "path": part.path,
                    "content_type": part.content_type,
                    "revision": part.revision,
                    "tokens": part.tokens,
                    "text": part.text,
                }
                for part in self.parts
            ],
            "omitted": [{"path": o.path, "reason": o.reason} for o in self.omitted],
        }

    def body(self) -> str:
        if self.format == "json":
            return json.dumps(self.as_json(), ensure_ascii=False, separators=(",", ":"))
        return self.document

    def response(self, headers: dict[str, str] | None = None) -> flask.Response:
        """The HTTP answer: the body with its type, and `Context-Revision`/`Render-Tokens`."""
        response = flask.Response(self.body(), status=200, mimetype=self.mimetype)
        response.headers["Context-Revision"] = str(self.revision)
        response.headers["Render-Tokens"] = str(self.tokens)
        response.headers["Vary"] = "Accept"
        for name, value in (headers or {}).items():
            response.headers[name] = value
        return response


def order_key(version: EntryVersion) -> tuple:
    """Explicit numeric `order` metadata first (by number), then path."""
    metadata = version.metadata if isinstance(version.metadata, dict) else {}
    order = metadata.get("order")
    if (
        isinstance(order, (int, float))
        and not isinstance(order, bool)
        and math.isfinite(float(order))
    ):
        return (0, float(order), version.path)
    return (1, 0.0, version.path)


def _is_markdown(version: EntryVersion) -> bool:
    base = version.content_type.split(";", 1)[0].strip().lower()
    return base in ("text/markdown", "text/x-markdown") or version.path.lower().endswith(
        (".md", ".markdown")
    )


_BACKTICKS = re.compile(r"`{3,}")


def section(version: EntryVersion, text: str, fmt: str) -> str:
    """The entry's section of the document: its path as heading, then its text."""
    if fmt == "text":
        return f"==> {version.path} <==\n{_ending(text)}\n"
    if _is_markdown(version):
        return f"## {version.path}\n\n{_ending(text)}\n"
    longest = max((len(run) for run in _BACKTICKS.findall(text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"## {version.path}\n\n{fence}\n{_ending(text)}{fence}\n\n"


def _ending(text: str) -> str:
    return text if not text or text.endswith("\n") else text + "\n"


def _trailer_head(fmt: str, omitted: int, total: int) -> str:
    what = f"Left out: {omitted} of {total} entries"
    return f"==> {what} <==\n" if fmt == "text" else f"---\n\n{what}:\n\n"


def _trailer_line(omission: Omission) -> str:
    return f"- {omission.path}: {omission.reason}\n"


def _trailer_rest(rest: list[Omission]) -> str:
    reasons: dict[str, int] = {}
    for omission in rest:
        reasons[omission.reason] = reasons.get(omission.reason, 0) + 1
    why = ", ".join(f"{reason} {count}" for reason, count in reasons.items())
    return f"- and {len(rest)} more ({why})\n"


def trailer(fmt: str, omitted: list[Omission], total: int, room: int) -> str:
    """What was left out, listing entries while the trailer fits `room` tokens, then
    "and N more" for the rest (by reason). Empty when nothing was left out."""
    if not omitted:
        return ""
    head = _trailer_head(fmt, len(omitted), total)
    used = count_tokens(head)
    # "and N more" for any tail costs at most what it costs for all of them.
    rest_cost = count_tokens(_trailer_rest(omitted))
    if used + rest_cost > room:
        # No room even to say why: only how many (MIN_TOKENS leaves room for this).
        what = f"Left out: {len(omitted)} of {total} entries."
        return f"==> {what} <==\n" if fmt == "text" else f"---\n\n{what}\n"
    lines: list[str] = []
    for index, omission in enumerate(omitted):
        line = _trailer_line(omission)
        cost = count_tokens(line)
        last = index == len(omitted) - 1
        if used + cost + (0 if last else rest_cost) > room:
            lines.append(_trailer_rest(omitted[index:]))
            break
        lines.append(line)
        used += cost
    return head + "".join(lines)


def _read_text(tenant_id: str, project: Project, version: EntryVersion) -> str | None:
    """The entry's text (its size is already within bounds), None if not UTF-8."""
    chunks = objects.read(tenant_id, project.id, version.object_key, version.size)
    data = b"".join(chunks) if version.size else b""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def render(
    project: Project,
    revision: int | None,
    max_tokens: int,
    prefix: str = "",
    output: str = "markdown",
) -> Rendered:
    """Render `project`'s text entries at `revision` within `max_tokens`.

    Arguments:
    - `project`: the Project row (already resolved and allowed for whoever asks; the
      tenant is the project's own, `project.tenant_id`, never the request's).
    - `revision`: a kept revision number, or None for the head. A revision beyond the head
      raises NotFound (404); a pruned one HistoryPruned (410 `history_pruned`, with
      `history_starts_at`). Check it first if your answer must differ.
    - `max_tokens`: the budget (>= MIN_TOKENS; the route validates it), counted with
      `tokens.count_tokens` over the whole document, trailer included.
    - `prefix`: only paths starting with it (already validated: `paths.validate_prefix`).
    - `output`: "markdown", "text" or "json" (FORMATS). JSON reports the Markdown rendering's
      parts and counts.

    Returns a `Rendered`; `rendered.response()` is the HTTP answer (body, type, headers).
    """
    if output not in FORMATS:
        raise ValueError(f"output must be one of {FORMATS}")
    if revision is not None:
        check_kept(project, revision)
    versions = service.manifest(project, revision, prefix)
    at = project.revision if revision is None else revision
    doc_format = "text" if output == "text" else "markdown"
    max_entries = int(setting("RENDER_MAX_ENTRIES"))
    max_entry_bytes = int(setting("RENDER_MAX_ENTRY_BYTES"))
    read_left = int(setting("RENDER_MAX_READ_BYTES"))

    ordered = sorted(versions, key=order_key)
    # (index in order, Part or Omission): decided entries keep their place.
    decided: list[Part | Omission] = []
    candidates: list[Part] = []
    for index, version in enumerate(ordered):
        if index >= max_entries:
            decided.append(Omission(version.path, "entry_limit"))
            continue
        if not service.is_text(version.content_type):
            decided.append(Omission(version.path, "binary"))
            continue
        if version.size > max_entry_bytes:
            decided.append(Omission(version.path, "too_large"))
            continue
        if version.size > read_left:
            decided.append(Omission(version.path, "read_limit"))
            continue
        read_left -= version.size
        text = _read_text(project.tenant_id, project, version)
        if text is None:
            decided.append(Omission(version.path, "not_utf8"))
            continue
        body = section(version, text, doc_format)
        tokens = count_tokens(body)
        if tokens > max_tokens:  # could never fit: drop its text at once
            decided.append(Omission(version.path, "budget"))
            continue
        part = Part(version.path, version.content_type, version.revision, text, body, tokens)
        decided.append(part)
        candidates.append(part)

    total = len(ordered)

    def assemble(included: set[int]) -> tuple[list[Part], list[Omission], str, int]:
        """The sections chosen, what was left out, the trailer, and the document's tokens.

        Sections end in a newline and the next (or the trailer) starts with a mark, never
        with whitespace: no piece of the counter spans two of them, so the document's tokens
        are the sum of its sections' and the trailer's."""
        parts = [i for i in decided if isinstance(i, Part) and id(i) in included]
        omitted = [
            i if isinstance(i, Omission) else Omission(i.path, "budget")
            for i in decided
            if not (isinstance(i, Part) and id(i) in included)
        ]
        body_tokens = sum(part.tokens for part in parts)
        tail = trailer(doc_format, omitted, total, max_tokens - body_tokens)
        return parts, omitted, tail, body_tokens + count_tokens(tail)

    def choose(room: int) -> set[int]:
        """Greedy, in order: each section that fits what is left of `room`."""
        included, used = set(), 0
        for part in candidates:
            if used + part.tokens <= room:
                included.add(id(part))
                used += part.tokens
        return included

    # Room for the trailer: start with none, and keep back what the last try overshot, until
    # the document fits (a few tries at most); then, if need be, drop sections from the end.
    reserve = 0
    for _ in range(MAX_TRIES):
        included = choose(max_tokens - reserve)
        parts, omitted, tail, tokens = assemble(included)
        if tokens <= max_tokens:
            break
        reserve += tokens - max_tokens
    while True:
        document = "".join(part.section for part in parts) + tail
        if len(document) <= RECOUNT_CHARS:
            tokens = count_tokens(document)  # the whole, counted once more as a check
        if tokens <= max_tokens or not parts:
            break
        included.discard(id(parts[-1]))
        parts, omitted, tail, tokens = assemble(included)

    return Rendered(
        project_id=project.id,
        revision=at,
        max_tokens=max_tokens,
        format=output,
        tokens=tokens,
        document=document,
        parts=parts,
        omitted=omitted,
    )
