"""Schema of the context plugin, frozen as of each migration."""

from __future__ import annotations

import peewee

from app.migrations import Migration


def _initial(migrator, db) -> None:
    class Project(peewee.Model):
        id = peewee.CharField(primary_key=True, max_length=32)

        class Meta:
            database = db
            table_name = "project"

    class EntryVersion(peewee.Model):
        id = peewee.BigAutoField()
        project = peewee.ForeignKeyField(Project, column_name="project_id", on_delete="CASCADE")
        path = peewee.TextField()
        revision = peewee.BigIntegerField()
        deleted = peewee.BooleanField(default=False)
        object_key = peewee.CharField(max_length=128, null=True)
        size = peewee.BigIntegerField(default=0)
        sha256 = peewee.CharField(max_length=64, null=True)
        content_type = peewee.CharField(max_length=255)
        metadata = peewee.TextField(default="{}")
        created_at = peewee.DateTimeField()

        class Meta:
            database = db
            table_name = "context_entry_version"
            indexes = ((("project", "path", "revision"), True), (("project", "revision"), False))

    class Entry(peewee.Model):
        id = peewee.BigAutoField()
        project = peewee.ForeignKeyField(Project, column_name="project_id", on_delete="CASCADE")
        path = peewee.TextField()
        version = peewee.ForeignKeyField(EntryVersion, column_name="version_id")

        class Meta:
            database = db
            table_name = "context_entry"
            indexes = ((("project", "path"), True),)

    class Revision(peewee.Model):
        id = peewee.BigAutoField()
        project = peewee.ForeignKeyField(Project, column_name="project_id", on_delete="CASCADE")
        number = peewee.BigIntegerField()
        created_at = peewee.DateTimeField()
        actor = peewee.CharField(max_length=200)
        message = peewee.TextField(default="")
        changes = peewee.TextField(default="[]")

        class Meta:
            database = db
            table_name = "context_revision"
            indexes = ((("project", "number"), True),)

    db.create_tables([EntryVersion, Entry, Revision])


def _count_stored_bytes(migrator, db) -> None:
    """Count the bytes already stored per tenant into the usage rows quota checks lock."""
    db.execute_sql(
        "INSERT INTO tenant_usage (tenant_id, storage_bytes) "
        "SELECT p.tenant_id, SUM(v.size) FROM context_entry_version v "
        "JOIN project p ON p.id = v.project_id WHERE v.object_key IS NOT NULL "
        "GROUP BY p.tenant_id "
        "ON CONFLICT (tenant_id) DO UPDATE SET storage_bytes = excluded.storage_bytes"
    )


MIGRATIONS = [
    Migration("context.0001_initial", _initial, depends_on=("projects.0001_initial",)),
    Migration(
        "context.0002_count_stored_bytes",
        _count_stored_bytes,
        depends_on=("context.0001_initial", "tenants.0002_usage"),
        description="Stored bytes per tenant, for max_storage_bytes",
    ),
]
