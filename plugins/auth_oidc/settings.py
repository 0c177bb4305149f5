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
    # Issuers and key sets on addresses that are not public (loopback, private, link-local,
    # the cloud metadata address...): None = allowed in development and testing only.
    "OIDC_ALLOW_PRIVATE_ADDRESSES": None,
    # Clock skew tolerated on exp, nbf and iat, seconds.
    "OIDC_LEEWAY": 60,
    # How long a fetched key set is trusted before it is fetched again, seconds.
    "OIDC_JWKS_TTL": 600,
    # Least time between two fetches of one key set caused by an unknown kid (or a failure).
    "OIDC_JWKS_REFETCH_COOLDOWN": 30,
}


@dataclass(frozen=True)
class OidcSettings:
    """Typed settings; `allow_http` and `allow_private_addresses` already resolved against
    the environment."""

    http_timeout: float
    allow_http: bool
    allow_private_addresses: bool
    leeway: float
    jwks_ttl: float
    refetch_cooldown: float

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> OidcSettings:
        read = SettingsReader(config, DEFAULTS)
        settings = cls(
            http_timeout=read.seconds("OIDC_HTTP_TIMEOUT"),
            allow_http=_outside_production(read, config, "OIDC_ALLOW_HTTP"),
            allow_private_addresses=_outside_production(
                read, config, "OIDC_ALLOW_PRIVATE_ADDRESSES"
            ),
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


def _outside_production(read: SettingsReader, config: Mapping[str, Any], name: str) -> bool:
    """A true/false setting whose default (unset or empty) is true everywhere but production:
    a local test provider works out of the box, a production server stays strict."""
    value = read.value(name)
    if value is None or value == "":
        return config.get("ENV") != "production"
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if not isinstance(value, bool):
        raise ConfigError(f"{env_variable(name)} must be true or false")
    return value
