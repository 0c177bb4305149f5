"""Plugin discovery: every plugin, built-in or third-party, comes from one entry-point group."""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pluggy

from ctxcloud import hookspecs
from ctxcloud.settings import ConfigError

ENTRY_POINT_GROUP = "ctxcloud.plugins"
# The core's own hook implementations, registered before any entry point and never blockable
# (pytest's essential plugins): what no request can do without.
ESSENTIAL_PLUGINS = {
    "core.tenancy": "ctxcloud.tenancy.essentials",
    "core.permissions": "ctxcloud.permissions",
}


class PluginError(ConfigError):
    """Plugins that cannot be loaded together; the message names them."""


@dataclass(frozen=True)
class LoadedPlugin:
    """What /-/plugins reports about one plugin."""

    name: str
    module: str
    distribution: str
    version: str
    hooks: tuple[str, ...]


def build_plugin_manager(
    blocked: list[str],
) -> tuple[pluggy.PluginManager, dict[str, importlib.metadata.Distribution]]:
    """A manager per app (never a module global) so two apps in one process share nothing.

    Returns the manager and, for each loaded plugin name, the distribution that ships it.
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    essential = sorted(set(blocked) & set(ESSENTIAL_PLUGINS))
    if essential:
        raise PluginError(
            f"CTXCLOUD_DISABLED_PLUGINS names {', '.join(essential)}: the core cannot run "
            "without them, so they cannot be disabled"
        )
    for name, module in ESSENTIAL_PLUGINS.items():
        pm.register(importlib.import_module(module), name=name)
    for name in blocked:
        pm.set_blocked(name)
    seen: dict[str, str] = {}
    dists: dict[str, importlib.metadata.Distribution] = {}
    for dist, entry_point in _entry_points():
        owner = f"{dist.metadata['Name']} ({entry_point.value})"
        if entry_point.name in ESSENTIAL_PLUGINS:
            raise PluginError(f"{owner} takes the name of the core's plugin {entry_point.name!r}")
        if entry_point.name in seen:
            if seen[entry_point.name] == owner:
                continue  # the same distribution found twice on sys.path
            raise PluginError(
                f"two plugins are named {entry_point.name!r}: {seen[entry_point.name]} and {owner}"
            )
        seen[entry_point.name] = owner
        if pm.is_blocked(entry_point.name):
            continue
        try:
            plugin = entry_point.load()
        except Exception as exc:
            raise PluginError(
                f"plugin {entry_point.name!r} ({owner}) failed to import: {exc}"
            ) from exc
        pm.register(plugin, name=entry_point.name)
        dists[entry_point.name] = dist
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin {exc.plugin!r} implements an unknown hook: {exc}") from exc
    return pm, dists


def _entry_points():
    for dist in importlib.metadata.distributions():
        for entry_point in dist.entry_points:
            if entry_point.group == ENTRY_POINT_GROUP:
                yield dist, entry_point


def describe_plugins(
    pm: pluggy.PluginManager, dists: Mapping[str, importlib.metadata.Distribution]
) -> list[LoadedPlugin]:
    """Name, distribution, version and implemented hooks of every loaded plugin."""
    described = []
    for name, plugin in sorted(pm.list_name_plugin(), key=lambda item: str(item[0])):
        if plugin is None:
            continue
        dist = dists.get(name)
        described.append(
            LoadedPlugin(
                name=name,
                module=getattr(plugin, "__name__", type(plugin).__name__),
                distribution=dist.metadata["Name"] if dist else "",
                version=dist.version if dist else "",
                hooks=tuple(sorted(caller.name for caller in pm.get_hookcallers(plugin) or ())),
            )
        )
    return described


def merged_mapping(results: list[Mapping[str, Any] | None], what: str) -> dict[str, Any]:
    """Merge every plugin's {name: thing} answer; the same name twice is ambiguous, so refuse."""
    merged: dict[str, Any] = {}
    for result in results:
        for key, value in (result or {}).items():
            if key in merged and merged[key] is not value:
                raise PluginError(f"two plugins provide the {what} {key!r}")
            merged[key] = value
    return merged
