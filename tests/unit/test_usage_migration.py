"""Upgrading a database that already holds context counts its stored bytes per tenant."""

from __future__ import annotations

from contextlib import ExitStack

import pytest

from ctxcloud.db import open_database
from ctxcloud.migrations import upgrade
from ctxcloud.plugins.context.migrations import MIGRATIONS as CONTEXT
from ctxcloud.tenancy.migrations import MIGRATIONS as TENANTS
from tests.stack import postgres_database

BEFORE_USAGE = [m for m in TENANTS + CONTEXT if m.id.endswith("_initial")]


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request, tmp_path):
    with ExitStack() as stack:
        if request.param == "sqlite":
            url = f"sqlite:///{tmp_path / 'upgrade.sqlite3'}"
        else:
            url = stack.enter_context(postgres_database())
        database = open_database({"DATABASE_URL": url, "DATA_DIR": str(tmp_path)})
        yield database
        database.close()


def test_existing_bytes_are_counted_when_the_usage_table_arrives(db):
    upgrade(db, BEFORE_USAGE)
    db.execute_sql(
        "INSERT INTO project (id, tenant_id, slug, name, description, metadata, revision, "
        "created_at, updated_at) VALUES "
        "('prj_a', 'tnt_a', 'a', 'a', '', '{}', 3, '2026-01-01', '2026-01-01'), "
        "('prj_b', 'tnt_a', 'b', 'b', '', '{}', 1, '2026-01-01', '2026-01-01'), "
        "('prj_c', 'tnt_c', 'c', 'c', '', '{}', 1, '2026-01-01', '2026-01-01')"
    )
    versions = [
        ("prj_a", "x", 1, False, "o/1", 100),
        ("prj_a", "x", 2, False, "o/2", 30),  # history counts too
        ("prj_a", "x", 3, True, None, 0),  # a deletion marker stores nothing
        ("prj_b", "y", 1, False, "o/3", 7),
        ("prj_c", "z", 1, False, "o/4", 5),
    ]
    for project, path, revision, deleted, key, size in versions:
        db.execute_sql(
            "INSERT INTO context_entry_version (project_id, path, revision, deleted, object_key, "
            "size, content_type, metadata, created_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, 'text/plain', '{}', '2026-01-01')".replace(
                "%s", db.param
            ),
            (project, path, revision, deleted, key, size),
        )
    upgrade(db, TENANTS + CONTEXT)
    rows = dict(db.execute_sql("SELECT tenant_id, storage_bytes FROM tenant_usage").fetchall())
    assert rows == {"tnt_a": 137, "tnt_c": 5}
