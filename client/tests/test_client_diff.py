"""diff_manifests is a pure function of two listings; and the package describes itself."""

from __future__ import annotations

import importlib.resources
import tomllib
from pathlib import Path

import ctxcloud_client
from ctxcloud_client import Entry, Manifest, diff_manifests


def entry(path: str, sha256: str) -> Entry:
    return Entry(path=path, size=1, sha256=sha256, content_type="text/plain")


def manifest(*entries: Entry) -> Manifest:
    return Manifest(project_id="prj", revision=1, entries=entries, total_size=len(entries))


def test_added_removed_and_changed_by_sha256():
    old = manifest(entry("a", "1"), entry("b", "2"), entry("c", "3"))
    new = manifest(entry("b", "2"), entry("c", "4"), entry("e", "5"), entry("d", "6"))
    diff = diff_manifests(old, new)
    assert diff.added == ("d", "e")
    assert diff.removed == ("a",)
    assert diff.changed == ("c",)
    assert diff


def test_same_content_is_no_difference_and_sides_may_be_mappings():
    old = manifest(entry("a", "1"))
    assert not diff_manifests(old, manifest(entry("a", "1")))
    diff = diff_manifests({"a": "1"}, old.entries)
    assert (diff.added, diff.removed, diff.changed) == ((), (), ())
    assert diff_manifests(old, {"a": "2"}).changed == ("a",)


def test_the_version_is_the_distribution_s_and_the_package_is_typed():
    project = Path(__file__).resolve().parents[1] / "pyproject.toml"
    assert tomllib.loads(project.read_text())["project"]["version"] == ctxcloud_client.__version__
    assert importlib.resources.files("ctxcloud_client").joinpath("py.typed").is_file()
