"""Typed state per app: a plugin keeps what it builds at start-up under a key of its own.

Like pytest's ``StashKey[T]``: the key is an object (two plugins can never collide on a name),
and its type parameter says what is stored, so readers need no cast. The stash lives on the
app (``app.extensions["ctxcloud"].stash``), never in a module global: two apps in one process
share nothing.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar, cast

import flask

T = TypeVar("T")
_MISSING = object()


class StashKey(Generic[T]):
    """One piece of per-app state; declare it once at module level: ``KEY = StashKey[Cache]()``."""

    __slots__ = ("name",)

    def __init__(self, name: str = "") -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"StashKey({self.name!r})"


class Stash:
    """An app's state, by StashKey."""

    def __init__(self) -> None:
        self._values: dict[StashKey[Any], Any] = {}

    def __getitem__(self, key: StashKey[T]) -> T:
        return cast(T, self._values[key])

    def __setitem__(self, key: StashKey[T], value: T) -> None:
        self._values[key] = value

    def __contains__(self, key: StashKey[Any]) -> bool:
        return key in self._values

    def get(self, key: StashKey[T], default: T | None = None) -> T | None:
        return cast("T | None", self._values.get(key, default))

    def pop(self, key: StashKey[T], default: T | None = None) -> T | None:
        return cast("T | None", self._values.pop(key, default))

    def setdefault(self, key: StashKey[T], default: T) -> T:
        return cast(T, self._values.setdefault(key, default))


def stash(app: flask.Flask | None = None) -> Stash:
    """The stash of `app` (default: the current app)."""
    return (app or flask.current_app).extensions["ctxcloud"].stash
