"""Projects and their context: the project, entry versions, the head state, the revision log."""

from __future__ import annotations

import peewee

from ctxcloud import BaseModel, JSONField, utcnow


class Project(BaseModel):
    id = peewee.CharField(primary_key=True, max_length=32)
    tenant_id = peewee.CharField(max_length=64, index=True)
    slug = peewee.CharField(max_length=63)
    name = peewee.CharField(max_length=200)
    description = peewee.TextField(default="")
    metadata = JSONField(default=dict)
    # Head revision of the project's context: raised by exactly one per change, in the
    # transaction that makes the change (the row is locked while it is raised).
    revision = peewee.BigIntegerField(default=0)
    # Revisions before this one were pruned (revisions_kept): they can no longer be read.
    history_starts_at = peewee.BigIntegerField(default=0)
    created_at = peewee.DateTimeField(default=utcnow)
    updated_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        table_name = "project"
        indexes = ((("tenant_id", "slug"), True),)

    @classmethod
    def of_tenant(cls, tenant_id: str) -> peewee.ModelSelect:
        """The only way to read projects: always within one tenant."""
        if not tenant_id:
            raise ValueError("a tenant id is required")
        return cls.select().where(cls.tenant_id == tenant_id)


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


class ContextUpload(BaseModel):
    """Bytes staged for a commit: stored (encrypted) before the commit names them, so a
    commit of any size stays one all-or-nothing revision. `pending` until its bytes are in,
    `stored` until a commit takes them (`used`), gone once expired and swept."""

    id = peewee.CharField(primary_key=True, max_length=32)
    tenant_id = peewee.CharField(max_length=64, index=True)
    project = peewee.ForeignKeyField(Project, column_name="project_id", on_delete="CASCADE")
    state = peewee.CharField(max_length=16, default="pending")
    object_key = peewee.CharField(max_length=128, null=True, index=True)
    size = peewee.BigIntegerField(default=0)
    sha256 = peewee.CharField(max_length=64, null=True)
    created_by = peewee.CharField(max_length=200)
    created_at = peewee.DateTimeField(default=utcnow)
    expires_at = peewee.DateTimeField(index=True)

    class Meta:
        table_name = "context_upload"
