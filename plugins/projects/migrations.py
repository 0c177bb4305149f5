"""Schema of the projects plugin, frozen as of each migration."""

from __future__ import annotations

import peewee
from ctxcloud.migrations import Migration


def _initial(migrator, db) -> None:
    class Project(peewee.Model):
        id = peewee.CharField(primary_key=True, max_length=32)
        tenant_id = peewee.CharField(max_length=64, index=True)
        slug = peewee.CharField(max_length=63)
        name = peewee.CharField(max_length=200)
        description = peewee.TextField(default="")
        metadata = peewee.TextField(default="{}")
        revision = peewee.BigIntegerField(default=0)
        created_at = peewee.DateTimeField()
        updated_at = peewee.DateTimeField()

        class Meta:
            database = db
            table_name = "project"
            indexes = ((("tenant_id", "slug"), True),)

    db.create_tables([Project])


def _history_start(migrator, db) -> None:
    migrator.migrate(
        migrator.add_column("project", "history_starts_at", peewee.BigIntegerField(default=0))
    )


MIGRATIONS = [
    Migration("projects.0001_initial", _initial),
    Migration(
        "projects.0002_history_starts_at", _history_start, depends_on=("projects.0001_initial",)
    ),
]
