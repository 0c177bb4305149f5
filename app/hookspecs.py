"""The hooks a ctxcloud plugin may implement.

Every hook is called with keyword arguments, so a plugin may accept only the arguments
it needs and a later argument breaks no plugin. Built-in fallbacks are ``trylast=True``,
so third-party plugins run first. docs/plugins.md documents each hook (a test keeps it so).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence

    import flask
    import flask_smorest

    from ctxcloud.auth import Actor
    from ctxcloud.migrations import Migration
    from ctxcloud.storage import StorageBackend

PROJECT_NAME = "ctxcloud"
hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


# Lifecycle ---------------------------------------------------------------------------------


@hookspec
def config_defaults() -> Mapping[str, Any]:
    """Default settings a plugin needs, applied beneath every other configuration layer.

    Called once per app, after the configuration is loaded. Return a mapping of setting
    names to default values; a name already set by a config file, the environment or the
    caller keeps its value. Every plugin's answer is applied.
    """


@hookspec
def register_blueprints(app: flask.Flask) -> list[flask_smorest.Blueprint]:
    """flask-smorest Blueprints to register on the one Api, so every route lands in OpenAPI.

    Called once per app. Return a list of Blueprints (each with its ``url_prefix`` set).
    Two blueprints with the same name or the same URL prefix stop the start-up.
    """


@hookspec
def register_commands(cli: flask.cli.AppGroup) -> None:
    """Add click commands to the ``ctxcloud`` command line (``cli.add_command(...)``).

    Called once per app with the app's command group.
    """


@hookspec
def database_migrations() -> list[Migration]:
    """Schema migrations this plugin owns, run in dependency order by ``ctxcloud db upgrade``.

    Return a list of ``ctxcloud.migrations.Migration``. Ids are global ("plugin.0001_name");
    ``depends_on`` names migrations (of any plugin) that must run first. Never run at web start.
    """


@hookspec
def startup(app: flask.Flask) -> None:
    """The app is fully built: blueprints, storage and configuration are in place.

    Called once per app, last in ``create_app``. Use it to warm caches or validate settings;
    raise ``app.config.ConfigError`` to refuse to start.
    """


# Storage -----------------------------------------------------------------------------------


@hookspec
def storage_backends() -> Mapping[str, Callable[[Mapping[str, Any]], StorageBackend]]:
    """Storage backends this plugin provides, as ``{name: factory(config) -> StorageBackend}``.

    The core picks the one named by ``STORAGE_BACKEND``. Two plugins offering the same name
    stop the start-up.
    """


@hookspec
def objects_in_use(keys: Sequence[str]) -> Iterable[str] | None:
    """Which of these storage object keys this plugin's records name: a sweep spares them.

    ``ctxcloud storage gc`` asks in batches (up to a thousand keys each) about objects older
    than its grace, and removes those no plugin names. Return the subset you reference (or
    None). Every implementation is called; a key any plugin returns is kept. A plugin that
    stores objects must implement this, or a sweep will remove them once they are older than
    the grace. Safe only if a reference is recorded within the grace of the object's write,
    or while another recorded reference still names the object.
    """


# Health ------------------------------------------------------------------------------------


@hookspec
def health_checks(app: flask.Flask) -> Mapping[str, Callable[[], None]]:
    """Readiness checks, as ``{name: check()}``; a check raises to report its dependency down.

    Called once per app. ``/api/v1/health`` and ``/health/ready`` run every check and name
    the failing ones; a name already taken (database, storage, cache...) stops the start-up.
    """


# Authentication and authorisation ---------------------------------------------------------


@hookspec(firstresult=True)
def authenticate(request: flask.Request) -> Actor | None:
    """Turn the request's credential into an Actor; stops at the first non-None result.

    Return None when the credential is not yours (another plugin may know it). A credential
    that is yours but bad (unknown, expired, revoked) raises ``ctxcloud.errors.Unauthorized``:
    it never falls through to another plugin. Called once per request, first thing, by the
    request pipeline (``ctxcloud.pipeline``); the routes read the result with
    ``ctxcloud.current_actor()``.
    """


@hookspec
def register_permissions() -> Mapping[str, str]:
    """Permissions this plugin defines, as ``{name: description}``.

    ``@requires(name)`` refuses, at start-up, a permission nobody registered.
    """


@hookspec
def permission_allowed(actor: Actor, action: str, resource: Any) -> bool | None:
    """May ``actor`` perform ``action`` (a permission name) on ``resource`` (or None)?

    Return True to allow, False to veto, None for no opinion. Combined with a veto: any
    False denies, else any True allows, else the request is denied.
    """


# Tenancy, errors and events ---------------------------------------------------------------


@hookspec
def problem_responses() -> list[Any] | None:
    """Error responses this plugin's routes reference by name: ``ctxcloud.ProblemResponse``
    declarations (name, status, code, an example detail, a description).

    The core registers them in the OpenAPI document beside its generic ones (BadRequest,
    NotFound, Conflict, ...), so ``@blp.alt_response(413, response="EntryTooLarge")`` points
    at a documented problem+json response. A name declared twice stops the start.
    """


@hookspec
def tenant_resolved(tenant: Any, actor: Actor) -> None:
    """A request's tenant is known (it always comes from the credential); observe it.

    Called once per authenticated request, by the request pipeline once the core has checked
    the tenant's status (a suspended tenant is refused before). Raise a
    ``ctxcloud.errors.ProblemError`` to refuse the credential.
    """


@hookspec
def tenant_options() -> list[Any] | None:
    """The quotas and settings this plugin gives every tenant: ``ctxcloud.Quota`` and
    ``ctxcloud.Setting`` declarations (name, marshmallow field, service default, description).

    Quotas are set by platform operators, settings by the tenant's owner. Every declared
    option shows in the tenant config API (`GET|PATCH /api/v1/tenants/{id}/config`,
    `PATCH /api/v1/tenant/settings`), is validated with its field, and is documented in the
    OpenAPI document; read it with ``tenant.quota(name)`` / ``tenant.setting(name)`` and
    enforce a count quota with ``ctxcloud.check_quota``. Two plugins declaring the same name
    stop the start.
    """


@hookspec
def tenant_deleting(tenant: Any) -> list[str] | None:
    """A tenant is being deleted: called inside the deleting transaction.

    Delete this plugin's rows of the tenant; return the storage object keys it owned (or
    None). The tenant's data key is already destroyed, so those objects are unreadable; they
    are deleted before the transaction commits, and a failure rolls the rows back so that
    deleting again (``ctxcloud tenants purge``) finds them. Every implementation is called;
    the tenant row goes last.
    """


@hookspec
def tenant_usage(tenant: Any) -> Mapping[str, int] | None:
    """Exact counts of what this plugin holds for the tenant, e.g. ``{"projects": 3}``.

    Read at the time of the call (never a cached estimate); the answers of every plugin are
    merged into ``GET /api/v1/tenants/{id}/usage``.
    """


@hookspec(firstresult=True)
def handle_exception(exc: BaseException) -> Any:
    """Map an exception the core does not know to a ``ProblemError`` (or None to pass).

    Stops at the first non-None result; unmapped exceptions become a 500 without internals.
    """


@hookspec
def audit_event(event: Mapping[str, Any]) -> None:
    """A security-relevant event happened (login, key created, permission denied...).

    ``event`` has ``type``, ``tenant_id``, ``actor``, ``request_id`` and event fields; it never
    holds a secret. Every plugin's implementation is called.
    """


# Projects ----------------------------------------------------------------------------------


@hookspec
def project_deleting(project: Any) -> list[str] | None:
    """A project is about to be deleted, inside the deleting transaction.

    Delete this plugin's rows of the project; return the storage object keys to remove once
    the deletion has committed (so a rolled-back deletion never loses data).
    """
