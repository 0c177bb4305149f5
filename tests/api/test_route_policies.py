"""Every route declares who may call it: a permission, or explicitly public."""

from __future__ import annotations

from ctxcloud.auth import AUTHENTICATED, route_policy


def test_every_route_declares_a_permission_or_is_public(app):
    undeclared = []
    for rule in app.url_map.iter_rules():
        view = app.view_functions[rule.endpoint]
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            if route_policy(view, method) is None:
                undeclared.append(f"{method} {rule.rule}")
    assert not undeclared, (
        f"routes without @requires, @requires_authentication or @public: {undeclared}"
    )


def test_declared_permissions_are_registered(app):
    permissions = app.extensions["ctxcloud"].permissions
    for rule in app.url_map.iter_rules():
        view = app.view_functions[rule.endpoint]
        for method in rule.methods or ():
            policy = route_policy(view, method)
            assert policy in (None, "public", AUTHENTICATED) or policy in permissions
