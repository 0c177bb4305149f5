"""What a synced folder remembers (`.ctx/state.json` inside it): the project it belongs to,
the revision it was last pushed or pulled at, and for each path the SHA-256 of the version
both sides last agreed on: the base of the three-way comparison push and pull make."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ctxcloud_client.cli_errors import CommandError
from ctxcloud_client.ignore import STATE_DIR

STATE_FILE = "state.json"
FORMAT = 1


@dataclass
class FolderState:
    project_id: str
    revision: int
    files: dict[str, str] = field(default_factory=dict)
    server: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "server": self.server,
            "project_id": self.project_id,
            "revision": self.revision,
            "files": dict(sorted(self.files.items())),
        }


def state_path(root: Path) -> Path:
    return root / STATE_DIR / STATE_FILE


def load_state(root: Path) -> FolderState | None:
    """The folder's state, or None for a folder never pushed or pulled."""
    path = state_path(root)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise CommandError(
            f"{path}: unreadable state ({exc}); move the folder's .ctx/ away to start afresh."
        ) from exc
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise CommandError(f"{path}: not a state file of this ctx (format {FORMAT}).")
    files = raw.get("files")
    if not isinstance(files, dict) or not isinstance(raw.get("project_id"), str):
        raise CommandError(f"{path}: malformed state file.")
    return FolderState(
        project_id=raw["project_id"],
        revision=int(raw.get("revision") or 0),
        files={str(p): str(h) for p, h in files.items()},
        server=str(raw.get("server") or ""),
    )


def save_state(root: Path, state: FolderState) -> None:
    """Write the state whole or not at all (a temporary file renamed over the old one)."""
    folder = root / STATE_DIR
    folder.mkdir(exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=".state-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(state.to_json(), out, indent=1)
            out.write("\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, state_path(root))
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)
        raise
