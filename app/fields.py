"""Marshmallow fields shared by every plugin's schemas."""

from __future__ import annotations

import datetime
from typing import Any

import marshmallow as ma


class Timestamp(ma.fields.DateTime):
    """An RFC 3339 UTC timestamp ("...Z"); stored values are naive UTC (see app.db.utcnow)."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("metadata", {}).setdefault("example", "2026-11-25T18:00:00Z")
        super().__init__(format="iso", **kwargs)

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        if value is None:
            return None
        if value.tzinfo is not None:
            value = value.astimezone(datetime.UTC).replace(tzinfo=None)
        return value.isoformat(timespec="milliseconds") + "Z"
