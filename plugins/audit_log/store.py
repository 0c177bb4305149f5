"""From an ``audit_event`` to a stored row: secrets dropped, the chain chosen, denials bounded.

Where the row is written (docs/audit.md, "Transactions"):

- An event emitted inside an open transaction joins it (a savepoint): the row commits or rolls
  back with the change it describes. Today's callers emit after their change committed, so the
  row gets a short transaction of its own.
- A refusal (``permission_denied``, ``*_failed``, ``*_refused``, ``*_detected``) emitted
  inside an open transaction during a request is kept aside and written in its own
  transaction when the request ends: the refused request's rollback never takes it along.
- A write that fails (database down, lock timeout) never fails the request: the event is
  logged at ERROR on ``ctxcloud.audit`` (``audit_event_not_stored``, with the whole record),
  and counted in ``stats``. Every event is also logged at INFO before it is stored.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import flask

from ctxcloud import StashKey, client_address, database, stash
from ctxcloud.plugins.audit_log.chain import append
from ctxcloud.plugins.audit_log.models import PLATFORM_CHAIN

log = logging.getLogger("ctxcloud.audit")

# Field names (any depth, case-insensitive) that hold a secret, and endings that say so.
SECRET_FIELDS = frozenset(
    {
        "password",
        "key",
        "secret",
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "client_secret",
        "passphrase",
        "authorization",
        "cookie",
        "code",
        "code_verifier",
        "client_assertion",
        "assertion",
        "credentials",
        "private_key",
        "api_key",
        "signature",
    }
)
SECRET_ENDINGS = ("password", "secret", "passphrase", "_token", "_key", "_hash")

# Events about a tenant's whole life that outlive its chain (deleted with the tenant).
PLATFORM_TYPES = frozenset({"tenant_deleting", "tenant_deleted"})
REFUSAL_ENDINGS = ("_denied", "_failed", "_refused", "_detected")
DENIAL = "permission_denied"
# Events anyone can cause at a request's rate (a refused credential, a public link's reader):
# each type's rows are bounded per chain per minute (BoundedEvents).
BOUNDED_TYPES = frozenset({DENIAL, "link.used"})
MAX_DETAILS_BYTES = 16 * 1024
_PENDING = "ctxcloud_audit_pending"


def is_secret(name: Any) -> bool:
    lowered = str(name).lower()
    return lowered in SECRET_FIELDS or lowered.endswith(SECRET_ENDINGS)


def without_secrets(value: Any) -> Any:
    """`value` with every field named like a secret dropped, at any depth."""
    if isinstance(value, Mapping):
        return {str(k): without_secrets(v) for k, v in value.items() if not is_secret(k)}
    if isinstance(value, list | tuple | set | frozenset):
        return [without_secrets(v) for v in value]
    return value


def is_refusal(event_type: str) -> bool:
    return event_type == DENIAL or event_type.endswith(REFUSAL_ENDINGS)


@dataclass
class DenialBudget:
    """At most `per_minute` stored rows of each bounded type (BOUNDED_TYPES: denials, link
    reads) per chain per minute, per process; `take` is given the chain, or the chain and the
    type (``"<chain>|<type>"``) for a type other than denials.

    The rest are logged but not stored; the next stored row of that chain and type says how
    many were left out (``details.suppressed``).
    """

    per_minute: int | None
    lock: threading.Lock = field(default_factory=threading.Lock)
    window: int = 0
    spent: dict[str, int] = field(default_factory=dict)
    suppressed: dict[str, int] = field(default_factory=dict)

    def take(self, chain: str) -> int | None:
        """None: do not store; else how many denials of the chain were left out before it."""
        if self.per_minute is None:
            return 0
        with self.lock:
            minute = int(time.monotonic() // 60)
            if minute != self.window:
                self.window, self.spent = minute, {}
            if self.spent.get(chain, 0) >= self.per_minute:
                self.suppressed[chain] = self.suppressed.get(chain, 0) + 1
                return None
            self.spent[chain] = self.spent.get(chain, 0) + 1
            return self.suppressed.pop(chain, 0)


@dataclass
class Stats:
    stored: int = 0
    suppressed: int = 0
    failed: int = 0


BUDGET = StashKey[DenialBudget]("audit_log.denials")
STATS = StashKey[Stats]("audit_log.stats")


def budget() -> DenialBudget:
    found = stash().get(BUDGET)
    if found is None:
        limit = flask.current_app.config.get("AUDIT_DENIALS_PER_MINUTE")
        found = stash().setdefault(BUDGET, DenialBudget(None if limit is None else int(limit)))
    return found


def stats() -> Stats:
    return stash().setdefault(STATS, Stats())


def _clip(value: Any, length: int) -> str | None:
    return None if value is None else str(value)[:length]


def row_fields(event: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """The chain and the columns of an event (secrets dropped, JSON-normalized)."""
    clean = without_secrets(dict(event))
    event_type = str(clean.pop("type", "unknown"))[:64]
    tenant_id = clean.pop("tenant_id", None)
    actor = clean.pop("actor", None)
    request_id = clean.pop("request_id", None)
    target = {
        name: value
        for name, value in clean.items()
        if name.endswith("_id") and isinstance(value, str | int)
    }
    details = {name: value for name, value in clean.items() if name not in target}
    if event_type in PLATFORM_TYPES and tenant_id is not None:
        target["tenant_id"], tenant_id = tenant_id, None
    kind, _, actor_id = str(actor).partition(":") if actor else ("", "", "")
    details = json.loads(json.dumps(details, default=str, allow_nan=False))
    if len(json.dumps(details)) > MAX_DETAILS_BYTES:
        details = {"truncated": True, "fields": sorted(details)[:100]}
    address = None
    if flask.has_request_context():
        address = client_address()
    fields = {
        "tenant_id": _clip(tenant_id, 64),
        "type": event_type,
        "actor_kind": _clip(kind, 32) if actor else None,
        "actor_id": _clip(actor_id or kind, 300) if actor else None,
        "target": json.loads(json.dumps(target, default=str)),
        "request_id": _clip(request_id, 128),
        "client_address": _clip(address, 64),
        "details": details,
    }
    return fields["tenant_id"] or PLATFORM_CHAIN, fields


def record(event: Mapping[str, Any]) -> None:
    """Store one event (or set it aside to store when the request ends); never raises."""
    try:
        chain, fields = row_fields(event)
        if fields["type"] in BOUNDED_TYPES:
            key = chain if fields["type"] == DENIAL else f"{chain}|{fields['type']}"
            suppressed = budget().take(key)
            if suppressed is None:
                stats().suppressed += 1
                return
            if suppressed:
                fields["details"]["suppressed"] = suppressed
        if is_refusal(fields["type"]) and flask.has_request_context() and database.in_transaction():
            flask.g.setdefault(_PENDING, []).append((chain, fields))
            return
        _write(chain, fields)
    except Exception as exc:  # never break the request: say so, loudly, with the event
        _failed(event, exc)


def _write(chain: str, fields: dict[str, Any]) -> None:
    try:
        append(chain, fields)
        stats().stored += 1
    except Exception as exc:
        _failed(fields, exc)


def _failed(event: Mapping[str, Any], exc: Exception) -> None:
    stats().failed += 1
    log.error(
        "audit_event_not_stored",
        extra={"audit": without_secrets(dict(event)), "error": type(exc).__name__},
    )


def flush_pending(exc: BaseException | None = None) -> None:
    """At the end of a request: write the refusals set aside during its transaction."""
    pending = flask.g.pop(_PENDING, None)
    for chain, fields in pending or ():
        _write(chain, fields)
