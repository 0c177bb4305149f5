"""Security events as structured records on the ``ctxcloud.audit`` logger (one JSON line each).

Events carry ids, names and reasons, never a secret: callers of ``emit_audit`` pass no
password, key or token, and this plugin drops any field whose name says it holds one.
"""

from __future__ import annotations

import logging
from typing import Any

from ctxcloud import hookimpl

log = logging.getLogger("ctxcloud.audit")
SECRET_FIELDS = frozenset({"password", "key", "secret", "token", "access_token", "refresh_token"})


@hookimpl(trylast=True)
def audit_event(event: dict[str, Any]) -> None:
    record = {name: value for name, value in event.items() if name not in SECRET_FIELDS}
    log.info(record["type"], extra={"audit": record})
