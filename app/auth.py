"""Authentication and authorisation primitives the core owns: the Actor, the route policies, the
veto rule.

Plugins turn credentials into Actors (``authenticate``) and give opinions on permissions
(``permission_allowed``); the core combines them: any False denies, else any True allows,
else deny. Routes *declare* who may call them (``@requires``, ``@requires_authentication``,
``@public``); the request pipeline (``ctxcloud.pipeline``) enforces the declaration before
the view runs, and leaves the accepted actor where ``current_actor()`` reads it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
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
PUBLIC = "public"
SECURITY = [{"bearerAuth": []}, {"apiKeyHeader": []}]
# The one request-scoped key authentication leaves on ``flask.g``: the actor the pipeline
# accepted (None: no credential, or one it refused). Read it through ``current_actor()``.
ACTOR_KEY = "ctxcloud_actor"


@dataclass(frozen=True)
class Actor:
    """Who is calling: the tenant always comes from here, never from the URL or the body."""

    kind: str  # "user", "api_key", "platform", "oauth_client" or "federated"
    id: str
    tenant_id: str | None
    role: str | None
    permissions: frozenset[str]
    # API keys may be restricted to some projects; None means every project of the tenant.
    project_ids: frozenset[str] | None = None
    # The credential's own id (JWT jti or API key id): the unit of rate limiting and revocation.
    credential_id: str | None = None
    tenant: Any = field(default=None, compare=False, repr=False)
    # Who vouches for `id` when it is not this service: a federated identity provider's issuer.
    issuer: str | None = None

    @property
    def log_name(self) -> str:
        """``kind:id`` (``kind:id@issuer`` for a federated actor): names the actor in logs and
        audit events, and keys its rate-limit budget."""
        if self.issuer is not None:
            return f"{self.kind}:{self.id}@{self.issuer}"
        return f"{self.kind}:{self.id}"

    def may_access_project(self, project_id: str) -> bool:
        """A restricted key sees other projects as absent (404), never as forbidden."""
        return self.project_ids is None or project_id in self.project_ids


def current_actor(required: bool = True) -> Actor | None:
    """The request's actor, as the pipeline accepted it; 401 when required and absent.

    None outside a request, on routes the pipeline skips (health, docs), and for a request
    without an accepted credential.
    """
    actor = flask.g.get(ACTOR_KEY) if flask.has_request_context() else None
    if actor is None and required:
        raise errors.Unauthorized()
    return actor


def accept_actor(actor: Actor | None) -> None:
    """The pipeline's one hand-off: the actor of this request (None: anonymous)."""
    setattr(flask.g, ACTOR_KEY, actor)


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


def check_delegation(
    scopes: Iterable[str],
    project_ids: Iterable[str] | None,
    creator: Actor | None,
    *,
    what: str = "credential",
) -> None:
    """The rules of a credential made by another (an API key, an OAuth client, ...):

    - its scopes are registered permissions of a tenant (422 ``validation_error`` on
      ``scopes``: none, an unknown one, or ``platform:admin``, which only platform keys hold);
    - it never holds more than `creator` (403 ``forbidden``): no scope the creator lacks, and
      a creator restricted to some projects makes only credentials restricted to some of
      those. `creator` None: the command line, which may give any tenant permission.
    """
    from ctxcloud.roles import PLATFORM_PERMISSIONS

    wanted = set(scopes)
    known = set(flask.current_app.extensions["ctxcloud"].permissions)
    unknown = sorted(wanted - known)
    if unknown:
        raise errors.ValidationFailed({"scopes": [f"Unknown scope: {n}." for n in unknown]})
    if not wanted:
        raise errors.ValidationFailed({"scopes": ["At least one scope."]})
    if creator is not None:
        _within_creator(wanted, project_ids, creator, what)
    platform = sorted(wanted & set(PLATFORM_PERMISSIONS))
    if platform:
        raise errors.ValidationFailed(
            {"scopes": [f"{', '.join(platform)} belongs to platform keys only."]}
        )


def _within_creator(
    wanted: set[str], project_ids: Iterable[str] | None, creator: Actor, what: str
) -> None:
    missing = sorted(wanted - creator.permissions)
    if missing:
        raise errors.Forbidden(
            f"A {what} cannot hold what its creator lacks: {', '.join(missing)}."
        )
    projects = None if project_ids is None else set(project_ids)
    if creator.project_ids is not None and (
        projects is None or not projects <= creator.project_ids
    ):
        raise errors.Forbidden(
            f"This credential is restricted to some projects; so is any {what} it makes."
        )


def emit_audit(event_type: str, **fields: Any) -> None:
    """Send a security event to every ``audit_event`` implementation; never pass a secret."""
    from ctxcloud.requestlog import current_request_id

    actor = current_actor(required=False)
    event = {
        "type": event_type,
        "tenant_id": fields.pop("tenant_id", getattr(actor, "tenant_id", None)),
        "actor": fields.pop("actor", getattr(actor, "log_name", None)),
        "request_id": current_request_id(),
        **fields,
    }
    if actor is not None and actor.issuer is not None:
        event.setdefault("issuer", actor.issuer)
        event.setdefault("subject", actor.id)
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
    """Declare a route's permission (the pipeline enforces it before the view runs: 401
    without an accepted credential, 403 ``forbidden`` and a ``permission_denied`` audit event
    without the permission) and document it in OpenAPI."""

    def decorator(fn: F) -> F:
        setattr(fn, PERMISSION_ATTR, permission)
        _with_doc(
            fn,
            fn,
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
        return fn

    return decorator


def public(fn: F) -> F:
    """Declare a route that needs no credential (health, docs, login); the url-map test
    accepts it."""
    setattr(fn, PUBLIC_ATTR, True)
    _with_doc(fn, fn, {"security": []})
    return fn


def requires_authentication(fn: F) -> F:
    """Declare a route any valid credential may call, needing no permission (whoami, revoke)."""
    setattr(fn, AUTHENTICATED_ATTR, True)
    _with_doc(
        fn,
        fn,
        {
            "security": SECURITY,
            "responses": {
                "401": {"$ref": "#/components/responses/Unauthorized"},
                "429": {"$ref": "#/components/responses/RateLimited"},
            },
        },
    )
    return fn


def route_policy(view: Callable[..., Any], method: str) -> str | None:
    """The permission a route declares for `method`, "public", "authenticated", or None.

    A class-based view without a ``head`` method answers HEAD with ``get``: so does its policy.
    """
    target = getattr(view, "view_class", None)
    if target is None:
        func: Any = view
    else:
        func = getattr(target, method.lower(), None)
        if func is None and method.upper() == "HEAD":
            func = getattr(target, "get", None)
    if func is None:
        return None
    if getattr(func, PUBLIC_ATTR, False):
        return PUBLIC
    if getattr(func, AUTHENTICATED_ATTR, False):
        return AUTHENTICATED
    return getattr(func, PERMISSION_ATTR, None)
