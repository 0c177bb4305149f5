"""The embedded default storage backend: objects as files under a local directory."""

from ctxcloud import hookimpl

from .backend import LocalStorage

__all__ = ["LocalStorage", "storage_backends"]


@hookimpl
def storage_backends():
    """Offer "local" so the embedded default needs no storage setting at all."""
    return {LocalStorage.name: LocalStorage.from_config}
