"""Schema of the audit log, frozen as of each migration."""

from __future__ import annotations

import peewee

from ctxcloud import Migration


def _events(migrator, db) -> None:
    class AuditEvent(peewee.Model):
        id = peewee.BigAutoField()
        chain = peewee.CharField(max_length=64)
        seq = peewee.BigIntegerField()
        tenant_id = peewee.CharField(max_length=64, null=True)
        occurred_at = peewee.DateTimeField()
        type = peewee.CharField(max_length=64)
        actor_kind = peewee.CharField(max_length=32, null=True)
        actor_id = peewee.CharField(max_length=300, null=True)
        target = peewee.TextField(default="{}")
        request_id = peewee.CharField(max_length=128, null=True)
        client_address = peewee.CharField(max_length=64, null=True)
        details = peewee.TextField(default="{}")
        prev_hash = peewee.CharField(max_length=64)
        hash = peewee.CharField(max_length=64)

        class Meta:
            database = db
            table_name = "audit_event"
            indexes = (
                (("chain", "seq"), True),
                (("tenant_id", "id"), False),
                (("occurred_at",), False),
            )

    class AuditChain(peewee.Model):
        chain = peewee.CharField(primary_key=True, max_length=64)
        tenant_id = peewee.CharField(max_length=64, null=True)
        head_seq = peewee.BigIntegerField(default=0)
        head_hash = peewee.CharField(max_length=64)
        checkpoint_seq = peewee.BigIntegerField(default=0)
        checkpoint_hash = peewee.CharField(max_length=64)
        swept_at = peewee.DateTimeField(null=True)

        class Meta:
            database = db
            table_name = "audit_chain"

    db.create_tables([AuditEvent, AuditChain])


MIGRATIONS = [
    Migration(
        "audit_log.0001_events",
        _events,
        description="Audit events, hash-chained per tenant, and each chain's head and checkpoint",
    ),
]
