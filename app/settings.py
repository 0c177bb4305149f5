"""Configuration layering: default.py, <env>.py, CTXCLOUD_* variables, the caller's mapping."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from flask import Config

ENVIRONMENTS = ("development", "production", "testing")
ENV_PREFIX = "CTXCLOUD"


class ConfigError(RuntimeError):
    """The service cannot start with this configuration; the message names the setting."""


def environment_name(overrides: Mapping[str, Any] | None) -> str:
    """The environment decides which config file layers on the defaults, so read it first."""
    name = (overrides or {}).get("ENV") or os.environ.get(f"{ENV_PREFIX}_ENV") or "development"
    if name not in ENVIRONMENTS:
        raise ConfigError(f"CTXCLOUD_ENV={name!r} is not one of {', '.join(ENVIRONMENTS)}")
    return name


def load_config(config: Config, overrides: Mapping[str, Any] | None = None) -> None:
    """Fill `config` in precedence order: tests and operators override files, never the reverse."""
    env = environment_name(overrides)
    config.from_object("ctxcloud.config.default")
    config.from_object(f"ctxcloud.config.{env}")
    config.from_prefixed_env(ENV_PREFIX, loads=_loads)
    if overrides:
        config.update(overrides)
    config["ENV"] = env
    config["DATA_DIR"] = os.path.abspath(config["DATA_DIR"])


def _loads(value: str) -> Any:
    """JSON where it parses (numbers, booleans, objects), the raw string otherwise."""
    import json

    try:
        return json.loads(value)
    except ValueError:
        return value


def disabled_plugins(config: Mapping[str, Any]) -> list[str]:
    """Accept both a comma-separated string (env) and a list (tests)."""
    value = config.get("DISABLED_PLUGINS") or ""
    if isinstance(value, str):
        value = value.split(",")
    return [name.strip() for name in value if name and name.strip()]


def require_production_settings(config: Mapping[str, Any], required: list[str]) -> None:
    """Production must not run on a development default; fail naming every missing variable."""
    if config["ENV"] != "production":
        return
    missing = [f"{ENV_PREFIX}_{name}" for name in required if not config.get(name)]
    if missing:
        raise ConfigError(
            "production refuses to start without "
            + ", ".join(missing)
            + " (see docs/configuration.md)"
        )


_MISSING = object()


def setting(name: str, default: Any = _MISSING) -> Any:
    """The current app's setting `name` (``CTXCLOUD_<name>`` in the environment, a plugin's
    ``config_defaults``...); KeyError without a default when nobody defines it."""
    import flask

    config = flask.current_app.config
    if default is _MISSING:
        return config[name]
    return config.get(name, default)
