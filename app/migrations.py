"""Versioned schema migrations gathered from every plugin and run by ``ctxcloud db upgrade``.

A migration is applied once, in its own transaction, and recorded by id. Migrations describe
the schema as it was when they were written (frozen models or migrator operations), never
the live model classes, so a fresh database and an upgraded one end up the same.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import peewee
from playhouse.migrate import SchemaMigrator

from ctxcloud.db import utcnow
from ctxcloud.settings import ConfigError

HISTORY_TABLE = "ctxcloud_schema_migration"


@dataclass(frozen=True)
class Migration:
    """One schema step: ``up(migrator, db)`` after every migration in ``depends_on``."""

    id: str
    up: Callable[[SchemaMigrator, peewee.Database], None]
    depends_on: tuple[str, ...] = ()
    description: str = ""


def ordered(migrations: Iterable[Migration]) -> list[Migration]:
    """Dependencies first, otherwise by id, so every database applies them in the same order."""
    by_id: dict[str, Migration] = {}
    for migration in migrations:
        if migration.id in by_id:
            raise ConfigError(f"two migrations have the id {migration.id!r}")
        by_id[migration.id] = migration
    for migration in by_id.values():
        for dependency in migration.depends_on:
            if dependency not in by_id:
                raise ConfigError(
                    f"migration {migration.id!r} depends on unknown migration {dependency!r}"
                )
    result: list[Migration] = []
    done: set[str] = set()
    visiting: set[str] = set()

    def visit(migration: Migration) -> None:
        if migration.id in done:
            return
        if migration.id in visiting:
            raise ConfigError(f"migration dependency cycle through {migration.id!r}")
        visiting.add(migration.id)
        for dependency in sorted(migration.depends_on):
            visit(by_id[dependency])
        visiting.discard(migration.id)
        done.add(migration.id)
        result.append(migration)

    for migration in sorted(by_id.values(), key=lambda m: m.id):
        visit(migration)
    return result


def _history_model(db: peewee.Database) -> type[peewee.Model]:
    class AppliedMigration(peewee.Model):
        id = peewee.CharField(primary_key=True, max_length=200)
        applied_at = peewee.DateTimeField()

        class Meta:
            database = db
            table_name = HISTORY_TABLE

    return AppliedMigration


def applied(db: peewee.Database) -> set[str]:
    """Ids already applied to this database (empty for a new one)."""
    history = _history_model(db)
    if not history.table_exists():
        return set()
    return {row.id for row in history.select(history.id)}


def _lock(db: peewee.Database) -> None:
    """Serialise concurrent upgraders (a Helm hook and a compose job may race)."""
    if isinstance(db, peewee.PostgresqlDatabase):
        db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (zlib.crc32(HISTORY_TABLE.encode()),))


def upgrade(db: peewee.Database, migrations: Iterable[Migration]) -> list[str]:
    """Apply what is missing, each step in its own transaction; idempotent."""
    history = _history_model(db)
    with db.atomic():
        _lock(db)
        db.create_tables([history], safe=True)
    migrator = SchemaMigrator.from_database(db)
    done_now = []
    for migration in ordered(migrations):
        with db.atomic():
            _lock(db)
            if history.select().where(history.id == migration.id).exists():
                continue
            if isinstance(db, peewee.PostgresqlDatabase):
                # A step may rewrite a large table: the service's statement limit is not its.
                db.execute_sql("SET LOCAL statement_timeout = 0")
                db.execute_sql("SET LOCAL lock_timeout = 0")
            migration.up(migrator, db)
            history.create(id=migration.id, applied_at=utcnow())
        done_now.append(migration.id)
    return done_now


def pending(db: peewee.Database, migrations: Iterable[Migration]) -> list[str]:
    """Ids of migrations not yet applied, in the order they would run."""
    done = applied(db)
    return [m.id for m in ordered(migrations) if m.id not in done]
