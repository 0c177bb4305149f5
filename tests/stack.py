"""Which stack the tests run on: the embedded default, or PostgreSQL + Redis + S3 for real."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import flask

STACK = os.environ.get("CTXCLOUD_TEST_STACK", "embedded")


@contextmanager
def configured(tmp_path_factory) -> Iterator[dict]:
    """Yield base settings for the chosen stack, starting and cleaning up what it needs."""
    if STACK == "embedded":
        yield {}
        return
    raise RuntimeError(f"CTXCLOUD_TEST_STACK={STACK!r} is not supported yet")


def reset(app: flask.Flask) -> None:
    """Give the test an empty database (SQLite files are per test; shared servers need this)."""


def close(app: flask.Flask) -> None:
    """Release the app's pooled connections so databases can be dropped."""
    ext = app.extensions["ctxcloud"]
    ext.database.close_all()
    ext.storage.close()
