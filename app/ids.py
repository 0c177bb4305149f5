"""Opaque, prefixed resource ids: random, so they reveal no order, count or tenant."""

from __future__ import annotations

import base64
import secrets


def new_id(prefix: str) -> str:
    """`prefix_` + 20 lowercase base32 characters (100 random bits)."""
    return f"{prefix}_" + base64.b32encode(secrets.token_bytes(15)).decode().lower()[:20]


# Slugs (tenants, projects): 1-63 lowercase letters, digits and inner hyphens, a DNS label.
SLUG_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$"
SLUG_RULE = "1-63 lowercase letters, digits and inner hyphens."
