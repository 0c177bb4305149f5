"""Request and response shapes of the identity providers API and of its dry run."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import validate

from ctxcloud import ROLES, Timestamp
from ctxcloud.plugins.auth_oidc.models import AUDIENCE_MAX, ISSUER_MAX
from ctxcloud.plugins.auth_oidc.tokens import ASYMMETRIC_ALGORITHMS, DEFAULT_ALGORITHMS

ISSUER_EXAMPLE = "https://kc.example.com/realms/acme"
JWKS_EXAMPLE = "https://kc.example.com/realms/acme/protocol/openid-connect/certs"
RULE_EXAMPLE = {"claim": "groups", "contains": "ctx-admins", "role": "admin"}
MAX_RULES = 100


class ClaimRuleSchema(ma.Schema):
    # Exactly one of equals and contains (422 otherwise): the document says so too.
    OPENAPI_KEYWORDS = {
        "oneOf": [{"required": ["equals"]}, {"required": ["contains"]}],
        "example": RULE_EXAMPLE,
    }

    claim = ma.fields.String(
        required=True,
        validate=validate.Length(min=1, max=256),
        metadata={
            "description": "The claim's name exactly as the token has it; a namespaced URL "
            "(`https://acme.example/groups`) is one name",
            "example": "groups",
        },
    )
    equals = ma.fields.String(
        validate=validate.Length(min=1, max=512),
        metadata={
            "description": "Matches a string claim equal to this",
            "example": "engineering",
        },
    )
    contains = ma.fields.String(
        validate=validate.Length(min=1, max=512),
        metadata={
            "description": "Matches an array claim holding this (or a string claim equal to it)",
            "example": "ctx-admins",
        },
    )
    role = ma.fields.String(
        required=True,
        validate=validate.OneOf(ROLES),
        metadata={
            "description": "The role a match gives: " + ", ".join(ROLES),
            "example": "admin",
        },
    )

    @ma.validates_schema
    def _one_test(self, data, **kwargs):
        if ("equals" in data) == ("contains" in data):
            raise ma.ValidationError("Give exactly one of equals and contains.", "_schema")


class IdentityProviderPutSchema(ma.Schema):
    issuer = ma.fields.String(
        required=True,
        validate=validate.Length(min=1, max=ISSUER_MAX),
        metadata={
            "description": "The provider's issuer, exactly as its tokens' `iss` says it "
            "(https; plain http only where CTXCLOUD_OIDC_ALLOW_HTTP allows it)",
            "example": ISSUER_EXAMPLE,
        },
    )
    audiences = ma.fields.List(
        ma.fields.String(validate=validate.Length(min=1, max=AUDIENCE_MAX)),
        required=True,
        validate=validate.Length(min=1, max=20),
        metadata={
            "description": "Accepted `aud` values (the client id or API identifier the "
            "provider puts in tokens for this service); each (issuer, audience) pair belongs "
            "to one tenant only",
            "example": ["ctxcloud"],
        },
    )
    jwks_uri = ma.fields.String(
        allow_none=True,
        validate=validate.Length(min=1, max=2048),
        metadata={
            "description": "The provider's key set; absent or null: read from the issuer's "
            "discovery document (`{issuer}/.well-known/openid-configuration`) now",
            "example": JWKS_EXAMPLE,
        },
    )
    algorithms = ma.fields.List(
        ma.fields.String(validate=validate.OneOf(ASYMMETRIC_ALGORITHMS)),
        validate=validate.Length(min=1, max=len(ASYMMETRIC_ALGORITHMS)),
        metadata={
            "description": "Signature algorithms accepted (asymmetric only: never none or "
            "HS*); default " + ", ".join(DEFAULT_ALGORITHMS),
            "example": list(DEFAULT_ALGORITHMS),
        },
    )
    subject_claim = ma.fields.String(
        validate=validate.Length(min=1, max=256),
        metadata={
            "description": "The claim naming the person (the federated actor's id); default `sub`",
            "example": "sub",
        },
    )
    claim_rules = ma.fields.List(
        ma.fields.Nested(ClaimRuleSchema),
        required=True,
        validate=validate.Length(max=MAX_RULES),
        metadata={
            "description": "Ordered rules; the first that matches gives the role",
            "example": [
                RULE_EXAMPLE,
                {"claim": "groups", "contains": "ctx-writers", "role": "member"},
            ],
        },
    )
    default_role = ma.fields.String(
        allow_none=True,
        validate=validate.OneOf(ROLES),
        metadata={
            "description": "The role when no rule matches; null or absent: refuse the token",
            "example": "viewer",
        },
    )


class IdentityProviderSchema(ma.Schema):
    id = ma.fields.String(
        dump_only=True,
        metadata={"description": "Opaque provider id", "example": "idp_m8x7c1n4b6z9aak5v3q2"},
    )
    name = ma.fields.String(
        dump_only=True,
        metadata={"description": "The provider's name in this tenant", "example": "keycloak"},
    )
    issuer = ma.fields.String(
        dump_only=True, metadata={"description": "The issuer", "example": ISSUER_EXAMPLE}
    )
    audiences = ma.fields.List(
        ma.fields.String(),
        dump_only=True,
        metadata={"description": "Accepted audiences", "example": ["ctxcloud"]},
    )
    jwks_uri = ma.fields.String(
        dump_only=True,
        metadata={"description": "Where the keys are fetched from", "example": JWKS_EXAMPLE},
    )
    jwks_uri_discovered = ma.fields.Boolean(
        dump_only=True,
        metadata={
            "description": "True: read from the discovery document at registration",
            "example": True,
        },
    )
    algorithms = ma.fields.List(
        ma.fields.String(),
        dump_only=True,
        metadata={"description": "Accepted algorithms", "example": list(DEFAULT_ALGORITHMS)},
    )
    subject_claim = ma.fields.String(
        dump_only=True, metadata={"description": "The subject's claim", "example": "sub"}
    )
    claim_rules = ma.fields.List(
        ma.fields.Nested(ClaimRuleSchema),
        dump_only=True,
        metadata={"description": "Ordered claim rules", "example": [RULE_EXAMPLE]},
    )
    default_role = ma.fields.String(
        dump_only=True,
        allow_none=True,
        metadata={"description": "Role when no rule matches; null: refused", "example": None},
    )
    created_by = ma.fields.String(
        dump_only=True,
        metadata={"description": "Who registered it", "example": "user:usr_q2m8x7c1n4b6z9aak5v3"},
    )
    created_at = Timestamp(dump_only=True, metadata={"description": "When it was registered"})
    updated_at = Timestamp(dump_only=True, metadata={"description": "When it last changed"})


class DryRunSchema(ma.Schema):
    OPENAPI_KEYWORDS = {
        "oneOf": [{"required": ["claims"]}, {"required": ["token"]}],
        "example": {"claims": {"sub": "f3a1c2d4", "groups": ["ctx-admins"]}},
    }

    claims = ma.fields.Dict(
        keys=ma.fields.String(),
        metadata={
            "description": "Claims to judge as given (nothing verified)",
            "example": {"sub": "f3a1c2d4", "groups": ["ctx-admins"]},
        },
    )
    token = ma.fields.String(
        validate=validate.Length(min=1, max=16 * 1024),
        metadata={
            "description": "A token to verify fully against this provider, then judge",
            "example": "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiJmM2ExIn0.c2ln",
        },
    )

    @ma.validates_schema
    def _one_input(self, data, **kwargs):
        if ("claims" in data) == ("token" in data):
            raise ma.ValidationError("Give exactly one of claims and token.", "_schema")


class DryRunResultSchema(ma.Schema):
    provider = ma.fields.String(metadata={"description": "The provider", "example": "keycloak"})
    verified = ma.fields.Boolean(
        metadata={"description": "True: a token was given and verified", "example": True}
    )
    issuer = ma.fields.String(
        metadata={"description": "The provider's issuer", "example": ISSUER_EXAMPLE}
    )
    subject = ma.fields.String(
        allow_none=True,
        metadata={"description": "The subject claim's value; null: missing", "example": "f3a1"},
    )
    actor = ma.fields.String(
        allow_none=True,
        metadata={
            "description": "The actor a sign-in would be (`federated:subject@issuer`); null: "
            "refused",
            "example": f"federated:f3a1@{ISSUER_EXAMPLE}",
        },
    )
    decision = ma.fields.String(
        metadata={
            "description": "`rule` (a rule matched), `default` (the default role) or `refused`",
            "example": "rule",
        }
    )
    role = ma.fields.String(
        allow_none=True, metadata={"description": "The role; null: refused", "example": "admin"}
    )
    permissions = ma.fields.List(
        ma.fields.String(),
        metadata={"description": "What the role may do", "example": ["context:read"]},
    )
    rule_index = ma.fields.Integer(
        allow_none=True,
        metadata={"description": "The matching rule's position (from 0); null: none", "example": 0},
    )
    rule = ma.fields.Nested(
        ClaimRuleSchema,
        allow_none=True,
        metadata={"description": "The matching rule; null: none"},
    )
    reason = ma.fields.String(
        allow_none=True,
        metadata={"description": "Why it was refused; null: accepted", "example": None},
    )
