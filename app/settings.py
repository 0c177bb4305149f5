"""Configuration layering: default.py, <env>.py, CTXCLOUD_* variables, the caller's mapping."""

from __future__ import annotations

import os
import re
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


def env_variable(name: str) -> str:
    """The environment variable that sets the setting `name`: ``CTXCLOUD_<name>``."""
    return f"{ENV_PREFIX}_{name}"


class SettingsReader:
    """Typed reads of a plugin's settings from an app config, for its settings class.

    A setting that is unset, None or empty (``CTXCLOUD_ACME_SIZE=``) reads as its entry in
    `defaults`. A value of the wrong type raises ConfigError naming the environment variable,
    because that is what an operator sets. Environment values arrive JSON-decoded, so "8" is
    already 8 and "x" stays "x".
    """

    def __init__(self, config: Mapping[str, Any], defaults: Mapping[str, Any]) -> None:
        self._config = config
        self._defaults = defaults

    def value(self, name: str) -> Any:
        """The setting as given, or its default when unset or empty."""
        value = self._config.get(name)
        if value is None or (isinstance(value, str) and not value.strip()):
            return self._defaults.get(name)
        return value

    def string(self, name: str) -> str | None:
        """Text with surrounding blanks removed, or None when unset and without default. A
        number is taken as its text: a bucket named 12345 arrives from the environment as one."""
        value = self.value(name)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ConfigError(f"{env_variable(name)} must be a string, not {type(value).__name__}")
        return str(value).strip() or None

    def whole_number(self, name: str) -> int:
        value = self.value(name)
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{env_variable(name)} must be a whole number, not {value!r}")
        return value

    def seconds(self, name: str) -> float:
        value = self.value(name)
        try:
            if isinstance(value, bool):
                raise TypeError
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(
                f"{env_variable(name)} must be a number of seconds, not {value!r}"
            ) from None

    def optional_seconds(self, name: str) -> float | None:
        """Seconds, or None when unset and the default is None (a bound computed elsewhere)."""
        return None if self.value(name) is None else self.seconds(name)


def folder_prefix(
    prefix: str, name: str, *, characters: re.Pattern[str], described: str, max_length: int = 512
) -> str:
    """A storage backend's prefix setting as "" or a relative "folder/" (a missing trailing
    slash added), else ConfigError naming ``CTXCLOUD_<name>``. `characters` must match the
    whole prefix; `described` says which characters it allows, for the message."""
    if not prefix:
        return ""
    variable = env_variable(name)
    if not isinstance(prefix, str) or not characters.fullmatch(prefix):
        raise ConfigError(f"{variable}={prefix!r} may hold only {described}")
    if not prefix.endswith("/"):
        prefix += "/"
    segments = prefix[:-1].split("/")
    if prefix.startswith("/") or any(s in ("", ".", "..") for s in segments):
        raise ConfigError(
            f"{variable}={prefix!r} must be relative, with no empty, '.' or '..' part"
        )
    if len(prefix) > max_length:
        raise ConfigError(f"{variable} is longer than {max_length} characters")
    return prefix
