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


class AwareTimestamp(Timestamp):
    """A Timestamp that, as input, must carry an offset; it is kept as naive UTC."""

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Any:
        moment = super()._deserialize(value, attr, data, **kwargs)
        if moment.tzinfo is None:
            raise ma.ValidationError("Give the offset, e.g. 2030-01-01T00:00:00Z.")
        return moment.astimezone(datetime.UTC).replace(tzinfo=None)
