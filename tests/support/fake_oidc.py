"""A fake OpenID Connect provider: discovery document and key set served over real HTTP on a
free loopback port (werkzeug on a thread), counting each fetch; keys (RSA and EC) that it can
rotate; an outage switch (503, or the connection dropped); and tokens minted with any header
and claims, signed by its keys or by whatever a forger would use."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

DISCOVERY = "/.well-known/openid-configuration"
_kids = itertools.count(1)


@dataclass
class SigningKey:
    kid: str
    algorithm: str
    private: Any

    def public_jwk(self) -> dict[str, Any]:
        family = jwt.algorithms.RSAAlgorithm if self.algorithm.startswith("RS") else None
        family = family or jwt.algorithms.ECAlgorithm
        jwk = family.to_jwk(self.private.public_key(), as_dict=True)
        return {**jwk, "kid": self.kid, "alg": self.algorithm, "use": "sig"}

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def new_key(algorithm: str = "RS256", kid: str | None = None) -> SigningKey:
    if algorithm.startswith("RS"):
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif algorithm == "ES256":
        private = ec.generate_private_key(ec.SECP256R1())
    else:
        raise ValueError(algorithm)
    return SigningKey(kid or f"key-{next(_kids)}", algorithm, private)


class FakeIdentityProvider:
    """One issuer at ``{url}{realm}``; its key set is at a path no guess would find."""

    def __init__(self, realm: str = "/realms/acme") -> None:
        self.realm = realm
        self.keys: list[SigningKey] = [new_key("RS256"), new_key("ES256")]
        self.fetches: Counter[str] = Counter()
        self.outage: str | None = None  # None, "503" or "drop"
        self.discovery_overrides: dict[str, Any] = {}
        self._server = make_server("127.0.0.1", 0, self._wsgi, threaded=True)
        self.url = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    # The provider's face -------------------------------------------------------------------

    @property
    def issuer(self) -> str:
        return self.url + self.realm

    @property
    def jwks_path(self) -> str:
        return self.realm + "/protocol/openid-connect/certs"

    @property
    def jwks_uri(self) -> str:
        return self.url + self.jwks_path

    @property
    def discovery_path(self) -> str:
        return self.realm + DISCOVERY

    @property
    def jwks_fetches(self) -> int:
        return self.fetches[self.jwks_path]

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "jwks_uri": self.jwks_uri,
            "authorization_endpoint": self.issuer + "/protocol/openid-connect/auth",
            "id_token_signing_alg_values_supported": ["RS256", "ES256"],
            **self.discovery_overrides,
        }

    def jwks(self) -> dict[str, Any]:
        return {"keys": [key.public_jwk() for key in self.keys]}

    def _wsgi(self, environ, start_response):
        request = Request(environ)
        self.fetches[request.path] += 1
        if self.outage == "drop":
            raise ConnectionAbortedError("the fake provider drops the connection")
        if self.outage == "503":
            response = Response("down", status=503)
        elif request.path == self.discovery_path:
            response = Response(json.dumps(self.discovery()), mimetype="application/json")
        elif request.path == self.jwks_path:
            response = Response(json.dumps(self.jwks()), mimetype="application/json")
        else:
            response = Response("not found", status=404)
        return response(environ, start_response)

    # Keys --------------------------------------------------------------------------------

    def key(self, algorithm: str = "RS256") -> SigningKey:
        return next(key for key in self.keys if key.algorithm == algorithm)

    def rotate(self) -> SigningKey:
        """Replace every key by a new RSA key (and a new EC key); the RSA one is returned."""
        self.keys = [new_key("RS256"), new_key("ES256")]
        return self.keys[0]

    # Tokens ------------------------------------------------------------------------------

    def claims(self, audience: Any = "ctxcloud", lifetime: int = 300, **extra: Any) -> dict:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": audience,
            "sub": "f3a1c2d4-alice",
            "iat": now,
            "exp": now + lifetime,
            "jti": f"jti-{next(_kids)}",
            "groups": ["ctx-writers"],
        }
        claims.update(extra)
        return {name: value for name, value in claims.items() if value is not None}

    def token(
        self,
        claims: dict | None = None,
        *,
        algorithm: str = "RS256",
        key: SigningKey | None = None,
        headers: dict | None = None,
        **extra: Any,
    ) -> str:
        """Claims (default: `claims(**extra)`) signed by the provider's key for `algorithm`
        (or `key`), with its kid unless `headers` say otherwise."""
        key = key or self.key(algorithm)
        return jwt.encode(
            claims if claims is not None else self.claims(**extra),
            key.private,
            algorithm=key.algorithm,
            headers={"kid": key.kid, **(headers or {})},
        )

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


@contextmanager
def fake_identity_provider(realm: str = "/realms/acme") -> Iterator[FakeIdentityProvider]:
    provider = FakeIdentityProvider(realm)
    try:
        yield provider
    finally:
        provider.stop()


def provider_body(idp: FakeIdentityProvider, **overrides: Any) -> dict[str, Any]:
    """A registration body for `idp` (discovery finds the key set): writers are members,
    admins are admins, nobody else gets in."""
    body: dict[str, Any] = {
        "issuer": idp.issuer,
        "audiences": ["ctxcloud"],
        "claim_rules": [
            {"claim": "groups", "contains": "ctx-admins", "role": "admin"},
            {"claim": "groups", "contains": "ctx-writers", "role": "member"},
        ],
    }
    body.update(overrides)
    return body


class FakeClock:
    """A monotonic clock tests move by hand: `keysets.clock = clock` and `clock.advance(31)`."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
