"""docs/plugins.md documents every hook with its signature; an undocumented hookspec fails."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

from ctxcloud import hookspecs

DOCS = Path(__file__).resolve().parents[2] / "docs" / "plugins.md"


def hookspec_functions():
    return [
        (name, fn)
        for name, fn in inspect.getmembers(hookspecs, inspect.isfunction)
        if hasattr(fn, "ctxcloud_spec")
    ]


def test_there_are_hookspecs():
    assert len(hookspec_functions()) >= 10


@pytest.mark.parametrize(
    "name,fn", hookspec_functions(), ids=lambda v: v if isinstance(v, str) else ""
)
def test_hookspec_is_documented_with_its_signature(name, fn):
    text = DOCS.read_text()
    params = ", ".join(inspect.signature(fn).parameters)
    assert f"### `{name}({params})`" in text, (
        f"docs/plugins.md lacks a section for {name}({params})"
    )
    assert fn.__doc__, f"hookspec {name} has no docstring"
