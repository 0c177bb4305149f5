"""The stored audit log: one row per event, and one head row per chain.

A chain is a tenant's events (``chain`` = the tenant id) or the platform's (``chain`` =
``platform``: events without a tenant, and a tenant's deletion). Rows of a chain are numbered
``seq`` 1, 2, 3...; each holds the hash of the row before it (``prev_hash``) and its own
(``hash``, over the canonical serialization of the row: see chain.py).
"""

from __future__ import annotations

import peewee

from ctxcloud import BaseModel, JSONField

PLATFORM_CHAIN = "platform"


class AuditEvent(BaseModel):
    id = peewee.BigAutoField()
    chain = peewee.CharField(max_length=64)
    seq = peewee.BigIntegerField()
    tenant_id = peewee.CharField(max_length=64, null=True)
    occurred_at = peewee.DateTimeField()
    type = peewee.CharField(max_length=64)
    actor_kind = peewee.CharField(max_length=32, null=True)
    actor_id = peewee.CharField(max_length=300, null=True)
    target = JSONField(default=dict)
    request_id = peewee.CharField(max_length=128, null=True)
    client_address = peewee.CharField(max_length=64, null=True)
    details = JSONField(default=dict)
    prev_hash = peewee.CharField(max_length=64)
    hash = peewee.CharField(max_length=64)

    class Meta:
        table_name = "audit_event"

    @property
    def actor(self) -> dict | None:
        if self.actor_kind is None and self.actor_id is None:
            return None
        return {"kind": self.actor_kind, "id": self.actor_id}


class AuditChain(BaseModel):
    """A chain's head (the newest row's seq and hash) and its checkpoint (the last swept
    row's), so a chain whose oldest rows were swept still verifies from the checkpoint."""

    chain = peewee.CharField(primary_key=True, max_length=64)
    tenant_id = peewee.CharField(max_length=64, null=True)
    head_seq = peewee.BigIntegerField(default=0)
    head_hash = peewee.CharField(max_length=64)
    checkpoint_seq = peewee.BigIntegerField(default=0)
    checkpoint_hash = peewee.CharField(max_length=64)
    swept_at = peewee.DateTimeField(null=True)

    class Meta:
        table_name = "audit_chain"
