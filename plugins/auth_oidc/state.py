"""What the plugin builds once per app: its settings and this process's key sets."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import flask

from ctxcloud import StashKey, stash
from ctxcloud.plugins.auth_oidc.fetch import fetch_json
from ctxcloud.plugins.auth_oidc.keysets import KeySets
from ctxcloud.plugins.auth_oidc.settings import OidcSettings


@dataclass
class Federation:
    settings: OidcSettings
    key_sets: KeySets


FEDERATION = StashKey[Federation]("auth_oidc.federation")


def build(app: flask.Flask) -> Federation:
    settings = OidcSettings.from_config(app.config)
    federation = Federation(
        settings,
        KeySets(
            settings.jwks_ttl,
            settings.refetch_cooldown,
            settings.http_timeout,
            fetch=partial(fetch_json, allow_private_addresses=settings.allow_private_addresses),
        ),
    )
    stash(app)[FEDERATION] = federation
    return federation


def federation(app: flask.Flask | None = None) -> Federation:
    """The app's federation state (the current app's by default)."""
    return stash(app)[FEDERATION]
