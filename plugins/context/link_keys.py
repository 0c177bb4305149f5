"""The keys signed links are signed with: their own, never the JWT signing keys.

Two sources (docs/links.md, "Keys and rotation"):

- ``CTXCLOUD_LINK_SIGNING_KEYS``, a JSON object ``{"key-id": "<base64 of at least 32 random
  bytes>"}``, with ``CTXCLOUD_ACTIVE_LINK_SIGNING_KEY`` naming the one that signs new links
  (default: the first). Every listed key verifies: a link keeps working until its key is
  removed from the list (retired).
- Unset (the default, in production as in development): keys derived from the master keys with
  HKDF-SHA256 under the versioned label ``links-v1`` (the toolkit's ``derived_keys``), one per
  master key; the active master key's signs. Rotating the master key rotates them; a link
  signed under an old master key works while that key is configured.

A key id travels in each token, so a verifier picks the key, and a retired id is simply
unknown: the link is refused like any other unknown link.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

import flask
from limits import parse_many

from ctxcloud import ConfigError, StashKey, derived_keys, setting, stash

LABEL = "links-v1"
KEY_ID = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
MIN_KEY_BYTES = 32


@dataclass(frozen=True)
class LinkKeys:
    active_id: str
    keys: dict[str, bytes]

    @property
    def active(self) -> bytes:
        return self.keys[self.active_id]

    def get(self, key_id: str) -> bytes | None:
        return self.keys.get(key_id)


_KEYS: StashKey[LinkKeys] = StashKey("context.link_keys")


def _decode(key_id: str, value: Any) -> bytes:
    what = f"CTXCLOUD_LINK_SIGNING_KEYS: key {key_id!r}"
    if not isinstance(value, str):
        raise ConfigError(f"{what} must be a base64 string")
    compact = value.strip().replace("-", "+").replace("_", "/")
    compact += "=" * (-len(compact) % 4)
    try:
        material = binascii.a2b_base64(compact, strict_mode=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{what} is not valid base64") from None
    if len(material) < MIN_KEY_BYTES:
        raise ConfigError(f"{what} must decode to at least {MIN_KEY_BYTES} bytes")
    return material


def parse(configured: Any, active: Any) -> LinkKeys:
    """The configured keys, checked (messages never hold key material)."""
    if isinstance(configured, str):
        try:
            configured = json.loads(configured)
        except ValueError:
            raise ConfigError(
                'CTXCLOUD_LINK_SIGNING_KEYS is not valid JSON; expected {"key-id": "<base64>"}'
            ) from None
    if not isinstance(configured, dict) or not configured:
        raise ConfigError(
            'CTXCLOUD_LINK_SIGNING_KEYS must be a non-empty JSON object {"key-id": "<base64>"}'
        )
    keys = {}
    for key_id, value in configured.items():
        if not isinstance(key_id, str) or not KEY_ID.match(key_id):
            raise ConfigError(
                "CTXCLOUD_LINK_SIGNING_KEYS: key ids are 1-40 letters, digits, '_' or '-'"
            )
        keys[key_id] = _decode(key_id, value)
    active_id = active or next(iter(keys))
    if active_id not in keys:
        raise ConfigError(
            f"CTXCLOUD_ACTIVE_LINK_SIGNING_KEY {active_id!r} is not among the ids of "
            "CTXCLOUD_LINK_SIGNING_KEYS"
        )
    return LinkKeys(active_id, keys)


def load() -> LinkKeys:
    """The current app's link keys (read once per app)."""
    app = flask.current_app
    state = stash(app)
    found = state.get(_KEYS)
    if found is None:
        configured = setting("LINK_SIGNING_KEYS", None)
        if configured:
            found = parse(configured, setting("ACTIVE_LINK_SIGNING_KEY", None))
        else:
            active_id, keys = derived_keys(LABEL)
            found = LinkKeys(active_id, dict(keys))
        state[_KEYS] = found
    return found


def check_at_startup(app: flask.Flask) -> None:
    """A bad CTXCLOUD_LINK_SIGNING_KEYS or CTXCLOUD_RATE_LIMIT_LINKS fails the start, not the
    first link."""
    with app.app_context():
        load()
        reads = setting("RATE_LIMIT_LINKS")
        try:
            valid = isinstance(reads, str) and bool(parse_many(reads))
        except ValueError:
            valid = False
        if not valid:
            raise ConfigError(
                f"CTXCLOUD_RATE_LIMIT_LINKS={reads!r} is not a rate limit such as '120/minute'"
            )


def urlsafe(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
