"""The OAuth 2 protocol, by Authlib: the client-credentials grant (RFC 6749 §4.4), token
introspection (RFC 7662), revocation (RFC 7009) and the server's metadata (RFC 8414).

Authlib parses the requests, authenticates the client (HTTP Basic or the form's
``client_id``/``client_secret``) and answers in the RFCs' shapes, errors included (RFC 6749
§5.2 JSON, not problem+json). This module gives it our clients and tokens: access tokens
are JWTs issued through flask-jwt-extended, so they are signed with the service's active
signing key and verify against ``/.well-known/jwks.json`` like every token it signs.
"""

from __future__ import annotations

import datetime
import time
from typing import Any

import flask
import flask_jwt_extended
import jwt
from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import (
    ClientMixin,
    InvalidClientError,
    InvalidScopeError,
    TokenMixin,
    grants,
)
from authlib.oauth2.rfc6749.util import scope_to_list
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from flask_jwt_extended.exceptions import JWTExtendedException

from ctxcloud import StashKey, setting, stash
from ctxcloud.plugins.auth_oauth import service
from ctxcloud.plugins.auth_oauth.client_secrets import secret_matches
from ctxcloud.plugins.auth_oauth.models import OAuthClient, OAuthToken

AUTH_METHODS = ["client_secret_basic", "client_secret_post"]
GRANT_TYPE = "client_credentials"
# The `type` claim that marks a token of this grant (a login's tokens say access/refresh).
TOKEN_TYPE = "client_credentials"  # noqa: S105  # nosec B105: a claim value, no secret
MAX_TOKEN_LENGTH = 4096
# What RFC 6749 §5.2's codes mean, where Authlib gives no description of its own.
ERROR_DESCRIPTIONS = {
    "unsupported_grant_type": "The only grant type is client_credentials, sent as a form.",
    "invalid_request": "The request is missing a parameter or repeats one.",
    "invalid_scope": "The scope is unknown or beyond the client's.",
    "unauthorized_client": "The client may not use this grant type.",
}
SERVER = StashKey["AuthorizationServer"]("auth_oauth.server")


def token_lifetime() -> int:
    """Seconds a client-credentials token lives (``CTXCLOUD_JWT_CLIENT_TOKEN_EXPIRES``)."""
    return int(setting("JWT_CLIENT_TOKEN_EXPIRES"))


class Client(ClientMixin):
    """An OAuthClient row as Authlib asks about it: confidential, client credentials only."""

    def __init__(self, row: OAuthClient) -> None:
        self.row = row
        self.client_id = row.client_id
        self.tenant_id = row.tenant_id
        self.scopes = frozenset(row.scopes)

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> None:
        return None

    def get_allowed_scope(self, scope: str | None) -> str:
        if not scope:
            return " ".join(sorted(self.scopes))
        return " ".join(s for s in scope_to_list(scope) if s in self.scopes)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return False

    def check_client_secret(self, client_secret: str) -> bool:
        return secret_matches(client_secret, self.row.secret_hash)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in AUTH_METHODS

    def check_response_type(self, response_type: str) -> bool:
        return False

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == GRANT_TYPE


class Token(TokenMixin):
    """An issued access token as introspection and revocation see it: its verified claims and
    its record."""

    def __init__(self, claims: dict[str, Any], record: OAuthToken) -> None:
        self.claims = claims
        self.record = record

    def check_client(self, client: Client) -> bool:
        return client.tenant_id == self.record.tenant_id

    def get_scope(self) -> str:
        return self.claims["scope"]

    def get_expires_in(self) -> int:
        return int(self.claims["exp"] - self.claims["iat"])

    def is_expired(self) -> bool:
        return time.time() >= self.claims["exp"]

    def is_revoked(self) -> bool:
        if self.record.revoked_at is not None:
            return True
        client = service.find_client(self.record.client_id)
        return client is None or client.tenant_id != self.record.tenant_id


def _query_client(client_id: str) -> Client | None:
    row = service.find_client(client_id)
    return None if row is None else Client(row)


def verified_claims(token: Any) -> dict[str, Any] | None:
    """The claims of a genuine, unexpired client-credentials token of ours, else None."""
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
        return None
    try:
        claims = flask_jwt_extended.decode_token(token)
    except (jwt.PyJWTError, JWTExtendedException):
        return None
    if claims.get("type") != TOKEN_TYPE:
        return None
    if not all(isinstance(claims.get(name), str) for name in ("sub", "tid", "jti", "scope")):
        return None
    return claims


def _query_token(token_string: str, token_type_hint: str | None) -> Token | None:
    """Our access tokens only (there are no refresh tokens); anything else is unknown."""
    claims = verified_claims(token_string)
    if claims is None:
        return None
    record = service.token_record(claims["jti"], claims["tid"])
    return None if record is None else Token(claims, record)


class ClientCredentials(grants.ClientCredentialsGrant):
    """RFC 6749 §4.4, where a requested scope must lie within the client's (else
    ``invalid_scope``) and no scope means all of the client's."""

    TOKEN_ENDPOINT_AUTH_METHODS = AUTH_METHODS

    def validate_requested_scope(self) -> None:
        requested = set(scope_to_list(self.request.payload.scope) or [])
        if not requested <= self.request.client.scopes:  # the request's words are not echoed
            raise InvalidScopeError(description="The scope asks for more than the client holds.")


class Introspection(IntrospectionEndpoint):
    """RFC 7662, for a client of the token's tenant: another tenant's token is inactive."""

    CLIENT_AUTH_METHODS = AUTH_METHODS

    def query_token(self, token_string: str, token_type_hint: str | None) -> Token | None:
        return _query_token(token_string, token_type_hint)

    def check_permission(self, token: Token, client: Client, request: Any) -> bool:
        return token.check_client(client)

    def introspect_token(self, token: Token) -> dict[str, Any]:
        claims = token.claims
        return {
            "active": True,
            "scope": claims["scope"],
            "client_id": claims["sub"],
            "token_type": "Bearer",  # nosec B105: the OAuth 2 token type's name
            "exp": claims["exp"],
            "iat": claims["iat"],
            "nbf": claims.get("nbf", claims["iat"]),
            "sub": claims["sub"],
            "aud": claims.get("aud"),
            "iss": claims.get("iss"),
            "jti": claims["jti"],
        }


class Revocation(RevocationEndpoint):
    """RFC 7009, for a client of the token's tenant. A token that is unknown, not ours or of
    another tenant is answered 200 all the same (RFC 7009 §2.2) and nothing changes."""

    CLIENT_AUTH_METHODS = AUTH_METHODS

    def authenticate_token(self, request: Any, client: Client) -> Token | None:
        self.check_params(request, client)
        token = self.query_token(request.form["token"], request.form.get("token_type_hint"))
        return token if token is not None and token.check_client(client) else None

    def query_token(self, token_string: str, token_type_hint: str | None) -> Token | None:
        return _query_token(token_string, token_type_hint)

    def revoke_token(self, token: Token, request: Any) -> None:
        service.revoke_token(token.record)


class Server(AuthorizationServer):
    """Authlib's Flask server; ``invalid_client`` is always 401 with ``WWW-Authenticate``,
    whichever way the client authenticated (RFC 6749 §5.2 allows it, the API promises it)."""

    def authenticate_client(self, request: Any, methods: Any, endpoint: str = "token") -> Any:
        """Authlib's client authentication, where HTTP Basic credentials that are not UTF-8
        are the client failing to authenticate (Authlib lets the decoding error out)."""
        try:
            return super().authenticate_client(request, methods, endpoint)
        except UnicodeDecodeError:
            raise InvalidClientError(status_code=401) from None

    def handle_response(self, status_code: int, payload: Any, headers: Any) -> flask.Response:
        """JSON as the rest of the API writes it (compact), with the RFC's headers."""
        if isinstance(payload, dict):
            response = flask.current_app.json.response(payload)
            response.status_code = status_code
            for name, value in headers:
                response.headers[name] = value  # one Content-Type, not two
            return response
        return flask.Response(payload, status=status_code, headers=headers)

    def handle_error_response(self, request: Any, error: Any) -> flask.Response:
        if error.error == "unsupported_token_type":
            error.status_code = 400  # RFC 7009 §2.2.1 (Authlib answers 401)
        if error.error == "invalid_client":
            error.status_code = 401
            # One answer for an unknown client, a wrong secret and a deleted client.
            error.description = "The client could not be authenticated."
        error.description = error.description or ERROR_DESCRIPTIONS.get(error.error, error.error)
        return super().handle_error_response(request, error)


def _issue(
    grant_type: str,
    client: Client,
    user: Any = None,
    scope: str | None = None,
    expires_in: int | None = None,
    include_refresh_token: bool = False,
) -> dict[str, Any]:
    """A JWT access token through flask-jwt-extended: signed with the active signing key."""
    granted = client.get_allowed_scope(scope)
    lifetime = token_lifetime()
    access_token = flask_jwt_extended.create_access_token(
        identity=client.client_id,
        additional_claims={
            "type": TOKEN_TYPE,
            "tid": client.tenant_id,
            "scope": granted,
            "client_id": client.client_id,
        },
        expires_delta=datetime.timedelta(seconds=lifetime),
    )
    return {
        "access_token": access_token,
        # bandit B105 reads "token" as a password: this is the OAuth 2 token type's name.
        "token_type": "Bearer",  # nosec B105
        "expires_in": lifetime,
        "scope": granted,
    }


def _save_token(token: dict[str, Any], request: Any) -> None:
    """Record the token just issued (we signed it a moment ago: its claims need no check)."""
    claims = jwt.decode(token["access_token"], options={"verify_signature": False})
    service.record_token(claims)


def build_server(app: flask.Flask) -> Server:
    server = Server(app, query_client=_query_client, save_token=_save_token)
    server.register_grant(ClientCredentials)
    server.register_token_generator(GRANT_TYPE, _issue)
    server.register_endpoint(Introspection)
    server.register_endpoint(Revocation)
    stash(app)[SERVER] = server
    return server


def server() -> Server:
    return stash()[SERVER]
