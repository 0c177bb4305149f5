"""The migration runner: dependency order, idempotence, and clear errors."""

from __future__ import annotations

import peewee
import pytest

from ctxcloud.migrations import Migration, applied, ordered, pending, upgrade
from ctxcloud.settings import ConfigError


def noop(migrator, db):
    pass


def test_dependencies_run_first_then_ids_order():
    migrations = [
        Migration("context.0001", noop, depends_on=("projects.0001",)),
        Migration("projects.0001", noop, depends_on=("tenants.0001",)),
        Migration("audit.0001", noop),
        Migration("tenants.0001", noop),
    ]
    assert [m.id for m in ordered(migrations)] == [
        "audit.0001",
        "tenants.0001",
        "projects.0001",
        "context.0001",
    ]


@pytest.mark.parametrize(
    "migrations,message",
    [
        ([Migration("a", noop), Migration("a", noop)], "two migrations have the id 'a'"),
        ([Migration("a", noop, depends_on=("b",))], "depends on unknown migration 'b'"),
        (
            [Migration("a", noop, depends_on=("b",)), Migration("b", noop, depends_on=("a",))],
            "cycle",
        ),
    ],
)
def test_bad_migration_sets_are_refused(migrations, message):
    with pytest.raises(ConfigError, match=message):
        ordered(migrations)


def test_upgrade_applies_once_and_records(tmp_path):
    db = peewee.SqliteDatabase(str(tmp_path / "m.sqlite3"))
    calls = []

    def create(migrator, database):
        calls.append("create")
        database.execute_sql("CREATE TABLE thing (id INTEGER PRIMARY KEY)")

    def add_column(migrator, database):
        calls.append("add")
        migrator.migrate(migrator.add_column("thing", "name", peewee.TextField(default="")))

    migrations = [
        Migration("t.0002", add_column, depends_on=("t.0001",)),
        Migration("t.0001", create),
    ]
    assert pending(db, migrations) == ["t.0001", "t.0002"]
    assert upgrade(db, migrations) == ["t.0001", "t.0002"]
    assert upgrade(db, migrations) == []
    assert calls == ["create", "add"]
    assert applied(db) == {"t.0001", "t.0002"}
    assert [c.name for c in db.get_columns("thing")] == ["id", "name"]


def test_a_failing_migration_leaves_nothing_half_applied(tmp_path):
    db = peewee.SqliteDatabase(str(tmp_path / "m.sqlite3"))

    def broken(migrator, database):
        database.execute_sql("CREATE TABLE half (id INTEGER PRIMARY KEY)")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        upgrade(db, [Migration("x.0001", broken)])
    assert "half" not in db.get_tables()
    assert applied(db) == set()
