"""/api/v1/auth/token, /refresh and /revoke: user logins as JWTs."""

from __future__ import annotations

import flask
from flask.views import MethodView

from ctxcloud import (
    Blueprint,
    Unauthorized,
    client_address,
    current_actor,
    limit,
    public,
    requires_authentication,
    setting,
)
from ctxcloud.plugins.users import logins as service
from ctxcloud.plugins.users.login_schemas import LoginSchema, TokenSchema
from ctxcloud.plugins.users.service import normalize_username
from ctxcloud.plugins.users.verify import presented_token

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
BEARER_TOKEN = [{"bearerAuth": []}]


def login_attempts() -> str:
    """Login attempts allowed per window (``CTXCLOUD_RATE_LIMIT_LOGIN``, read per request)."""
    return setting("RATE_LIMIT_LOGIN")


def login_name() -> str:
    """The tenant and username a login attempt names, as the login reads them (one budget
    however the name is cased); a body that names none counts under "-"."""
    body = flask.request.get_json(silent=True)
    tenant = body.get("tenant") if isinstance(body, dict) else None
    username = body.get("username") if isinstance(body, dict) else None
    if not isinstance(tenant, str) or not isinstance(username, str):
        return "-"
    if not (len(tenant) <= 63 and len(username) <= 64):  # refused by the schema anyway
        return "-"
    return f"{tenant.lower()}:{normalize_username(username)}"


blp = Blueprint(
    "auth",
    __name__,
    url_prefix="/api/v1/auth",
    description="Log in with a password; refresh and revoke the tokens.",
)


@blp.route("/token")
class Token(MethodView):
    @public
    # Guessing one user's password from many addresses is slowed as much as from one.
    @limit(login_attempts, key_func=client_address, scope="address")
    @limit(login_attempts, key_func=login_name, scope="username")
    @blp.arguments(LoginSchema)
    @blp.response(200, TokenSchema, headers={"Cache-Control": {"schema": {"type": "string"}}})
    @blp.alt_response(401, response="Unauthorized")
    @blp.alt_response(403, response="Forbidden", description="The tenant is suspended")
    @blp.alt_response(422, response="ValidationError")
    @blp.alt_response(429, response="RateLimited")
    def post(self, data):
        """Log in

        One 401 for an unknown tenant, an unknown or disabled user and a wrong password.
        Attempts are limited per client address and per username (429 with Retry-After).
        """
        return service.login(data["tenant"], data["username"], data["password"]), 200, NO_STORE


@blp.route("/refresh")
class Refresh(MethodView):
    @blp.doc(security=BEARER_TOKEN)
    @public
    @blp.response(200, TokenSchema)
    @blp.alt_response(401, response="Unauthorized")
    @blp.alt_response(403, response="Forbidden", description="The tenant is suspended")
    @blp.alt_response(429, response="RateLimited")
    def post(self):
        """Rotate tokens

        Send the refresh token as `Authorization: Bearer`. Answers a new access token and a
        new refresh token; the one sent is dead from now on. Sending a dead refresh token
        again revokes every token of that login (401).
        """
        token = presented_token(flask.request)
        if token is None:
            raise Unauthorized()
        return service.refresh(token), 200, NO_STORE


@blp.route("/revoke")
class Revoke(MethodView):
    @blp.doc(security=BEARER_TOKEN)
    @requires_authentication
    @blp.response(204)
    @blp.alt_response(400, response="BadRequest", description="Not a user's access token")
    def post(self):
        """Log out

        Revokes the login of the access token sent: it and its refresh token stop working
        at once, on every server process.
        """
        service.revoke(current_actor())
