"""The typed per-app stash: keys are objects, so two plugins never share state by name, and
two apps share nothing."""

from __future__ import annotations

import pytest

from ctxcloud import StashKey, create_app, stash


def test_each_key_is_its_own_slot_whatever_its_name(tmp_path):
    app = create_app({"ENV": "testing", "DATA_DIR": str(tmp_path / "data")})
    mine, theirs = StashKey[list]("cache"), StashKey[list]("cache")
    state = stash(app)
    state[mine] = [1]
    assert theirs not in state and state.get(theirs) is None
    assert state.setdefault(theirs, [2]) == [2] and state[mine] == [1]
    with pytest.raises(KeyError):
        state[StashKey[int]("absent")]


def test_two_apps_share_no_stash(tmp_path):
    one = create_app({"ENV": "testing", "DATA_DIR": str(tmp_path / "one")})
    two = create_app({"ENV": "testing", "DATA_DIR": str(tmp_path / "two")})
    key = StashKey[str]("value")
    stash(one)[key] = "one"
    assert key not in stash(two)
    with one.app_context():
        assert stash()[key] == "one"
