"""The OAuth 2 endpoints: /api/v1/oauth/token, /introspect, /revoke, and the server's
metadata at /.well-known/oauth-authorization-server (RFC 8414).

Answered by Authlib (ctxcloud.plugins.auth_oauth.protocol) in the RFCs' own shapes: errors
are RFC 6749 §5.2 JSON (``{"error", "error_description"}``), not problem+json, so that any
OAuth 2 client library understands them. The client authenticates itself (HTTP Basic or
``client_id``/``client_secret`` in the form), so the routes are public to the request
pipeline; attempts are limited per client address and per client id.
"""

from __future__ import annotations

import flask
from authlib.oauth2.rfc6749.util import extract_basic_authorization
from flask.views import MethodView

from ctxcloud import Blueprint, client_address, limit, public, setting
from ctxcloud.plugins.auth_oauth import protocol
from ctxcloud.plugins.auth_oauth.protocol import AUTH_METHODS, GRANT_TYPE
from ctxcloud.plugins.auth_oauth.schemas import (
    IntrospectionSchema,
    MetadataSchema,
    OAuthErrorSchema,
    TokenParameterSchema,
    TokenRequestSchema,
    TokenResponseSchema,
)
from ctxcloud.plugins.auth_oauth.service import known_scopes

FORM = "application/x-www-form-urlencoded"
WWW_AUTHENTICATE = {
    "WWW-Authenticate": {
        "description": "`Basic` with the error, on `invalid_client`",
        "schema": {"type": "string"},
    }
}


def _error(error: str, description: str) -> dict:
    return {"error": error, "error_description": description}


INVALID_CLIENT = _error("invalid_client", "The client cannot authenticate")
INVALID_REQUEST = _error("invalid_request", 'Missing "token" in request.')


def attempts() -> str:
    """Client authentications allowed per window (``CTXCLOUD_RATE_LIMIT_OAUTH_TOKEN``)."""
    return setting("RATE_LIMIT_OAUTH_TOKEN")


def presented_client_id() -> str:
    """The client id an attempt names (Basic, read as Authlib reads it, or the form), to
    count guesses per client."""
    try:
        client_id, _ = extract_basic_authorization(flask.request.headers)
    except UnicodeDecodeError:
        return "-"
    if client_id:
        return client_id[:64]
    client_id = flask.request.form.get("client_id")
    return client_id[:64] if isinstance(client_id, str) and client_id else "-"


def _form_doc(schema: type) -> dict:
    """The form body, documented (Authlib reads it: no validation layer in between)."""
    return {"requestBody": {"required": True, "content": {FORM: {"schema": schema}}}}


def _limited(fn):
    fn = limit(attempts, key_func=presented_client_id, scope="oauth_client")(fn)
    return limit(attempts, key_func=client_address, scope="oauth_address")(fn)


blp = Blueprint(
    "oauth",
    __name__,
    url_prefix="/api/v1/oauth",
    description="OAuth 2 (RFC 6749 client credentials, RFC 7662 introspection, RFC 7009 "
    "revocation). Errors here are RFC 6749 §5.2 JSON, not problem+json.",
)


@blp.route("/token")
class TokenEndpoint(MethodView):
    @public
    @_limited
    @blp.doc(**_form_doc(TokenRequestSchema))
    @blp.response(
        200,
        TokenResponseSchema,
        headers={"Cache-Control": {"schema": {"type": "string"}, "description": "no-store"}},
    )
    @blp.alt_response(
        400,
        schema=OAuthErrorSchema,
        example=_error("invalid_scope", "The scope asks for more than the client holds."),
        description="invalid_request, invalid_scope, "
        "unsupported_grant_type or unauthorized_client (RFC 6749 §5.2)",
    )
    @blp.alt_response(
        401,
        schema=OAuthErrorSchema,
        headers=WWW_AUTHENTICATE,
        example=INVALID_CLIENT,
        description="invalid_client: unknown client, wrong secret, deleted client",
    )
    @blp.alt_response(429, response="RateLimited")
    def post(self):
        """Get an access token (client credentials)

        `grant_type=client_credentials`, the client authenticated by HTTP Basic
        (client_secret_basic) or by `client_id` and `client_secret` in the form
        (client_secret_post). An optional `scope` (space-separated permissions) narrows the
        token to part of the client's; asking for more is `invalid_scope`.
        """
        return protocol.server().create_token_response()


@blp.route("/introspect")
class IntrospectionEndpoint(MethodView):
    @public
    @_limited
    @blp.doc(**_form_doc(TokenParameterSchema))
    @blp.response(200, IntrospectionSchema)
    @blp.alt_response(
        400, schema=OAuthErrorSchema, example=INVALID_REQUEST, description="invalid_request"
    )
    @blp.alt_response(
        401,
        schema=OAuthErrorSchema,
        headers=WWW_AUTHENTICATE,
        example=INVALID_CLIENT,
        description="invalid_client",
    )
    @blp.alt_response(429, response="RateLimited")
    def post(self):
        """Introspect a token (RFC 7662)

        For an OAuth client of the token's tenant: `{"active": true, ...}` for a live
        client-credentials token, `{"active": false}` for anything else (unknown, expired,
        revoked, another tenant's, not a client-credentials token).
        """
        return protocol.server().create_endpoint_response("introspection")


@blp.route("/revoke")
class RevocationEndpoint(MethodView):
    @public
    @_limited
    @blp.doc(**_form_doc(TokenParameterSchema))
    @blp.response(200, description="Revoked, or nothing to revoke (RFC 7009 §2.2)")
    @blp.alt_response(
        400, schema=OAuthErrorSchema, example=INVALID_REQUEST, description="invalid_request"
    )
    @blp.alt_response(
        401,
        schema=OAuthErrorSchema,
        headers=WWW_AUTHENTICATE,
        example=INVALID_CLIENT,
        description="invalid_client",
    )
    @blp.alt_response(429, response="RateLimited")
    def post(self):
        """Revoke a token (RFC 7009)

        For an OAuth client of the token's tenant. The token is refused at once on every
        server process. An unknown token, or another tenant's, is answered 200 all the same
        and nothing changes.
        """
        return protocol.server().create_endpoint_response("revocation")


metadata_blp = Blueprint(
    "oauth_metadata",
    __name__,
    url_prefix="/.well-known/oauth-authorization-server",
    description="OAuth 2 authorization server metadata (RFC 8414), no authentication.",
)


def issuer() -> str:
    """``CTXCLOUD_OAUTH_ISSUER``; else ``JWT_ISSUER`` when it is a URL; else this request's
    root URL (as the proxy reports it)."""
    configured = setting("OAUTH_ISSUER") or flask.current_app.config["JWT_ISSUER"]
    if str(configured).startswith(("https://", "http://")):
        return str(configured).rstrip("/")
    return flask.request.url_root.rstrip("/")


def metadata() -> dict:
    base = issuer()
    return {
        "issuer": base,
        "token_endpoint": f"{base}/api/v1/oauth/token",
        "introspection_endpoint": f"{base}/api/v1/oauth/introspect",
        "revocation_endpoint": f"{base}/api/v1/oauth/revoke",
        "jwks_uri": f"{base}/.well-known/jwks.json",
        "scopes_supported": sorted(known_scopes()),
        "response_types_supported": [],
        "grant_types_supported": [GRANT_TYPE],
        "token_endpoint_auth_methods_supported": AUTH_METHODS,
        "introspection_endpoint_auth_methods_supported": AUTH_METHODS,
        "revocation_endpoint_auth_methods_supported": AUTH_METHODS,
        "service_documentation": f"{base}/api/v1/docs",
    }


@metadata_blp.route("")
class Metadata(MethodView):
    @public
    @metadata_blp.response(
        200,
        MetadataSchema,
        headers={"Cache-Control": {"schema": {"type": "string"}, "description": "public"}},
    )
    def get(self):
        """Authorization server metadata (RFC 8414)

        Where the token, introspection, revocation and key-set endpoints are, and what they
        support. `issuer` is `CTXCLOUD_OAUTH_ISSUER` when set (set it to the service's
        public URL behind a proxy).
        """
        return metadata(), 200, {"Cache-Control": "public, max-age=3600"}
