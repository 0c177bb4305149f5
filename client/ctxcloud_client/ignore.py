"""Which paths of a synced folder `ctx` leaves out: `.ctxignore` (gitignore syntax) and its own
files, which are never uploaded nor written by a pull."""

from __future__ import annotations

from pathlib import Path

import pathspec

IGNORE_FILE = ".ctxignore"
STATE_DIR = ".ctx"
# Temporary files of a pull being written (`.ctxtmp-<random>` beside their destination).
TEMP_PREFIX = ".ctxtmp-"


class IgnoreRules:
    """`.ctxignore` of a folder's root, plus the rules nobody can turn off: the state folder
    `.ctx/`, `.ctxignore` itself and pull temporaries, at any depth for the latter."""

    def __init__(self, lines: list[str] | None = None) -> None:
        self.lines = list(lines or [])
        self._spec = pathspec.GitIgnoreSpec.from_lines(self.lines)

    @classmethod
    def for_folder(cls, root: Path) -> IgnoreRules:
        file = root / IGNORE_FILE
        if not file.is_file():
            return cls()
        return cls(file.read_text(encoding="utf-8", errors="replace").splitlines())

    def ignores(self, path: str, *, is_dir: bool = False) -> bool:
        """Whether a `/`-separated path relative to the root is left out (a folder's rules
        apply to everything under it)."""
        first = path.split("/", 1)[0]
        if first == STATE_DIR or path == IGNORE_FILE:
            return True
        if path.rsplit("/", 1)[-1].startswith(TEMP_PREFIX):
            return True
        parts = path.split("/")
        # A file under an ignored folder is ignored, as in git (a folder cannot be re-included).
        for depth in range(1, len(parts)):
            if self._spec.match_file("/".join(parts[:depth]) + "/"):
                return True
        return self._spec.match_file(path + "/" if is_dir else path)
