"""A synced folder's memory (`.ctx/state.json`) and its scan: hashes, ignores, symlinks."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from ctxcloud_client.cli_errors import CommandError
from ctxcloud_client.ignore import IgnoreRules
from ctxcloud_client.localtree import scan
from ctxcloud_client.state import FolderState, load_state, save_state, state_path


def test_state_round_trips_and_is_replaced_whole(tmp_path):
    assert load_state(tmp_path) is None
    state = FolderState("prj_1", 4, {"b.md": "2" * 64, "a.md": "1" * 64}, server="http://x")
    save_state(tmp_path, state)
    assert load_state(tmp_path) == state
    raw = json.loads(state_path(tmp_path).read_text())
    assert raw["format"] == 1 and list(raw["files"]) == ["a.md", "b.md"]
    save_state(tmp_path, FolderState("prj_1", 5, {}))
    assert load_state(tmp_path).revision == 5
    assert sorted(p.name for p in (tmp_path / ".ctx").iterdir()) == ["state.json"]


@pytest.mark.parametrize("text", ["{", "[]", '{"format": 1}', '{"format": 99, "files": {}}'])
def test_a_damaged_state_is_an_error_not_a_fresh_start(tmp_path, text):
    (tmp_path / ".ctx").mkdir()
    state_path(tmp_path).write_text(text)
    with pytest.raises(CommandError):
        load_state(tmp_path)


def test_scan_hashes_every_file_once_and_skips_ignored_and_links(tmp_path):
    (tmp_path / "docs" / "deep").mkdir(parents=True)
    (tmp_path / "docs" / "deep" / "a.md").write_bytes(b"a")
    (tmp_path / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024 + 5))
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "out.o").write_bytes(b"o")
    (tmp_path / "x.log").write_bytes(b"l")
    (tmp_path / ".ctxignore").write_text("build/\n*.log\n")
    (tmp_path / ".ctx").mkdir()
    (tmp_path / ".ctx" / "state.json").write_text("{}")
    (tmp_path / "link.md").symlink_to(tmp_path / "docs" / "deep" / "a.md")
    (tmp_path / "linked").symlink_to(tmp_path / "docs", target_is_directory=True)
    found = scan(tmp_path, IgnoreRules.for_folder(tmp_path))
    assert sorted(found) == ["big.bin", "docs/deep/a.md"]
    big = (tmp_path / "big.bin").read_bytes()
    assert found["big.bin"].sha256 == hashlib.sha256(big).hexdigest()
    assert found["big.bin"].size == len(big)
    assert found["docs/deep/a.md"].sha256 == hashlib.sha256(b"a").hexdigest()


def test_mtimes_do_not_matter(tmp_path):
    (tmp_path / "a.md").write_bytes(b"same")
    before = scan(tmp_path, IgnoreRules())
    os.utime(tmp_path / "a.md", (1, 1))
    assert scan(tmp_path, IgnoreRules()) == before
