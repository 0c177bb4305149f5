"""The rows nearly every read asks for, kept per process while their tenant's data is unchanged.

A read of the manifest or of an entry first finds the project by id or slug, and an entry
read then finds the path's head version: the same rows request after request. They are kept
in the toolkit's ``tenant_data_cache`` (exact for every process at once: see
``ctxcloud.tenancy.data_cache``), so a read answered from a cached manifest or a cached
head version makes no database query. Every write path of this plugin calls ``changed``
after its transaction commits and before it answers.

What a cache hit returns is a copy of the row as read: a caller may set its fields (a write
locks and reads the row again before it changes anything; ``projects.locked``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import peewee

from ctxcloud.tenancy import tenant_data_cache, tenant_data_changed

M = TypeVar("M", bound=peewee.Model)

PROJECTS = "context.project"
HEADS = "context.entry_head"


def _copy(row: M | None) -> M | None:
    """A new instance holding the same values (not re-validated: they came from the database)."""
    if row is None:
        return None
    copy = type(row).__new__(type(row))
    copy.__data__ = dict(row.__data__)
    copy._dirty = set()
    copy.__rel__ = {}
    return copy


def project(tenant_id: str, ref: str, load: Callable[[], M | None], *, cached: bool = True):
    """The tenant's project by id or slug `ref` (None: none), from `load` when not cached."""
    return _copy(tenant_data_cache(PROJECTS).get(tenant_id, ref, load, cached=cached))


def entry_head(tenant_id: str, project_id: str, path: str, load: Callable[[], M | None]):
    """The head version of `path` in the project (None: no live entry)."""
    return _copy(tenant_data_cache(HEADS).get(tenant_id, (project_id, path), load))


def changed(tenant_id: str) -> None:
    """After a commit that changed the tenant's projects or entries, before answering."""
    tenant_data_changed(tenant_id)
