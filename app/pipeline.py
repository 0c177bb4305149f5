"""The request pipeline: authenticate → tenant → rate limits → permission, before any view.

One step of the request cycle (``ctxcloud.request_cycle``), read top to bottom, for every
request to a route of the API (health probes and the API docs skip it: they need no
credential and are never limited; an unknown URL or method is left to routing's 404/405):

1. **Authenticate**: the ``authenticate`` hooks turn the credential into an Actor, or None
   without one. A credential that is present but bad is *refused* (401), never anonymous.
2. **Tenant**: the actor's tenant must be active: a suspended tenant's credential is refused
   with 403 ``tenant_suspended``, a tenant being deleted has none left (401). Then the
   ``tenant_resolved`` hooks observe it (and may refuse it too).
3. **Rate limits**: the accepted credential spends its budget and its tenant's; a request
   without one, or with a refused one, spends its client address's (so guessing credentials
   is limited too). 429 ``rate_limited`` with ``Retry-After`` once one is spent. With Redis,
   that one round trip also reads the tenant's data generation (the cached rows' freshness).
4. **Permission**: what the route declares (``@requires``, ``@requires_authentication``,
   ``@public``; ``ctxcloud.auth.route_policy``). A public route (or one declaring nothing, as
   a test's ad-hoc route) runs with the actor or anonymously; any other needs an accepted
   credential (else the refusal of step 1-2, or 401), and a permission the veto rule allows
   (else 403 ``forbidden``, audited as ``permission_denied``).

The actor accepted in 2 is the request's one hand-off to the rest of the code, read through
``ctxcloud.current_actor()``. The window reported in the ``RateLimit-*`` headers stays in this
module (``_report_budget``).
"""

from __future__ import annotations

from typing import Any

import flask

from ctxcloud import auth, errors
from ctxcloud.ratelimit import EXTENSION as RATE_LIMITING
from ctxcloud.ratelimit import UNLIMITED_BLUEPRINTS, RateLimiting, Window
from ctxcloud.tenancy.data_cache import EXTENSION as DATA_CACHES
from ctxcloud.tenancy.lifecycle import refuse_suspended

# The window this request's response reports (this module's own).
_WINDOW = "ctxcloud_pipeline_window"
# What a refused credential raises: the refusal is kept until step 4.
_REFUSALS = (errors.Unauthorized, errors.Forbidden)


def run(app: flask.Flask, request: flask.Request, g: Any) -> None:
    """authenticate → tenant → rate limits → permission, for the route being called."""
    if request.endpoint is None or request.blueprint in UNLIMITED_BLUEPRINTS:
        return
    pm = app.extensions["ctxcloud"].pm
    refusal: errors.ProblemError | None = None

    # 1. Authenticate.
    try:
        actor: auth.Actor | None = pm.hook.authenticate(request=request)
    except _REFUSALS as refused:
        actor, refusal = None, refused

    # 2. Tenant.
    if actor is not None:
        try:
            refuse_suspended(actor.tenant)
            pm.hook.tenant_resolved(tenant=actor.tenant, actor=actor)
        except errors.ProblemError as refused:
            actor, refusal = None, refused
    auth.accept_actor(actor)

    # 3. Rate limits; with Redis, the same round trip reads the tenant's data generation
    # (ctxcloud.tenancy.data_cache), so a read served from a process's cache costs no other.
    rates: RateLimiting = app.extensions[RATE_LIMITING]
    if rates.enabled:
        tenant_id = actor.tenant_id if actor is not None else None
        generations = app.extensions[DATA_CACHES].generations
        reads = generations.announced(tenant_id) if tenant_id else None
        window, values = rates.spend_and_read(rates.budgets(actor), reads)
        if tenant_id:
            generations.prefetched(tenant_id, values)
        setattr(g, _WINDOW, window)

    # 4. Permission.
    policy = _policy(app, request)
    if policy is None or policy == auth.PUBLIC:
        return
    if actor is None:
        raise refusal or errors.Unauthorized()
    if policy != auth.AUTHENTICATED:
        auth.authorize(policy)


def _policy(app: flask.Flask, request: flask.Request) -> str | None:
    """The route's declared policy for this method (looked up once per endpoint and method)."""
    policies: dict[tuple[str, str], str | None] = app.extensions[__name__]
    key = (request.endpoint or "", request.method)
    if key not in policies:
        policies[key] = auth.route_policy(app.view_functions[key[0]], key[1])
    return policies[key]


def report_budget(g: Any, response: flask.Response) -> flask.Response:
    """RateLimit-Limit, -Remaining and -Reset (seconds) of the budget this request spent,
    unless the response already reports one (a route limit's 429)."""
    window: Window | None = g.get(_WINDOW)
    if window is not None and "RateLimit-Limit" not in response.headers:
        response.headers.update(window.headers())
    return response


def init_pipeline(app: flask.Flask) -> None:
    """The pipeline's state in `app` (``ctxcloud.request_cycle`` runs it for each request)."""
    app.extensions[__name__] = {}
