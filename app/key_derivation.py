"""Secrets a plugin derives from the master keys, so it needs no secret setting of its own.

``derived_keys(label)`` gives one 32-byte key per configured master key, each
HKDF-SHA256(master key, info = b"ctxcloud-derived-key:" + label), under an opaque id made from
the label and the master key's id; the active one is the active master key's. A plugin puts
a version in its label ("links-v1"): a new label is a new, unrelated set of keys. Rotating the
master key (CTXCLOUD_ACTIVE_MASTER_KEY) rotates every derived key with it, and a derived key
stays available while its master key is configured. The plugin never sees a master key.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from typing import Any

import flask
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ctxcloud.crypto import MasterKeyring, _decode_key

_INFO = b"ctxcloud-derived-key:"
LABEL = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_EXTENSION = "ctxcloud.derived_keys"
_lock = threading.Lock()


def _master_keys(config: flask.Config) -> tuple[str, dict[str, bytes]]:
    keys: Any = config["MASTER_KEYS"]
    parsed = json.loads(keys) if isinstance(keys, str) else dict(keys)
    text = json.dumps(parsed)
    ring = MasterKeyring.from_json(text, active=config.get("ACTIVE_MASTER_KEY") or None)
    return ring.active_id, {key_id: _decode_key(key_id, value) for key_id, value in parsed.items()}


def key_id(label: str, master_key_id: str) -> str:
    """`label` + 12 base32 characters of a hash of the master key's id: opaque, URL-safe."""
    digest = hashlib.sha256(f"{label}\x00{master_key_id}".encode()).digest()
    return base64.b32encode(digest).decode().lower()[:12]


def derived_keys(label: str) -> tuple[str, dict[str, bytes]]:
    """(id of the active key, {id: 32 bytes}) derived for `label` from the current app's
    master keys (computed once per app and label)."""
    if not LABEL.match(label):
        raise ValueError("a label is 1-63 lowercase letters, digits, '.', '_' or '-'")
    app = flask.current_app
    cache = app.extensions.setdefault(_EXTENSION, {})
    found = cache.get(label)
    if found is not None:
        return found
    with _lock:
        active, masters = _master_keys(app.config)
        keys = {}
        for master_id, material in masters.items():
            info = _INFO + label.encode()
            hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info)
            keys[key_id(label, master_id)] = hkdf.derive(material)
        found = cache[label] = (key_id(label, active), keys)
    return found
