"""ctxcloud core: the app factory, the plugin mechanism and the primitives plugins build on."""

from ctxcloud.hookspecs import hookimpl

__all__ = ["create_app", "hookimpl"]


def create_app(config=None):
    """Build the Flask app (see app.factory.create_app)."""
    from ctxcloud.factory import create_app as _create_app

    return _create_app(config)
