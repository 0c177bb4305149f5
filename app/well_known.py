"""GET /.well-known/jwks.json: the public keys of every token the service signs (RFC 7517).

Downstream services verify ctxcloud's tokens with this set alone: pick the key whose ``kid``
the token's header names. Standby keys are published before they sign, retired ones until
the last token they signed has expired (docs/authentication.md, "Signing keys").
"""

from __future__ import annotations

import flask
import marshmallow as ma
from flask.views import MethodView

from ctxcloud.auth import public
from ctxcloud.blueprint import Blueprint

blp = Blueprint(
    "well_known",
    __name__,
    url_prefix="/.well-known",
    description="Discovery documents at their standard places (no authentication).",
)

# How long a verifier may keep the set: a standby key is published for longer than this
# before a rotation makes it sign (docs/authentication.md).
MAX_AGE_SECONDS = 300


class JWKSchema(ma.Schema):
    kty = ma.fields.String(
        required=True, metadata={"description": "Key type: EC or OKP", "example": "EC"}
    )
    crv = ma.fields.String(
        required=True, metadata={"description": "Curve: P-256 or Ed25519", "example": "P-256"}
    )
    x = ma.fields.String(
        required=True,
        metadata={
            "description": "Public key (base64url)",
            "example": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
        },
    )
    y = ma.fields.String(
        metadata={
            "description": "Public key, EC only (base64url)",
            "example": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
        }
    )
    kid = ma.fields.String(
        required=True,
        metadata={"description": "Key id, as tokens name it", "example": "20261206-1a2b3c4d"},
    )
    alg = ma.fields.String(
        required=True, metadata={"description": "ES256 or EdDSA", "example": "ES256"}
    )
    use = ma.fields.String(required=True, metadata={"description": "Always sig", "example": "sig"})


class JWKSetSchema(ma.Schema):
    keys = ma.fields.List(
        ma.fields.Nested(JWKSchema),
        required=True,
        metadata={"description": "Standby, active and retired keys; empty under the HS256 opt-in"},
    )


@blp.route("/jwks.json")
class JWKSet(MethodView):
    @public
    @blp.response(200, JWKSetSchema, headers={"Cache-Control": {"schema": {"type": "string"}}})
    def get(self):
        """The public keys of the service's tokens (JWK set)

        Verify a token from ctxcloud with the key whose `kid` its header names, with the
        key's `alg`. Cache the set for up to five minutes (Cache-Control says so); fetch it
        again when a token names a kid you do not have.
        """
        keys = flask.current_app.extensions["ctxcloud"].signing_keys
        body = keys.jwks() if keys is not None else {"keys": []}
        return body, 200, {"Cache-Control": f"public, max-age={MAX_AGE_SECONDS}"}
