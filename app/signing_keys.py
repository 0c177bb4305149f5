"""The keys that sign the service's tokens: asymmetric (ES256 or EdDSA), each named by a
``kid``, published as a JWK set, and moved through their states by ``ctxcloud keys
rotate-signing``.

A key's states: **standby** (published, not yet signing: downstream caches learn it before
its first token) → **active** (signs every new token; exactly one) → **retired** (published
and accepted until every token it signed has expired) → **removed** (neither).

The private keys come from CTXCLOUD_JWT_SIGNING_KEYS (``{"kid": "PEM", ...}``; generated into
the data directory in development). Which state each kid is in lives in the database, shared
by every process. A change bumps the ``signing-keys`` credential generation, so every process
re-reads the states on its next use, as it notices a revocation (at once on one host; with
Redis, within CTXCLOUD_REVOCATION_MAX_DELAY); a token naming a kid a process does not know
makes it re-read them too, at most once a second.
"""

from __future__ import annotations

import datetime
import json
import re
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import flask
import jwt
import peewee
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from ctxcloud.db import BaseModel, JSONField, database, for_update, utcnow
from ctxcloud.errors import Unavailable
from ctxcloud.migrations import Migration
from ctxcloud.settings import ConfigError
from ctxcloud.tenancy.credentials import credentials

__all__ = [
    "ALGORITHMS",
    "HS256",
    "MIGRATIONS",
    "NoStandbyKey",
    "PrivateKey",
    "SigningKeyState",
    "SigningKeys",
    "new_signing_key",
    "parse_signing_keys",
]

ALGORITHMS = ("ES256", "EdDSA")  # the asymmetric algorithms a key may use
HS256 = "HS256"  # the shared-secret opt-in: no keys, no JWK set
STANDBY, ACTIVE, RETIRED, REMOVED = "standby", "active", "retired", "removed"
GENERATION_SCOPE = "signing-keys"  # the credential generation that says "read the states again"
UNKNOWN_KID_COOLDOWN = 1.0  # at most one re-read a second for kids nobody knows
LEEWAY_SECONDS = 60  # clock skew allowed on top of a token's lifetime
VARIABLE = "CTXCLOUD_JWT_SIGNING_KEYS"

_KID_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
_PUBLIC_MEMBERS = ("kty", "crv", "x", "y")  # all a public EC or OKP JWK holds


class NoStandbyKey(Exception):
    """Rotation needs a standby key to make active."""


class SigningKeyState(BaseModel):
    kid = peewee.CharField(primary_key=True, max_length=64)
    algorithm = peewee.CharField(max_length=16)
    public_jwk = JSONField()
    state = peewee.CharField(max_length=16)
    created_at = peewee.DateTimeField()
    activated_at = peewee.DateTimeField(null=True)
    retired_at = peewee.DateTimeField(null=True)
    removed_at = peewee.DateTimeField(null=True)

    class Meta:
        table_name = "ctxcloud_signing_key"


@dataclass(frozen=True, slots=True)
class PrivateKey:
    """One signing key this process holds."""

    kid: str
    algorithm: str
    key: Any  # cryptography's EllipticCurvePrivateKey or Ed25519PrivateKey

    def public_jwk(self) -> dict[str, str]:
        return _public_jwk(self.key.public_key(), self.kid, self.algorithm)


def _public_jwk(public_key: Any, kid: str, algorithm: str) -> dict[str, str]:
    encoder = jwt.algorithms.ECAlgorithm if algorithm == "ES256" else jwt.algorithms.OKPAlgorithm
    jwk = encoder.to_jwk(public_key, as_dict=True)
    public = {name: jwk[name] for name in _PUBLIC_MEMBERS if name in jwk}
    return {**public, "kid": kid, "alg": algorithm, "use": "sig"}


def _matches(key: Any, algorithm: str) -> bool:
    if algorithm == "ES256":
        return isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1)
    return isinstance(key, ed25519.Ed25519PrivateKey)


def parse_signing_keys(value: Any, algorithm: str) -> dict[str, PrivateKey]:
    """CTXCLOUD_JWT_SIGNING_KEYS as keys; ConfigError naming the variable (never a key's
    bytes) when it is not a JSON object of kid → PEM private key of `algorithm`."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise ConfigError(f"{VARIABLE} must be a JSON object of kid → PEM") from None
    if not isinstance(value, Mapping) or not value:
        raise ConfigError(f"{VARIABLE} must be a JSON object of kid → PEM, with one key at least")
    keys = {}
    for kid, pem in value.items():
        if not isinstance(kid, str) or not _KID_RE.fullmatch(kid):
            raise ConfigError(
                f"{VARIABLE}: a kid is 1 to 64 letters, digits, '.', '_' or '-', not {kid!r}"
            )
        try:
            key = serialization.load_pem_private_key(str(pem).encode(), password=None)
        except (ValueError, TypeError):
            raise ConfigError(f"{VARIABLE}: the key {kid!r} is not a PEM private key") from None
        if not _matches(key, algorithm):
            wanted = "an EC P-256" if algorithm == "ES256" else "an Ed25519"
            raise ConfigError(
                f"{VARIABLE}: the key {kid!r} is not {wanted} key, as CTXCLOUD_JWT_ALGORITHM="
                f"{algorithm} needs"
            )
        keys[kid] = PrivateKey(kid, algorithm, key)
    return keys


def new_signing_key(algorithm: str = "ES256") -> tuple[str, str]:
    """A fresh key: its kid (the day, then random) and its private key as PEM."""
    if algorithm not in ALGORITHMS:
        raise ValueError(f"signing keys use {' or '.join(ALGORITHMS)}, not {algorithm!r}")
    key = (
        ec.generate_private_key(ec.SECP256R1())
        if algorithm == "ES256"
        else (ed25519.Ed25519PrivateKey.generate())
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    kid = f"{datetime.datetime.now(datetime.UTC):%Y%m%d}-{secrets.token_hex(4)}"
    return kid, pem


@dataclass(frozen=True, slots=True)
class _Snapshot:
    active: PrivateKey | None  # None: the active kid is not one this process holds
    active_kid: str | None
    verifying: dict[str, Any]  # kid → public key, for active and retired keys
    published: tuple[dict[str, str], ...]  # JWKs of standby, active and retired keys
    generation: int
    loaded_at: float


class SigningKeys:
    """The signing keys of one app: which signs, which verify, and the published set."""

    def __init__(
        self, algorithm: str, private: Mapping[str, PrivateKey], retire_after: float
    ) -> None:
        self.algorithm = algorithm
        self.private = dict(private)
        self.retire_after = retire_after  # seconds a retired key stays published and valid
        self._snapshot: _Snapshot | None = None
        self._synced = False
        self._lock = threading.Lock()

    # -- what requests use --------------------------------------------------------------

    def signing_key(self) -> PrivateKey:
        """The active key; 503 when this process does not hold it (a rollout missed it)."""
        snapshot = self._current()
        if snapshot.active is None:
            detail = (
                f"the active signing key {snapshot.active_kid!r} is not in this process's "
                f"{VARIABLE}"
                if snapshot.active_kid
                else f"no {self.algorithm} signing key is active"
            )
            raise Unavailable(detail)
        return snapshot.active

    def verification_key(self, kid: Any) -> Any | None:
        """The public key of an active or retired kid, or None (refuse the token)."""
        if not isinstance(kid, str):
            return None
        snapshot = self._current()
        key = snapshot.verifying.get(kid)
        if key is None and time.monotonic() - snapshot.loaded_at >= UNKNOWN_KID_COOLDOWN:
            key = self._current(force=True).verifying.get(kid)
        return key

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        return {"keys": list(self._current().published)}

    # -- operators ----------------------------------------------------------------------

    def states(self) -> list[dict[str, Any]]:
        """Every key the database knows, oldest first, with its state and times."""
        self._sync()
        rows = SigningKeyState.select().order_by(SigningKeyState.created_at, SigningKeyState.kid)
        return [_describe(row, row.kid in self.private) for row in rows]

    def rotate(
        self, now: datetime.datetime | None = None, remove_retired: bool = False
    ) -> dict[str, Any]:
        """Remove retired keys past the retirement window, retire the active key and make
        the oldest standby key this process holds active. NoStandbyKey when there is none.
        With `remove_retired` (a key leaked), every retired key is removed at once, the one
        retired now included: the tokens they signed are refused from then on."""
        now = now or utcnow()
        self._sync()
        with database.atomic():
            rows = list(  # locked: two rotations at once run one after the other
                for_update(
                    SigningKeyState.select()
                    .where(SigningKeyState.algorithm == self.algorithm)
                    .order_by(SigningKeyState.created_at, SigningKeyState.kid)
                )
            )
            standby = [r for r in rows if r.state == STANDBY and r.kid in self.private]
            if not standby:
                raise NoStandbyKey(
                    f"no standby signing key to make active: add a new key to {VARIABLE} "
                    "(ctxcloud keys new-signing-key), roll it out to every process, then rotate"
                )
            window = datetime.timedelta(seconds=self.retire_after)
            retired = [r.kid for r in rows if r.state == ACTIVE]
            removed = [
                r.kid
                for r in rows
                if r.state == RETIRED and (remove_retired or r.retired_at + window <= now)
            ]
            if remove_retired:
                removed += retired
            if retired:
                SigningKeyState.update(state=RETIRED, retired_at=now).where(
                    SigningKeyState.kid.in_(retired)
                ).execute()
            if removed:
                SigningKeyState.update(state=REMOVED, removed_at=now).where(
                    SigningKeyState.kid.in_(removed)
                ).execute()
            activated = standby[0].kid
            SigningKeyState.update(state=ACTIVE, activated_at=now).where(
                SigningKeyState.kid == activated
            ).execute()
        _changed()
        self._current(force=True)
        return {"activated": activated, "retired": retired, "removed": removed}

    def add_private_key(self, key: PrivateKey) -> None:
        """Hold one more key (development: a key just generated); it starts as standby."""
        self.private[key.kid] = key
        self._synced = False

    # -- the view of the states --------------------------------------------------------------

    def _current(self, force: bool = False) -> _Snapshot:
        snapshot = self._snapshot
        if not force and snapshot is not None and snapshot.generation == _generation():
            return snapshot
        with self._lock:
            snapshot = self._snapshot
            if not force and snapshot is not None and snapshot.generation == _generation():
                return snapshot
            self._sync()
            generation = _generation()  # before reading: a change after it reads again
            self._snapshot = snapshot = self._load(generation, time.monotonic())
            return snapshot

    def _load(self, generation: int, loaded_at: float) -> _Snapshot:
        active: PrivateKey | None = None
        active_kid = None
        verifying: dict[str, Any] = {}
        published = []
        for row in SigningKeyState.select().order_by(SigningKeyState.created_at):
            if row.state == REMOVED or row.algorithm != self.algorithm:
                continue
            published.append(row.public_jwk)
            if row.state in (ACTIVE, RETIRED):
                verifying[row.kid] = jwt.PyJWK(row.public_jwk, row.algorithm).key
            if row.state == ACTIVE:
                active_kid = row.kid
                active = self.private.get(row.kid)
        return _Snapshot(active, active_kid, verifying, tuple(published), generation, loaded_at)

    def _sync(self) -> None:
        """Record the keys this process holds that the database does not know (as standby),
        and make one active when none is: the oldest this process holds."""
        if self._synced:
            return
        known = {row.kid: row for row in SigningKeyState.select()}
        now = utcnow()
        changed = False
        for kid, key in sorted(self.private.items()):
            row = known.get(kid)
            if row is None:  # another process may record it first: then this is a no-op
                SigningKeyState.insert(
                    kid=kid,
                    algorithm=key.algorithm,
                    public_jwk=key.public_jwk(),
                    state=STANDBY,
                    created_at=now,
                ).on_conflict_ignore().execute()
                changed = True
            elif row.public_jwk != key.public_jwk():
                raise ConfigError(
                    f"{VARIABLE}: the key {kid!r} is not the key the database knows by that "
                    "kid; give every new key a new kid"
                )
        with database.atomic():
            mine = SigningKeyState.algorithm == self.algorithm  # a switch starts afresh
            if not SigningKeyState.select().where(mine, SigningKeyState.state == ACTIVE).exists():
                first = (
                    SigningKeyState.select()
                    .where(
                        mine,
                        SigningKeyState.state == STANDBY,
                        SigningKeyState.kid.in_(list(self.private)),
                    )
                    .order_by(SigningKeyState.created_at, SigningKeyState.kid)
                    .first()
                )
                if first is not None:
                    SigningKeyState.update(state=ACTIVE, activated_at=now).where(
                        SigningKeyState.kid == first.kid, SigningKeyState.state == STANDBY
                    ).execute()
                    changed = True
        if changed:
            _changed()
        self._synced = True


def _generation() -> int:
    return credentials().generations.current(GENERATION_SCOPE)


def _changed() -> None:
    """After a commit: every process reads the states again on its next use."""
    credentials().generations.bump(GENERATION_SCOPE)


def _describe(row: SigningKeyState, held: bool) -> dict[str, Any]:
    def iso(value: datetime.datetime | None) -> str | None:
        return None if value is None else value.replace(tzinfo=datetime.UTC).isoformat()

    return {
        "kid": row.kid,
        "algorithm": row.algorithm,
        "state": row.state,
        "held": held,  # whether this process has its private key
        "created_at": iso(row.created_at),
        "activated_at": iso(row.activated_at),
        "retired_at": iso(row.retired_at),
        "removed_at": iso(row.removed_at),
    }


def signing_keys() -> SigningKeys | None:
    """The current app's signing keys, or None under the HS256 opt-in."""
    return flask.current_app.extensions["ctxcloud"].signing_keys


def _create_signing_keys(migrator, db) -> None:
    class FrozenSigningKey(peewee.Model):
        kid = peewee.CharField(primary_key=True, max_length=64)
        algorithm = peewee.CharField(max_length=16)
        public_jwk = peewee.TextField()
        state = peewee.CharField(max_length=16)
        created_at = peewee.DateTimeField()
        activated_at = peewee.DateTimeField(null=True)
        retired_at = peewee.DateTimeField(null=True)
        removed_at = peewee.DateTimeField(null=True)

        class Meta:
            database = db
            table_name = "ctxcloud_signing_key"

    db.create_tables([FrozenSigningKey])


MIGRATIONS = [Migration("core.0002_signing_keys", _create_signing_keys)]
