"""The federation plugin's settings, read once per app so a bad value stops the start."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ctxcloud import ConfigError, SettingsReader, env_variable

DEFAULTS: dict[str, Any] = {
    # Every outbound call (discovery document, key set): connect and each read, seconds.
    "OIDC_HTTP_TIMEOUT": 5.0,
    # Plain-http issuers and key sets: None = allowed in development and testing only.
    "OIDC_ALLOW_HTTP": None,
    # Clock skew tolerated on exp, nbf and iat, seconds.
    "OIDC_LEEWAY": 60,
    # How long a fetched key set is trusted before it is fetched again, seconds.
    "OIDC_JWKS_TTL": 600,
    # Least time between two fetches of one key set caused by an unknown kid (or a failure).
    "OIDC_JWKS_REFETCH_COOLDOWN": 30,
}


@dataclass(frozen=True)
class OidcSettings:
    """Typed settings; `allow_http` already resolved against the environment."""

    http_timeout: float
    allow_http: bool
    leeway: float
    jwks_ttl: float
    refetch_cooldown: float

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> OidcSettings:
        read = SettingsReader(config, DEFAULTS)
        allow_http = read.value("OIDC_ALLOW_HTTP")
        if allow_http is None or allow_http == "":
            allow_http = config.get("ENV") != "production"
        elif isinstance(allow_http, str) and allow_http.lower() in ("true", "false"):
            allow_http = allow_http.lower() == "true"
        if not isinstance(allow_http, bool):
            raise ConfigError(f"{env_variable('OIDC_ALLOW_HTTP')} must be true or false")
        settings = cls(
            http_timeout=read.seconds("OIDC_HTTP_TIMEOUT"),
            allow_http=allow_http,
            leeway=read.seconds("OIDC_LEEWAY"),
            jwks_ttl=read.seconds("OIDC_JWKS_TTL"),
            refetch_cooldown=read.seconds("OIDC_JWKS_REFETCH_COOLDOWN"),
        )
        if settings.http_timeout <= 0:
            raise ConfigError(f"{env_variable('OIDC_HTTP_TIMEOUT')} must be positive")
        if settings.jwks_ttl <= 0:
            raise ConfigError(f"{env_variable('OIDC_JWKS_TTL')} must be positive")
        for name, value in (
            ("OIDC_LEEWAY", settings.leeway),
            ("OIDC_JWKS_REFETCH_COOLDOWN", settings.refetch_cooldown),
        ):
            if value < 0:
                raise ConfigError(f"{env_variable(name)} must not be negative")
        return settings
