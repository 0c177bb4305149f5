"""Credentials: a fixed bearer (API key, access token), or OAuth 2 client credentials whose
tokens are fetched, cached and refreshed."""

from __future__ import annotations

import base64
import threading
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

# A token is renewed this long before its expiry (at most a tenth of its lifetime), so a
# request never leaves with one that dies on the way.
REFRESH_MARGIN = 30.0


class Credential(Protocol):
    """What the client asks of a credential before each request."""

    #: Whether a 401 may be cured by getting a fresh token (then the request is tried again).
    refreshable: bool

    def headers(self) -> dict[str, str]: ...

    def invalidate(self) -> None: ...


@dataclass
class BearerCredential:
    """An API key or an access token, sent as `Authorization: Bearer`."""

    secret: str
    refreshable = False

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.secret}"}

    def invalidate(self) -> None:
        """A fixed credential cannot be renewed: the 401 is the caller's to see."""

    def __repr__(self) -> str:
        return "BearerCredential(secret=***)"


@dataclass(frozen=True)
class Token:
    access_token: str
    expires_at: float  # on the credential's monotonic clock
    scope: str


class ClientCredentials:
    """OAuth 2 client credentials (RFC 6749 4.4): a token is fetched when first needed, kept,
    fetched again shortly before `expires_in` runs out, and once more when the service answers
    401 to it (revoked, or the service's keys rotated). Thread-safe: one fetch at a time."""

    refreshable = True

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        fetch: Callable[[dict[str, str], dict[str, str]], dict[str, Any]],
        *,
        scope: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client_id = client_id
        self._secret = client_secret
        self._fetch = fetch
        self.scope = scope
        self._clock = clock
        self._token: Token | None = None
        self._lock = threading.Lock()
        self.fetches = 0

    def __repr__(self) -> str:
        return f"ClientCredentials(client_id={self.client_id!r}, client_secret=***)"

    def basic_authorization(self) -> str:
        """client_secret_basic: both halves form-encoded first (RFC 6749 2.3.1)."""
        pair = ":".join(urllib.parse.quote_plus(part) for part in (self.client_id, self._secret))
        return "Basic " + base64.b64encode(pair.encode()).decode("ascii")

    def token(self) -> Token:
        with self._lock:
            token = self._token
            if token is None or self._clock() >= token.expires_at:
                token = self._token = self._new_token()
            return token

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token().access_token}"}

    def invalidate(self) -> None:
        with self._lock:
            self._token = None

    def _new_token(self) -> Token:
        form = {"grant_type": "client_credentials"}
        if self.scope:
            form["scope"] = self.scope
        started = self._clock()
        answer = self._fetch(form, {"Authorization": self.basic_authorization()})
        self.fetches += 1
        lifetime = float(answer.get("expires_in") or 0)
        margin = min(REFRESH_MARGIN, lifetime / 10)
        return Token(
            access_token=answer["access_token"],
            expires_at=started + lifetime - margin,
            scope=answer.get("scope") or "",
        )
