"""Retention: `ctxcloud audit sweep` deletes a chain's rows older than its retention, oldest
first, and moves the chain's checkpoint to the last row it deleted, so the chain still
verifies from there. A row is deleted only after it verified from the checkpoint: a chain
that does not verify is left alone and reported (its evidence is never swept away)."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

import flask

from ctxcloud import database, tenancy, utcnow
from ctxcloud.plugins.audit_log.chain import BATCH, Problem, Walk, locked_head
from ctxcloud.plugins.audit_log.models import PLATFORM_CHAIN, AuditChain, AuditEvent

SETTING = "audit_retention_days"


@dataclass
class SweepReport:
    chain: str
    tenant_id: str | None
    retention_days: int | None
    deleted: int = 0
    checkpoint_seq: int = 0
    problems: list[Problem] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "chain": self.chain,
            "tenant_id": self.tenant_id,
            "retention_days": self.retention_days,
            "deleted": self.deleted,
            "checkpoint_seq": self.checkpoint_seq,
            "problems": [problem.__dict__ for problem in self.problems],
        }


def service_retention() -> int | None:
    """Days kept for the platform chain (and a tenant's events once the tenant is gone)."""
    config = flask.current_app.config
    days, bound = config.get("AUDIT_RETENTION_DAYS"), config.get("AUDIT_RETENTION_MAX_DAYS")
    if days is None or bound is None:
        return bound if days is None else days
    return min(int(days), int(bound))


def retention_of(head: AuditChain) -> int | None:
    if head.chain != PLATFORM_CHAIN:
        tenant = tenancy.Tenant.get_or_none(tenancy.Tenant.id == head.chain)
        if tenant is not None:
            return tenant.setting(SETTING)
    return service_retention()


def sweep_chain(head: AuditChain, now: datetime.datetime | None = None) -> SweepReport:
    days = retention_of(head)
    report = SweepReport(head.chain, head.tenant_id, days, checkpoint_seq=head.checkpoint_seq)
    if days is None:
        return report
    cutoff = (now or utcnow()) - datetime.timedelta(days=days)
    while True:
        with database.atomic():
            locked = locked_head(head.chain, head.tenant_id)
            rows = list(
                AuditEvent.select()
                .where(AuditEvent.chain == head.chain, AuditEvent.seq > locked.checkpoint_seq)
                .order_by(AuditEvent.seq)
                .limit(BATCH)
            )
            expired = []
            for row in rows:
                if row.occurred_at >= cutoff:
                    break
                expired.append(row)
            if not expired:
                return report
            walk = Walk(head.chain, locked.checkpoint_seq, locked.checkpoint_hash)
            for row in expired:
                walk.step(row)
            if walk.problems:
                report.problems = walk.problems
                return report
            last = expired[-1]
            report.deleted += (
                AuditEvent.delete()
                .where(
                    AuditEvent.chain == head.chain,
                    AuditEvent.seq > locked.checkpoint_seq,
                    AuditEvent.seq <= last.seq,
                )
                .execute()
            )
            AuditChain.update(
                checkpoint_seq=last.seq, checkpoint_hash=last.hash, swept_at=utcnow()
            ).where(AuditChain.chain == head.chain).execute()
            report.checkpoint_seq = last.seq
        if len(expired) < BATCH:
            return report


def sweep(chain: str | None = None, now: datetime.datetime | None = None) -> list[SweepReport]:
    heads = AuditChain.select().order_by(AuditChain.chain)
    if chain is not None:
        heads = heads.where(AuditChain.chain == chain)
    return [sweep_chain(head, now) for head in heads]


def forget_tenant(tenant_id: str) -> None:
    """A deleted tenant's events go with it (its deletion stays on the platform chain)."""
    AuditEvent.delete().where(AuditEvent.chain == tenant_id).execute()
    AuditChain.delete().where(AuditChain.chain == tenant_id).execute()
