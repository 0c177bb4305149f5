"""Context storage: versions of entries, the head state, and the revision log."""

from __future__ import annotations

import peewee
from ctxcloud.db import BaseModel, JSONField, utcnow
from ctxcloud.plugins.projects.models import Project


class EntryVersion(BaseModel):
    """One state of one path, written by one revision (deleted=True records a deletion)."""

    id = peewee.BigAutoField()
    project = peewee.ForeignKeyField(Project, column_name="project_id", on_delete="CASCADE")
    path = peewee.TextField()
    revision = peewee.BigIntegerField()
    deleted = peewee.BooleanField(default=False)
    object_key = peewee.CharField(max_length=128, null=True)
    size = peewee.BigIntegerField(default=0)
    sha256 = peewee.CharField(max_length=64, null=True)
    content_type = peewee.CharField(max_length=255, default="application/octet-stream")
    metadata = JSONField(default=dict)
    created_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        table_name = "context_entry_version"
        indexes = (
            (("project", "path", "revision"), True),
            (("project", "revision"), False),
            (("object_key",), False),  # context.0004: storage gc looks objects up by key
        )

    @property
    def etag(self) -> str:
        """Strong validator: unique per path and revision, and says which bytes it names."""
        return f'"r{self.revision}-{(self.sha256 or "")[:16]}"'


class Entry(BaseModel):
    """The head state: each live path and its current version."""

    id = peewee.BigAutoField()
    project = peewee.ForeignKeyField(Project, column_name="project_id", on_delete="CASCADE")
    path = peewee.TextField()
    version = peewee.ForeignKeyField(EntryVersion, column_name="version_id")

    class Meta:
        table_name = "context_entry"
        indexes = ((("project", "path"), True),)


class Revision(BaseModel):
    """One change of a project's context: who, when, why, and which paths."""

    id = peewee.BigAutoField()
    project = peewee.ForeignKeyField(Project, column_name="project_id", on_delete="CASCADE")
    number = peewee.BigIntegerField()
    created_at = peewee.DateTimeField(default=utcnow)
    actor = peewee.CharField(max_length=200)
    message = peewee.TextField(default="")
    changes = JSONField(default=list)

    class Meta:
        table_name = "context_revision"
        indexes = ((("project", "number"), True),)
