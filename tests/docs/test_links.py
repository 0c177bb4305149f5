"""The docs are one connected set: index.md maps every page, and no link leads nowhere."""

from __future__ import annotations

import re
from pathlib import Path

from tests.support.server import ROOT

DOCS = ROOT / "docs"
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def prose_lines(path: Path) -> list[str]:
    """The page's lines outside fenced code blocks."""
    lines, fenced = [], False
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced:
            lines.append(line)
    return lines


def anchors(path: Path) -> set[str]:
    """GitHub's ids for the page's headings."""
    return {
        re.sub(r"[^\w\- ]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in prose_lines(path)
        if line.startswith("#")
    }


def local_links(path: Path) -> list[str]:
    return [
        target
        for line in prose_lines(path)
        for target in LINK.findall(line)
        if not re.match(r"[a-z]+:", target)
    ]


def test_index_maps_every_page():
    linked = {target.partition("#")[0] for target in local_links(DOCS / "index.md")}
    pages = {page.name for page in DOCS.glob("*.md")} - {"index.md"}
    assert pages - linked == set()


def test_every_local_link_resolves():
    broken = []
    for page in [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]:
        for target in local_links(page):
            file, _, anchor = target.partition("#")
            linked = (page.parent / file).resolve() if file else page
            if not linked.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


def test_no_page_links_outside_the_repository():
    """README and docs stand on their own: every link is to a page or file of the repository
    (addresses in examples, in code spans or blocks, are not links)."""
    outside = [
        f"{page.relative_to(ROOT)}: {target}"
        for page in [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
        for line in prose_lines(page)
        for target in LINK.findall(line)
        if re.match(r"[a-z]+:", target)
    ]
    assert not outside, "\n".join(outside)
