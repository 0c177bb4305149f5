"""`ctx push`/`pull` planning: a three-way comparison by content hash (never mtimes) of the
folder, the version it last synced, and the project; ignore rules; deletes and their cap."""

from __future__ import annotations

import hashlib

import pytest

from ctxcloud_client import Entry
from ctxcloud_client.cli_errors import CommandError, ConflictError
from ctxcloud_client.ignore import IgnoreRules
from ctxcloud_client.localtree import LocalFile
from ctxcloud_client.sync import (
    MAX_COMMIT_ITEMS,
    Action,
    Plan,
    check_conflicts,
    check_deletes,
    commit_batches,
    plan_pull,
    plan_push,
)


def h(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def local(**files: str) -> dict[str, LocalFile]:
    return {
        p.replace("__", "/"): LocalFile(p.replace("__", "/"), h(t), len(t))
        for p, t in files.items()
    }


def remote(**files: str) -> dict[str, Entry]:
    return {
        p.replace("__", "/"): Entry(p.replace("__", "/"), len(t), h(t), "text/plain")
        for p, t in files.items()
    }


def base(**files: str) -> dict[str, str]:
    return {p.replace("__", "/"): h(t) for p, t in files.items()}


def kinds(plan: Plan) -> dict[str, str]:
    return {a.path: a.kind for a in plan.actions}


def test_push_sends_what_changed_here_by_hash_only():
    plan = plan_push(
        local(same="1", edited="2 new", added="3"),
        base(same="1", edited="2", gone="4"),
        remote(same="1", edited="2", gone="4", theirs="5"),
        remote_revision=7,
    )
    assert kinds(plan) == {"added": "add", "edited": "change"}
    assert [(n.path, n.reason.split(":")[0]) for n in plan.skipped] == [("gone", "deleted here")]
    assert plan.conflicts == []
    # The state after: what both sides hold; the base kept where a change is pending.
    assert plan.state_after == base(same="1", edited="2 new", added="3", gone="4")
    assert "theirs" not in plan.state_after  # never seen here: not the folder's


def test_push_of_an_unchanged_folder_plans_nothing():
    files = {"a": "1", "b__c": "2"}
    plan = plan_push(local(**files), base(**files), remote(**files))
    assert plan.actions == [] and plan.conflicts == [] and plan.skipped == []


def test_push_over_a_remote_change_of_the_same_path_is_a_conflict():
    plan = plan_push(local(a="mine"), base(a="old"), remote(a="theirs"))
    assert plan.actions == [] and [n.path for n in plan.conflicts] == ["a"]
    with pytest.raises(ConflictError) as raised:
        check_conflicts(plan)
    assert raised.value.exit_code == 3
    assert raised.value.extra["plan"]["conflicts"] == [
        {"path": "a", "reason": "changed here and remotely"}
    ]
    forced = plan_push(local(a="mine"), base(a="old"), remote(a="theirs"), force=True)
    assert kinds(forced) == {"a": "change"}


def test_push_leaves_remote_changes_to_other_paths_alone():
    plan = plan_push(local(a="mine", b="1"), base(a="old", b="1"), remote(a="old", b="2", c="3"))
    assert kinds(plan) == {"a": "change"}
    assert [n.path for n in plan.skipped] == ["b"]
    assert plan.state_after["b"] == h("1")  # still the base: the pull will bring "2"


def test_a_folder_without_state_may_not_overwrite_differing_remote_entries():
    plan = plan_push(local(a="mine", b="same", c="new"), None, remote(a="theirs", b="same"))
    assert kinds(plan) == {"c": "add"}
    assert [(n.path, n.reason) for n in plan.conflicts] == [
        ("a", "differs remotely and this folder was never synced")
    ]


def test_push_deletes_only_with_delete_and_never_over_a_remote_change():
    args = (local(), base(a="1", b="2", c="3"), remote(a="1", b="changed"))
    assert kinds(plan_push(*args)) == {}
    plan = plan_push(*args, delete=True)
    assert kinds(plan) == {"a": "delete"}
    assert [n.path for n in plan.conflicts] == ["b"]
    assert "a" not in plan.state_after and "c" not in plan.state_after


def test_pull_takes_remote_changes_and_keeps_local_ones():
    plan = plan_pull(
        local(same="1", mine="edited", old="x", only_here="h"),
        base(same="1", mine="m", old="x"),
        remote(same="1", mine="m", old="x2", new="n"),
        remote_revision=9,
    )
    assert kinds(plan) == {"new": "add", "old": "change"}
    assert [n.path for n in plan.skipped] == ["mine"]
    assert "only_here" not in plan.state_after  # a file the project never had
    assert plan.state_after["mine"] == h("m")


def test_pull_over_unpushed_local_edits_is_a_conflict_unless_forced():
    plan = plan_pull(local(a="mine"), base(a="old"), remote(a="theirs"))
    assert [n.path for n in plan.conflicts] == ["a"] and plan.actions == []
    assert kinds(plan_pull(local(a="mine"), base(a="old"), remote(a="theirs"), force=True)) == {
        "a": "change"
    }
    # Never synced: a file that differs is someone's work, not the project's.
    fresh = plan_pull(local(a="mine"), None, remote(a="theirs", b="b"))
    assert [n.path for n in fresh.conflicts] == ["a"] and kinds(fresh) == {"b": "add"}


def test_pull_deletes_only_files_the_project_had_and_only_with_delete():
    args = (local(gone="1", edited="x2", mine="m"), base(gone="1", edited="x"), remote())
    plain = plan_pull(*args)
    assert plain.actions == [] and {n.path for n in plain.skipped} == {"gone", "edited"}
    plan = plan_pull(*args, delete=True)
    assert kinds(plan) == {"gone": "delete"}
    assert [n.path for n in plan.conflicts] == ["edited"]  # edited here, deleted there
    assert "mine" not in kinds(plan)


def test_max_delete_refuses_a_bigger_plan():
    plan = plan_push(local(), base(a="1", b="2"), remote(a="1", b="2"), delete=True)
    check_deletes(plan, None)
    check_deletes(plan, 2)
    with pytest.raises(CommandError) as refused:
        check_deletes(plan, 1)
    assert refused.value.exit_code == 1 and refused.value.code == "too_many_deletes"


def test_a_push_beyond_one_commit_needs_split():
    plan = Plan("push", "prj", 0, 0)
    plan.actions = [Action(f"f{n}", "add", h(str(n)), 1) for n in range(MAX_COMMIT_ITEMS + 1)]
    with pytest.raises(CommandError, match="--split"):
        commit_batches(plan, split=False)
    batches = commit_batches(plan, split=True)
    assert [len(writes) for writes, _ in batches] == [MAX_COMMIT_ITEMS, 1]
    plan.actions = plan.actions[:MAX_COMMIT_ITEMS]
    assert len(commit_batches(plan, split=False)) == 1
    assert commit_batches(Plan("push", "prj", 0, 0), split=False) == []


def test_plan_json_shape():
    plan = plan_push(local(a="1", b="2"), base(b="1", c="3"), remote(b="1", c="3"), delete=True)
    assert plan.to_json() == {
        "direction": "push",
        "project_id": "",
        "base_revision": None,
        "remote_revision": 0,
        "add": ["a"],
        "change": ["b"],
        "delete": ["c"],
        "conflicts": [],
        "skipped": [],
    }


@pytest.mark.parametrize(
    ("path", "ignored"),
    [
        ("notes.md", False),
        ("build/out.txt", True),
        ("src/build/x", True),
        ("debug.log", True),
        ("keep.log", False),
        ("deep/a/secret.env", True),
        (".ctx/state.json", True),
        (".ctxignore", True),
        ("docs/.ctxtmp-abc", True),
        ("docs/.ctxignore", False),  # only the root's is the folder's rules
    ],
)
def test_ignore_rules_follow_gitignore(path, ignored):
    rules = IgnoreRules(["build/", "*.log", "!keep.log", "**/*.env", "# a comment"])
    assert rules.ignores(path) is ignored
