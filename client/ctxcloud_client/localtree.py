"""A folder's files as `{path: sha256}`: every regular file not ignored, hashed once."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from ctxcloud_client.ignore import IgnoreRules

HASH_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class LocalFile:
    path: str  # relative, `/`-separated
    sha256: str
    size: int


def file_sha256(path: Path) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as file:
        while chunk := file.read(HASH_CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def scan(root: Path, rules: IgnoreRules) -> dict[str, LocalFile]:
    """Regular files under `root`, by relative path; symbolic links (to files or folders)
    are not followed and not synced, ignored folders are not descended into."""
    found: dict[str, LocalFile] = {}
    for folder, dirs, files in os.walk(root, followlinks=False):
        rel_folder = os.path.relpath(folder, root)
        prefix = "" if rel_folder == "." else rel_folder.replace(os.sep, "/") + "/"
        dirs[:] = sorted(
            name
            for name in dirs
            if not os.path.islink(os.path.join(folder, name))
            and not rules.ignores(prefix + name, is_dir=True)
        )
        for name in sorted(files):
            rel = prefix + name
            full = Path(folder, name)
            if full.is_symlink() or not full.is_file() or rules.ignores(rel):
                continue
            sha256, size = file_sha256(full)
            found[rel] = LocalFile(rel, sha256, size)
    return found
