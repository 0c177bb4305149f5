"""The Azure Blob Storage backend for ctxcloud, a distribution of its own.

Installed with ``pip install ./plugins/storage_azure`` and selected with
``CTXCLOUD_STORAGE_BACKEND=azure``; settings are ``CTXCLOUD_AZURE_*`` (see docs/storage.md).
Written against the public toolkit (``ctxcloud``) alone; the Azure SDK is imported only when
the backend is selected, so a deployment on another backend never loads it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ctxcloud import hookimpl

from .settings import DEFAULTS, AzureSettings

__all__ = ["AzureSettings", "config_defaults", "storage_backends"]


def _open(config: Mapping[str, Any]):
    from .backend import AzureBlobStorage

    return AzureBlobStorage.from_config(config)


@hookimpl
def config_defaults():
    """The AZURE_* settings and their defaults, so every one of them is always present."""
    return dict(DEFAULTS)


@hookimpl
def storage_backends():
    """Offer "azure"; its settings are checked only when it is the selected backend."""
    return {"azure": _open}
