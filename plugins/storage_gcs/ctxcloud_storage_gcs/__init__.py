"""The gcs storage backend: objects in a Google Cloud Storage bucket.

A distribution of its own (``pip install ./plugins/storage_gcs``), found through its
``ctxcloud.plugins`` entry point like any plugin. Selected with
``CTXCLOUD_STORAGE_BACKEND=gcs``; settings are ``CTXCLOUD_GCS_*`` (see docs/storage.md).
The Google SDK is imported only when the backend is selected.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ctxcloud import hookimpl

from .settings import DEFAULTS, GCSSettings

__all__ = ["GCSSettings", "config_defaults", "storage_backends"]


def _open(config: Mapping[str, Any]):
    from .backend import GCSStorage

    return GCSStorage.from_config(config)


@hookimpl
def config_defaults():
    """The GCS_* settings and their defaults, so every one of them is always present."""
    return dict(DEFAULTS)


@hookimpl
def storage_backends():
    """Offer "gcs"; its settings are checked only when it is the selected backend."""
    return {"gcs": _open}
