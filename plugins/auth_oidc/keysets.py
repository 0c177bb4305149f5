"""Providers' key sets, cached per process and per `jwks_uri`, fetched sparingly.

- A fetched set is trusted for ``OIDC_JWKS_TTL`` seconds, then fetched again.
- A token naming a `kid` the set lacks (the provider rotated its keys) causes one refetch,
  but never more than one per ``OIDC_JWKS_REFETCH_COOLDOWN`` per set: a flood of random
  kids costs the provider one fetch per cooldown, not one per token.
- A provider that is down leaves the cached keys working until the TTL ends; past it a
  token of that provider gets ``KeysUnavailable`` (503), and the set is not asked again
  before the cooldown ends, so a dead provider is not hammered either.

The clock (``KeySets.clock``, monotonic seconds) is an attribute so tests move time
instead of sleeping. PyJWT parses the keys (``PyJWK``) and checks signatures; no JOSE here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jwt

from ctxcloud.plugins.auth_oidc.fetch import FetchFailed, fetch_json

# Only public keys of these types sign what we accept (no "oct": no shared secrets).
KEY_TYPES = frozenset({"RSA", "EC", "OKP"})


class KeysUnavailable(Exception):
    """The set's keys expired and the provider could not be asked (or not yet again)."""

    def __init__(self, reason: str, retry_after: float) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class KeyRefused(Exception):
    """No key of the set verifies this token: an unknown kid, or a key for another alg."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def usable_keys(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The set's signing keys by kid (keys without a kid, for encryption, or that PyJWT
    cannot read are left out); ValueError when none is left."""
    entries = document.get("keys")
    if not isinstance(entries, list):
        raise ValueError("has no `keys` list")
    keys: dict[str, dict[str, Any]] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        kid, use = entry.get("kid"), entry.get("use", "sig")
        if not isinstance(kid, str) or not kid or use != "sig" or kid in keys:
            continue
        if entry.get("kty") not in KEY_TYPES:
            continue
        try:
            jwt.PyJWK(entry)
        except jwt.PyJWTError:
            continue
        keys[kid] = entry
    if not keys:
        raise ValueError("holds no usable signing key (each needs a kid; RSA, EC or OKP)")
    return keys


@dataclass
class KeySet:
    """One `jwks_uri`'s keys and when it was last fetched or tried."""

    uri: str
    keys: dict[str, dict[str, Any]] = field(default_factory=dict)
    fetched_at: float | None = None  # last successful fetch
    attempted_at: float | None = None  # last fetch, whatever came of it
    failed_at: float | None = None  # last failed fetch (None after a success)
    failure: str = ""
    fetches: int = 0
    built: dict[tuple[str, str], jwt.PyJWK] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


class KeySets:
    """This process's key sets (one per app, in its stash)."""

    def __init__(
        self,
        ttl: float,
        cooldown: float,
        timeout: float,
        fetch: Callable[[str, float], dict[str, Any]] = fetch_json,
    ) -> None:
        self.ttl = ttl
        self.cooldown = cooldown
        self.timeout = timeout
        self.fetch = fetch
        self.clock: Callable[[], float] = time.monotonic
        self.sets: dict[str, KeySet] = {}
        self._lock = threading.Lock()

    def _set(self, uri: str) -> KeySet:
        with self._lock:
            found = self.sets.get(uri)
            if found is None:
                found = self.sets[uri] = KeySet(uri)
            return found

    def prime(self, uri: str, keys: dict[str, dict[str, Any]]) -> None:
        """Keep a set fetched and checked elsewhere (at registration) as if fetched now."""
        key_set = self._set(uri)
        with key_set.lock:
            self._store(key_set, keys, self.clock())

    def _store(self, key_set: KeySet, keys: dict[str, dict[str, Any]], now: float) -> None:
        key_set.keys, key_set.built = keys, {}
        key_set.fetched_at = key_set.attempted_at = now
        key_set.failed_at, key_set.failure = None, ""

    def _refresh(self, key_set: KeySet, now: float) -> None:
        """Fetch the set once; on failure keep what we had and remember when it failed."""
        key_set.attempted_at = now
        key_set.fetches += 1
        try:
            keys = usable_keys(self.fetch(key_set.uri, self.timeout))
        except FetchFailed as exc:
            key_set.failed_at, key_set.failure = now, exc.reason
            return
        except ValueError as exc:
            key_set.failed_at, key_set.failure = now, f"the key set {exc}"
            return
        self._store(key_set, keys, now)

    def key(self, uri: str, kid: str, algorithm: str) -> jwt.PyJWK:
        """The key `kid` of the set at `uri`, read for `algorithm`."""
        key_set = self._set(uri)
        with key_set.lock:
            now = self.clock()
            if key_set.fetched_at is None or now - key_set.fetched_at >= self.ttl:
                if key_set.failed_at is None or now - key_set.failed_at >= self.cooldown:
                    self._refresh(key_set, now)
                if key_set.fetched_at is None or now - key_set.fetched_at >= self.ttl:
                    wait = self.cooldown - (now - (key_set.failed_at or now))
                    raise KeysUnavailable(
                        f"the key set could not be fetched ({key_set.failure})", max(wait, 1.0)
                    )
            if kid not in key_set.keys and (
                key_set.attempted_at is None or now - key_set.attempted_at >= self.cooldown
            ):
                self._refresh(key_set, now)  # a rotation; a failure keeps the cached keys
            jwk = key_set.keys.get(kid)
            if jwk is None:
                raise KeyRefused("no key of the provider's key set has this kid")
            declared = jwk.get("alg")
            if declared is not None and declared != algorithm:
                raise KeyRefused(f"the key {kid!r} is for {declared}, not {algorithm}")
            built = key_set.built.get((kid, algorithm))
            if built is None:
                try:
                    built = jwt.PyJWK(jwk, algorithm=algorithm)
                except jwt.PyJWTError:
                    raise KeyRefused(f"the key {kid!r} cannot verify {algorithm}") from None
                key_set.built[(kid, algorithm)] = built
            return built
