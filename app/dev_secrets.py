"""Secrets generated into the data directory so the embedded default needs no setup.

Never used in production, which refuses to start without its secrets.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import logging
import os
import secrets
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

log = logging.getLogger("ctxcloud.secrets")
SECRETS_FILE = "dev-secrets.json"


def signing_keys_name(algorithm: str) -> str:
    """Where the file keeps the signing keys of one algorithm (a switch keeps both sets)."""
    return f"JWT_SIGNING_KEYS:{algorithm}"


def _generators() -> dict[str, Callable[[], Any]]:
    """How each secret is made; only the missing ones are (a key pair is not free)."""
    from ctxcloud.signing_keys import ALGORITHMS, new_signing_key

    return {
        "MASTER_KEYS": lambda: {"dev-1": base64.b64encode(secrets.token_bytes(32)).decode()},
        "JWT_SECRET_KEY": lambda: secrets.token_urlsafe(48),
        "API_KEY_PEPPER": lambda: secrets.token_urlsafe(48),
        **{
            signing_keys_name(algorithm): lambda algorithm=algorithm: dict(
                [new_signing_key(algorithm)]
            )
            for algorithm in ALGORITHMS
        },
    }


def add_signing_key(data_dir: str, algorithm: str, kid: str, pem: str) -> None:
    """Keep one more generated signing key (``ctxcloud keys rotate-signing`` in development)."""
    with _locked(data_dir) as path:
        stored = _load_or_create_locked(path)
        stored.setdefault(signing_keys_name(algorithm), {})[kid] = pem
        _write(path, stored)


@contextlib.contextmanager
def _locked(data_dir: str) -> Iterator[str]:
    os.makedirs(data_dir, mode=0o700, exist_ok=True)
    path = os.path.join(data_dir, SECRETS_FILE)
    lock_fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        yield path
    finally:
        os.close(lock_fd)  # releases the lock


def load_or_create(data_dir: str) -> dict[str, Any]:
    """Read the generated secrets, creating them (mode 0600) on first use, with a loud warning.

    Every process of a data directory must end up with the same secrets (gunicorn boots its
    workers at once: two that each generated a JWT secret would refuse each other's tokens),
    so reading and creating happen under an exclusive lock on a lock file beside them.
    """
    with _locked(data_dir) as path:
        return _load_or_create_locked(path)


def _load_or_create_locked(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            stored = json.load(handle)
    except FileNotFoundError:
        stored = {}
    missing = {k: make() for k, make in _generators().items() if k not in stored}
    if missing:
        stored.update(missing)
        _write(path, stored)
        log.warning(
            "generated development secrets (master key, token signing keys, API key pepper) "
            "in %s: fine for a laptop, never for production; set CTXCLOUD_MASTER_KEYS, "
            "CTXCLOUD_JWT_SIGNING_KEYS and CTXCLOUD_API_KEY_PEPPER instead",
            path,
        )
    return stored


def _write(path: str, stored: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=SECRETS_FILE + ".")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:  # mkstemp: mode 0600
        json.dump(stored, handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
