"""The audit log: security events as structured records on the ``ctxcloud.audit`` logger (one
JSON line each) and as stored rows, hash-chained per tenant, read through
``GET /api/v1/audit-events`` and checked by ``ctxcloud audit verify`` (docs/audit.md).

Events carry ids, names and reasons, never a secret: callers of ``emit_audit`` pass no
password, key or token, and this plugin drops any field whose name says it holds one
(``store.SECRET_FIELDS``, at any depth).
"""

from __future__ import annotations

import logging
from typing import Any

from ctxcloud import Count, Quota, Setting, hookimpl
from ctxcloud.plugins.audit_log.migrations import MIGRATIONS
from ctxcloud.plugins.audit_log.store import SECRET_FIELDS, without_secrets

__all__ = ["SECRET_FIELDS"]

log = logging.getLogger("ctxcloud.audit")


@hookimpl
def config_defaults():
    return {
        # Days a tenant's events are kept by default (its owner may choose fewer, or more up
        # to the maximum); also the platform chain's. None: forever.
        "AUDIT_RETENTION_DAYS": 365,
        # The most days any tenant may keep (the audit_retention_max_days quota's default).
        "AUDIT_RETENTION_MAX_DAYS": None,
        # Stored permission_denied events per chain per minute, per process (None: all).
        "AUDIT_DENIALS_PER_MINUTE": 60,
    }


@hookimpl
def tenant_options():
    return [
        Quota(
            "audit_retention_max_days",
            Count(1),
            default="AUDIT_RETENTION_MAX_DAYS",
            description="Most days the tenant's audit events may be kept; null: no maximum",
            example=730,
        ),
        Setting(
            "audit_retention_days",
            Count(1),
            default="AUDIT_RETENTION_DAYS",
            description="Days audit events are kept before `ctxcloud audit sweep` deletes "
            "them, within the quota; null: the service default",
            example=90,
            bounded_by="audit_retention_max_days",
        ),
    ]


@hookimpl
def register_blueprints(app):
    from ctxcloud.plugins.audit_log.routes import blp

    return [blp]


@hookimpl
def register_commands(cli):
    from ctxcloud.plugins.audit_log.cli import audit_group

    cli.add_command(audit_group)


@hookimpl
def database_migrations():
    return MIGRATIONS


@hookimpl
def startup(app):
    from ctxcloud.plugins.audit_log.store import flush_pending

    app.teardown_request(flush_pending)


@hookimpl
def tenant_deleting(tenant):
    from ctxcloud.plugins.audit_log.retention import forget_tenant

    forget_tenant(tenant.id)


@hookimpl(trylast=True)
def audit_event(event: dict[str, Any]) -> None:
    from ctxcloud.plugins.audit_log.store import record

    log.info(event["type"], extra={"audit": without_secrets(dict(event))})
    record(event)
