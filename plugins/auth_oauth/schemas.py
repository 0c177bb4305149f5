"""Request and response shapes of the OAuth clients API and of the OAuth 2 endpoints."""

from __future__ import annotations

import marshmallow as ma
from marshmallow import validate

from ctxcloud import Timestamp
from ctxcloud.plugins.auth_oauth.client_secrets import CLIENT_ID_EXAMPLE, SECRET_EXAMPLE

# An example for the documentation (truncated), no secret.
TOKEN_EXAMPLE = "eyJhbGciOiJFUzI1NiIsImtpZCI6IjIwMjYxMjA2LTFhMmIzYzRkIiwidHlwIjoiSldUIn0..."  # noqa: S105  # nosec B105


class ClientSchema(ma.Schema):
    client_id = ma.fields.String(
        dump_only=True,
        metadata={"description": "The client's public id", "example": CLIENT_ID_EXAMPLE},
    )
    name = ma.fields.String(
        dump_only=True, metadata={"description": "What the client is", "example": "nightly-ci"}
    )
    scopes = ma.fields.List(
        ma.fields.String(),
        dump_only=True,
        metadata={
            "description": "Permissions the client's tokens may hold",
            "example": ["context:read", "context:write"],
        },
    )
    project_ids = ma.fields.List(
        ma.fields.String(),
        dump_only=True,
        allow_none=True,
        metadata={"description": "null: every project", "example": None},
    )
    created_by = ma.fields.String(
        dump_only=True,
        metadata={
            "description": "Who created it (kind:id, or cli for the command line)",
            "example": "user:usr_q2m8x7c1n4b6z9aak5v3",
        },
    )
    created_at = Timestamp(dump_only=True, metadata={"description": "When it was created"})
    secret_rotated_at = Timestamp(
        dump_only=True,
        allow_none=True,
        metadata={"description": "When its secret was last replaced; null: never"},
    )


class ClientCreatedSchema(ClientSchema):
    client_secret = ma.fields.String(
        dump_only=True,
        metadata={
            "description": "The secret: shown this once, stored only as a keyed hash",
            "example": SECRET_EXAMPLE,
        },
    )


class ClientCreateSchema(ma.Schema):
    name = ma.fields.String(
        required=True,
        validate=validate.Length(min=1, max=100),
        metadata={"description": "What the client is", "example": "nightly-ci"},
    )
    scopes = ma.fields.List(
        ma.fields.String(validate=validate.Length(min=1, max=100)),
        required=True,
        validate=validate.Length(min=1, max=64),
        metadata={
            "description": "Permissions its tokens may hold; never more than the creator holds",
            "example": ["context:read", "context:write"],
        },
    )
    project_ids = ma.fields.List(
        ma.fields.String(validate=validate.Length(min=1, max=64)),
        allow_none=True,
        validate=validate.Length(max=1000),
        metadata={
            "description": "Restrict its tokens to these projects (others are 404 to them)",
            "example": ["prj_k5v3q2m8x7c1n4b6z9aa"],
        },
    )


class SecretRotationSchema(ma.Schema):
    revoke_tokens = ma.fields.Boolean(
        load_default=False,
        metadata={
            "description": "Also revoke every token issued so far (a leaked secret); by "
            "default they live until they expire",
            "example": False,
        },
    )


# The OAuth 2 endpoints' own shapes (RFC 6749, 7662, 7009, 8414): documented here, answered
# by Authlib.


class TokenRequestSchema(ma.Schema):
    grant_type = ma.fields.String(
        required=True,
        metadata={"description": "`client_credentials`", "example": "client_credentials"},
    )
    scope = ma.fields.String(
        metadata={
            "description": "Space-separated permissions, within the client's; absent: all of them",
            "example": "context:read",
        }
    )
    client_id = ma.fields.String(
        metadata={
            "description": "With `client_secret`, instead of HTTP Basic (client_secret_post)",
            "example": CLIENT_ID_EXAMPLE,
        }
    )
    client_secret = ma.fields.String(
        metadata={
            "description": "The client's secret (client_secret_post)",
            "example": SECRET_EXAMPLE,
        }
    )


class TokenResponseSchema(ma.Schema):
    access_token = ma.fields.String(
        metadata={
            "description": "A JWT signed with the service's active key",
            "example": TOKEN_EXAMPLE,
        }
    )
    token_type = ma.fields.String(metadata={"description": "`Bearer`", "example": "Bearer"})
    expires_in = ma.fields.Integer(
        metadata={"description": "Seconds the token lives", "example": 3600}
    )
    scope = ma.fields.String(
        metadata={"description": "The permissions it holds", "example": "context:read"}
    )


class OAuthErrorSchema(ma.Schema):
    error = ma.fields.String(
        metadata={
            "description": "RFC 6749 §5.2: invalid_request, invalid_client, invalid_grant, "
            "invalid_scope, unauthorized_client, unsupported_grant_type (or, at the "
            "introspection and revocation endpoints, unsupported_token_type)",
            "example": "invalid_client",
        }
    )
    error_description = ma.fields.String(
        metadata={"description": "For people, not programs", "example": "Invalid client"}
    )


class TokenParameterSchema(ma.Schema):
    token = ma.fields.String(
        required=True, metadata={"description": "The access token", "example": TOKEN_EXAMPLE}
    )
    token_type_hint = ma.fields.String(
        metadata={"description": "`access_token` (the only kind issued)", "example": "access_token"}
    )
    client_id = ma.fields.String(
        metadata={
            "description": "client_secret_post, instead of HTTP Basic",
            "example": CLIENT_ID_EXAMPLE,
        }
    )
    client_secret = ma.fields.String(
        metadata={"description": "client_secret_post", "example": SECRET_EXAMPLE}
    )


class IntrospectionSchema(ma.Schema):
    active = ma.fields.Boolean(
        metadata={
            "description": "false: unknown, expired, revoked, or of another tenant",
            "example": True,
        }
    )
    scope = ma.fields.String(
        metadata={
            "description": "Space-separated permissions the token holds",
            "example": "context:read",
        }
    )
    client_id = ma.fields.String(
        metadata={"description": "The client the token was issued to", "example": CLIENT_ID_EXAMPLE}
    )
    token_type = ma.fields.String(metadata={"description": "`Bearer`", "example": "Bearer"})
    exp = ma.fields.Integer(
        metadata={"description": "Expiry (seconds since the epoch)", "example": 1796601600}
    )
    iat = ma.fields.Integer(
        metadata={"description": "Issued at (seconds since the epoch)", "example": 1796598000}
    )
    nbf = ma.fields.Integer(
        metadata={
            "description": "Not valid before (seconds since the epoch)",
            "example": 1796598000,
        }
    )
    sub = ma.fields.String(
        metadata={"description": "The client's id", "example": CLIENT_ID_EXAMPLE}
    )
    aud = ma.fields.String(
        metadata={"description": "The audience: this service's API", "example": "ctxcloud-api"}
    )
    iss = ma.fields.String(
        metadata={"description": "The issuer: this service", "example": "ctxcloud"}
    )
    jti = ma.fields.String(
        metadata={
            "description": "The token's id",
            "example": "6f1c1f0e-3b9a-4a8e-9a0e-2f7d1c2b3a4d",
        }
    )


class MetadataSchema(ma.Schema):
    issuer = ma.fields.String(
        metadata={
            "description": "The authorization server's issuer identifier (a URL)",
            "example": "https://ctx.example.com",
        }
    )
    token_endpoint = ma.fields.String(
        metadata={
            "description": "Where to get tokens",
            "example": "https://ctx.example.com/api/v1/oauth/token",
        }
    )
    introspection_endpoint = ma.fields.String(
        metadata={
            "description": "RFC 7662 token introspection",
            "example": "https://ctx.example.com/api/v1/oauth/introspect",
        }
    )
    revocation_endpoint = ma.fields.String(
        metadata={
            "description": "RFC 7009 token revocation",
            "example": "https://ctx.example.com/api/v1/oauth/revoke",
        }
    )
    jwks_uri = ma.fields.String(
        metadata={
            "description": "The public keys of every token the service signs",
            "example": "https://ctx.example.com/.well-known/jwks.json",
        }
    )
    scopes_supported = ma.fields.List(
        ma.fields.String(),
        metadata={"description": "The permissions a client may hold", "example": ["context:read"]},
    )
    response_types_supported = ma.fields.List(
        ma.fields.String(),
        metadata={"description": "None: there is no authorization endpoint", "example": []},
    )
    grant_types_supported = ma.fields.List(
        ma.fields.String(),
        metadata={
            "description": "Grant types the token endpoint takes",
            "example": ["client_credentials"],
        },
    )
    token_endpoint_auth_methods_supported = ma.fields.List(
        ma.fields.String(),
        metadata={
            "description": "How a client authenticates at the token endpoint",
            "example": ["client_secret_basic", "client_secret_post"],
        },
    )
    introspection_endpoint_auth_methods_supported = ma.fields.List(
        ma.fields.String(),
        metadata={
            "description": "How a client authenticates to introspect",
            "example": ["client_secret_basic", "client_secret_post"],
        },
    )
    revocation_endpoint_auth_methods_supported = ma.fields.List(
        ma.fields.String(),
        metadata={
            "description": "How a client authenticates to revoke",
            "example": ["client_secret_basic", "client_secret_post"],
        },
    )
    service_documentation = ma.fields.String(
        metadata={
            "description": "The API's interactive documentation",
            "example": "https://ctx.example.com/api/v1/docs",
        }
    )
