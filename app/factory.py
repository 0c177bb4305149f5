"""create_app: configuration, plugins, database, storage, keys and routes, assembled per app."""

from __future__ import annotations

import importlib.metadata
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import flask
import peewee
import pluggy
import redis
from werkzeug.middleware.proxy_fix import ProxyFix

from ctxcloud import (
    auth,
    dev_secrets,
    docs_assets,
    health,
    introspection,
    json_input,
    pipeline,
    ratelimit,
    well_known,
)
from ctxcloud.api import CORE_RESPONSES, Api, create_api
from ctxcloud.bulkhead import Bulkhead, default_slots
from ctxcloud.crypto import MasterKeyring
from ctxcloud.db import init_database, open_database
from ctxcloud.errors import ProblemResponse, register_error_handlers
from ctxcloud.flask_app import ServiceFlask
from ctxcloud.keystore import Keystore
from ctxcloud.metrics import init_metrics
from ctxcloud.object_cache import ObjectCache
from ctxcloud.plugin_manager import build_plugin_manager, merged_mapping
from ctxcloud.redis_client import open_redis
from ctxcloud.request_cycle import init_request_cycle
from ctxcloud.requestlog import configure_logging
from ctxcloud.roles import PERMISSIONS
from ctxcloud.settings import (
    ConfigError,
    disabled_plugins,
    load_config,
    require_production_settings,
)
from ctxcloud.signing_keys import ALGORITHMS, HS256, SigningKeys
from ctxcloud.state import Stash
from ctxcloud.storage import StorageBackend, StorageUnavailable
from ctxcloud.tenancy.options import TenantOptions
from ctxcloud.token_signing import init_token_signing

# Secrets the embedded default generates and production must be given.
GENERATED_SECRETS = ("MASTER_KEYS", "API_KEY_PEPPER")  # and the token signing key(s)


@dataclass
class CtxCloud:
    """Everything a request needs that is built once per app, kept on ``app.extensions``."""

    pm: pluggy.PluginManager
    plugin_dists: dict[str, importlib.metadata.Distribution]
    blocked_plugins: list[str]
    database: peewee.Database
    storage: StorageBackend
    keyring: MasterKeyring
    keystore: Keystore
    redis: redis.Redis | None
    storage_bulkhead: Bulkhead
    object_cache: ObjectCache
    tenant_options: TenantOptions | None = None
    # What plugins build at start-up, each under a key of its own (ctxcloud.StashKey).
    stash: Stash = field(default_factory=Stash)
    api: Api | None = None
    permissions: dict[str, str] = field(default_factory=dict)
    health_checks: dict[str, Callable[[], None]] = field(default_factory=dict)
    openapi_json: str | None = None
    signing_keys: SigningKeys | None = None  # None: the HS256 opt-in


def create_app(config: Mapping[str, Any] | None = None) -> flask.Flask:
    """Build a ctxcloud app; `config` overrides every other layer (tests use it)."""
    app = ServiceFlask("ctxcloud", static_folder=None)
    json_input.install(app, sort_keys=False)  # strict JSON in (bodies, get_json) and out
    load_config(app.config, config)
    configure_logging(app.config)
    _apply_secrets(app.config)

    blocked = disabled_plugins(app.config)
    pm, dists = build_plugin_manager(blocked)
    for defaults in pm.hook.config_defaults():
        for key, value in (defaults or {}).items():
            app.config.setdefault(key, value)

    ext = CtxCloud(
        pm=pm,
        plugin_dists=dists,
        blocked_plugins=blocked,
        database=open_database(app.config),
        storage=_open_storage(pm, app.config),
        keyring=(keyring := _open_keyring(app.config)),
        keystore=Keystore(keyring),
        redis=open_redis(app.config),
        storage_bulkhead=_storage_bulkhead(app.config),
        object_cache=_object_cache(app.config),
    )
    app.extensions["ctxcloud"] = ext
    ext.tenant_options = TenantOptions.collect(pm.hook.tenant_options(), app.config)
    # Every request body is bounded; routes that stream entries raise their own limit.
    app.config["MAX_CONTENT_LENGTH"] = int(app.config["MAX_JSON_BYTES"])
    if app.config["TRUSTED_PROXY_HOPS"]:
        hops = int(app.config["TRUSTED_PROXY_HOPS"])
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops)

    init_request_cycle(app)
    init_database(app)
    ratelimit.init_rate_limiting(app)
    pipeline.init_pipeline(app)
    ext.signing_keys = init_token_signing(app)
    ext.api = create_api(app)
    ext.api.register_problem_responses(_problem_responses(pm))
    register_error_handlers(app)
    _register_routes(app, ext)
    _document_tenant_options(ext)
    init_metrics(app)
    ext.permissions = {
        "platform:admin": PERMISSIONS["platform:admin"],
        **merged_mapping(pm.hook.register_permissions(), "permission"),
    }
    _check_route_permissions(app, ext.permissions)
    ext.health_checks = _health_checks(app, ext)
    _register_commands(app)
    pm.hook.startup(app=app)
    return app


def _apply_secrets(config: flask.Config) -> None:
    """Production must be given its secrets; elsewhere missing ones are generated once."""
    signing = "JWT_SECRET_KEY" if config.get("JWT_ALGORITHM") == HS256 else "JWT_SIGNING_KEYS"
    needed = [*GENERATED_SECRETS, signing]
    require_production_settings(config, [*needed, "DATABASE_URL"])
    if all(config.get(name) for name in needed):
        return
    generated = dev_secrets.load_or_create(config["DATA_DIR"])
    for name in GENERATED_SECRETS:
        if not config.get(name):
            config[name] = generated[name]
    if not config.get(signing):
        algorithm = config.get("JWT_ALGORITHM") or ALGORITHMS[0]
        if signing == "JWT_SECRET_KEY":
            config[signing] = generated["JWT_SECRET_KEY"]
        else:  # rotate-signing adds to these when none is standby
            config[signing] = generated.get(dev_secrets.signing_keys_name(algorithm))
            config["JWT_SIGNING_KEYS_FROM_DATA_DIR"] = True


def _storage_bulkhead(config: flask.Config) -> Bulkhead:
    slots = config.get("STORAGE_MAX_CONCURRENCY") or default_slots()
    try:
        slots = int(slots)
    except (TypeError, ValueError):
        slots = 0
    if slots < 1:
        raise ConfigError("CTXCLOUD_STORAGE_MAX_CONCURRENCY must be a whole number of at least 1")
    return Bulkhead("storage", slots, StorageUnavailable)


def _object_cache(config: flask.Config) -> ObjectCache:
    sizes = []
    for name in ("OBJECT_CACHE_BYTES", "OBJECT_CACHE_MAX_OBJECT"):
        try:
            sizes.append(int(config[name]))
        except (TypeError, ValueError):
            sizes.append(-1)
        if sizes[-1] < 0:
            raise ConfigError(f"CTXCLOUD_{name} must be a whole number of bytes (0 or more)")
    return ObjectCache(*sizes)


def _open_keyring(config: flask.Config) -> MasterKeyring:
    keys = config["MASTER_KEYS"]
    text = keys if isinstance(keys, str) else json.dumps(keys)
    return MasterKeyring.from_json(text, active=config.get("ACTIVE_MASTER_KEY") or None)


def _open_storage(pm: pluggy.PluginManager, config: flask.Config) -> StorageBackend:
    backends = merged_mapping(pm.hook.storage_backends(), "storage backend")
    name = config["STORAGE_BACKEND"]
    if name not in backends:
        raise ConfigError(
            f"CTXCLOUD_STORAGE_BACKEND={name!r} is not provided by any loaded plugin "
            f"(available: {', '.join(sorted(backends)) or 'none'})"
        )
    return backends[name](config)


def _register_routes(app: flask.Flask, ext: CtxCloud) -> None:
    """Core routes, then every plugin's blueprints on the one Api; clashing prefixes fail."""
    app.register_blueprint(docs_assets.assets)
    blueprints = [health.blp, introspection.blp, well_known.blp]
    for result in ext.pm.hook.register_blueprints(app=app):
        blueprints.extend(result or [])
    prefixes: dict[str, str] = {}
    for blp in blueprints:
        prefix = (blp.url_prefix or "").rstrip("/")
        if prefix in prefixes:
            raise ConfigError(
                f"blueprints {prefixes[prefix]!r} and {blp.name!r} both claim the prefix {prefix!r}"
            )
        prefixes[prefix] = blp.name
        ext.api.register_blueprint(blp)


def _problem_responses(pm: pluggy.PluginManager) -> list[ProblemResponse]:
    """The core's error responses and every plugin's; one name may be declared once."""
    responses = list(CORE_RESPONSES)
    for declared in pm.hook.problem_responses():
        responses.extend(declared or ())
    names = [response.name for response in responses]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ConfigError(f"the error responses {', '.join(duplicates)} are declared twice")
    return responses


def _document_tenant_options(ext: CtxCloud) -> None:
    """The tenant config API's quotas and settings are whatever the plugins declared: their
    OpenAPI components are drawn from the declarations, once they are known, and replace
    what the routes' documentation wrote (so this is queued after it)."""
    api, options = ext.api, ext.tenant_options
    assert api is not None and options is not None

    def document(spec: Any) -> None:
        components = spec.components
        for name, schema in options.openapi(api.ma_plugin.converter).items():
            components.schemas.pop(name, None)
            components.schemas_lazy.pop(name, None)
            components.schema(name, schema)

    api.defer(document)


def _check_route_permissions(app: flask.Flask, permissions: Mapping[str, str]) -> None:
    """A route requiring a permission nobody registered could never be allowed: refuse to start."""
    for rule in app.url_map.iter_rules():
        view = app.view_functions[rule.endpoint]
        for method in rule.methods or ():
            policy = auth.route_policy(view, method)
            if policy not in (None, "public", auth.AUTHENTICATED) and policy not in permissions:
                raise ConfigError(
                    f"route {rule.rule} ({method}) requires the unregistered permission {policy!r}"
                )


def _health_checks(app: flask.Flask, ext: CtxCloud) -> dict[str, Callable[[], None]]:
    def database() -> None:
        ext.database.execute_sql("SELECT 1")

    def cache() -> None:
        if ext.redis is not None:
            ext.redis.ping()

    def storage() -> None:
        with ext.storage_bulkhead.slot():
            ext.storage.check()

    checks: dict[str, Callable[[], None]] = {
        "database": database,
        "storage": storage,
        "cache": cache,
    }
    for name, check in merged_mapping(ext.pm.hook.health_checks(app=app), "health check").items():
        if name in checks:
            raise ConfigError(f"a plugin's health check reuses the core's name {name!r}")
        checks[name] = check
    return checks


def _register_commands(app: flask.Flask) -> None:
    from ctxcloud.cli import db_group, keys_group, storage_group

    app.cli.add_command(db_group)
    app.cli.add_command(keys_group)
    app.cli.add_command(storage_group)
    app.extensions["ctxcloud"].pm.hook.register_commands(cli=app.cli)
