"""Authentication and authorisation primitives the core owns: the Actor, @requires, the veto rule.

Plugins turn credentials into Actors (``authenticate``) and give opinions on permissions
(``permission_allowed``); the core combines them: any False denies, else any True allows,
else deny.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from copy import deepcopy
from dataclasses import dataclass, field
from typing import Any, TypeVar

import flask

from ctxcloud import errors

F = TypeVar("F", bound=Callable[..., Any])
PERMISSION_ATTR = "_ctxcloud_permission"
PUBLIC_ATTR = "_ctxcloud_public"
AUTHENTICATED_ATTR = "_ctxcloud_authenticated"
# The policy of a route any valid credential may call, whatever its permissions (whoami).
AUTHENTICATED = "authenticated"
SECURITY = [{"bearerAuth": []}, {"apiKeyHeader": []}]


@dataclass(frozen=True)
class Actor:
    """Who is calling: the tenant always comes from here, never from the URL or the body."""

    kind: str  # "user", "api_key" or "platform"
    id: str
    tenant_id: str | None
    role: str | None
    permissions: frozenset[str]
    # API keys may be restricted to some projects; None means every project of the tenant.
    project_ids: frozenset[str] | None = None
    # The credential's own id (JWT jti or API key id): the unit of rate limiting and revocation.
    credential_id: str | None = None
    tenant: Any = field(default=None, compare=False, repr=False)

    @property
    def log_name(self) -> str:
        return f"{self.kind}:{self.id}"

    def may_access_project(self, project_id: str) -> bool:
        """A restricted key sees other projects as absent (404), never as forbidden."""
        return self.project_ids is None or project_id in self.project_ids


def current_actor(required: bool = True) -> Actor | None:
    """Authenticate the request once (cached on ``g``); 401 when required and absent."""
    if "actor" not in flask.g:
        ext = flask.current_app.extensions["ctxcloud"]
        actor = ext.pm.hook.authenticate(request=flask.request)
        if actor is not None:
            ext.pm.hook.tenant_resolved(tenant=actor.tenant, actor=actor)
        # Only an actor every check accepted is kept: a refused one is refused again.
        flask.g.actor = actor
    actor = flask.g.actor
    if actor is None and required:
        raise errors.Unauthorized()
    return actor


@dataclass(frozen=True)
class DeferredCheck:
    """A cached credential used before its revocation generation was re-read: the Redis key
    holding the generation, the value it must still have, and how to forget the credential."""

    redis_key: str
    expected: int
    forget: Callable[[], None]


_DEFERRED_CHECKS = "deferred_credential_checks"


def deferred_checks() -> list[DeferredCheck] | None:
    """Where a credential cache may leave its Redis generation check instead of reading it
    now; None (the rule) means it must read it now."""
    return flask.g.get(_DEFERRED_CHECKS) if flask.has_request_context() else None


@contextlib.contextmanager
def deferring_credential_checks() -> Iterator[list[DeferredCheck]]:
    """Authenticate inside this block with the generation reads left to the caller, so they
    ride along with its own Redis round trip (the rate limiter's). The caller must run every
    check before the actor is used for anything but counting, and authenticate again (after
    ``forget``) when one fails."""
    checks: list[DeferredCheck] = []
    setattr(flask.g, _DEFERRED_CHECKS, checks)
    try:
        yield checks
    finally:
        flask.g.pop(_DEFERRED_CHECKS, None)


def is_allowed(actor: Actor, action: str, resource: Any = None) -> bool:
    """The veto rule over every plugin's ``permission_allowed`` answer."""
    pm = flask.current_app.extensions["ctxcloud"].pm
    answers = pm.hook.permission_allowed(actor=actor, action=action, resource=resource)
    if any(answer is False for answer in answers):
        return False
    return any(answer is True for answer in answers)


def authorize(action: str, resource: Any = None) -> Actor:
    """Raise 401 without a credential and 403 without the permission; return the actor."""
    actor = current_actor()
    assert actor is not None
    if not is_allowed(actor, action, resource):
        emit_audit("permission_denied", action=action)
        raise errors.Forbidden(f"This credential lacks the permission {action!r}.")
    return actor


def emit_audit(event_type: str, **fields: Any) -> None:
    """Send a security event to every ``audit_event`` implementation; never pass a secret."""
    from ctxcloud.requestlog import current_request_id

    actor = flask.g.get("actor") if flask.has_request_context() else None
    event = {
        "type": event_type,
        "tenant_id": fields.pop("tenant_id", getattr(actor, "tenant_id", None)),
        "actor": fields.pop("actor", getattr(actor, "log_name", None)),
        "request_id": current_request_id(),
        **fields,
    }
    flask.current_app.extensions["ctxcloud"].pm.hook.audit_event(event=event)


def _with_doc(fn: Callable[..., Any], wrapper: Callable[..., Any], doc: dict[str, Any]) -> None:
    """Merge OpenAPI doc into the wrapper the way flask-smorest's @blp.doc does."""
    apidoc = deepcopy(getattr(fn, "_apidoc", {}))
    manual = apidoc.setdefault("manual_doc", {})
    for key, value in doc.items():
        if isinstance(value, dict):
            manual.setdefault(key, {}).update(value)
        else:
            manual[key] = value
    wrapper._apidoc = apidoc  # type: ignore[attr-defined]


def requires(permission: str) -> Callable[[F], F]:
    """Declare and enforce a route's permission; put it outermost so it runs before parsing."""

    def decorator(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            authorize(permission)
            return fn(*args, **kwargs)

        setattr(wrapper, PERMISSION_ATTR, permission)
        _with_doc(
            fn,
            wrapper,
            {
                "security": SECURITY,
                "x-permission": permission,
                "responses": {
                    "401": {"$ref": "#/components/responses/Unauthorized"},
                    "403": {"$ref": "#/components/responses/Forbidden"},
                    "429": {"$ref": "#/components/responses/RateLimited"},
                },
            },
        )
        return wrapper  # type: ignore[return-value]

    return decorator


def public(fn: F) -> F:
    """Declare a route that needs no credential (health, docs); the url-map test accepts it."""
    setattr(fn, PUBLIC_ATTR, True)
    _with_doc(fn, fn, {"security": []})
    return fn


def requires_authentication(fn: F) -> F:
    """Declare a route any valid credential may call, needing no permission (whoami, revoke)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        current_actor()
        return fn(*args, **kwargs)

    setattr(wrapper, AUTHENTICATED_ATTR, True)
    _with_doc(
        fn,
        wrapper,
        {
            "security": SECURITY,
            "responses": {
                "401": {"$ref": "#/components/responses/Unauthorized"},
                "429": {"$ref": "#/components/responses/RateLimited"},
            },
        },
    )
    return wrapper  # type: ignore[return-value]


def route_policy(view: Callable[..., Any], method: str) -> str | None:
    """The permission a route declares for `method`, "public", "authenticated", or None."""
    target = getattr(view, "view_class", None)
    func = getattr(target, method.lower(), None) if target is not None else view
    if func is None:
        return None
    if getattr(func, PUBLIC_ATTR, False):
        return "public"
    if getattr(func, AUTHENTICATED_ATTR, False):
        return AUTHENTICATED
    return getattr(func, PERMISSION_ATTR, None)
